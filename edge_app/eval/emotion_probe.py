"""Emotion probe for the voice benchmark: how much emotion survives de-identification.

Two pieces, both used identically for original and de-identified audio:

`prosody_features(x, sr)`
    Utterance statistics of the F0 contour and the energy envelope only: nothing
    that describes the spectral envelope (formants, timbre), which is what the
    McAdams warp changes on purpose. F0 is tracked with the de-identifier's own
    autocorrelation tracker, octave errors are folded towards the utterance median
    and the contour is median-smoothed (the de-identified audio gives a noisier raw
    contour than the original, and the plain statistics pick that noise up).

`session_normalise(X, sessions, ...)`
    Per-speaker (= per anonymisation session) z-normalisation of utterance
    features, with no labels: each utterance's features minus the mean, divided by
    the standard deviation of that session's utterances. ``mode="session"`` uses all
    of the session's utterances (offline, a whole recording); ``mode="running"``
    uses only the utterances heard so far in session order, shrunk towards a prior
    (what a live loop can do: a running mean / variance per session).
"""

from __future__ import annotations

import numpy as np

PROSODY_NAMES = (
    "f0_median", "f0_std", "f0_p10", "f0_p90", "f0_range", "f0_slope", "f0_step_median", "f0_step_p90",
    "f0_end_minus_start", "voiced_ratio",
    "db_mean", "db_std", "db_p90", "db_p10", "db_range", "db_step_mean", "peak_rate", "active_s",
    "mod_1_3hz", "mod_3_6hz", "mod_6_10hz", "mod_10_20hz",
)


def prosody_features(x: np.ndarray, sr: int = 16_000) -> np.ndarray:
    """22 prosodic statistics (F0 contour in octaves, energy in dB, envelope rhythm)."""
    return np.concatenate([_pitch_stats(np.asarray(x, np.float64), sr), _energy_stats(np.asarray(x, np.float32), sr)])


def _pitch_stats(x: np.ndarray, sr: int, hop: int = 160) -> np.ndarray:
    from scipy.signal import medfilt

    from edge_app.deid.pitch import F0_WIN, F0Config, estimate_f0

    n = (len(x) - F0_WIN) // hop
    if n <= 3:
        return np.zeros(10)
    frames = np.lib.stride_tricks.sliding_window_view(x, F0_WIN)[::hop][:n]
    f0, voiced = estimate_f0(frames, F0Config(sr=sr))
    if voiced.sum() < 5:
        return np.r_[np.zeros(9), voiced.mean()]
    lf = np.log2(f0[voiced])
    med = np.median(lf)
    lf = np.where(lf - med > 0.6, lf - 1.0, np.where(lf - med < -0.6, lf + 1.0, lf))  # octave errors
    sm = medfilt(lf, 5) if len(lf) >= 5 else lf
    t = np.flatnonzero(voiced) / (sr / hop)
    p10, p90 = np.percentile(sm, [10, 90])
    within = np.diff(np.flatnonzero(voiced)) == 1  # steps inside voiced runs only
    steps = np.abs(np.diff(sm))[within] if within.any() else np.zeros(1)
    k = max(1, len(sm) // 3)
    return np.array([
        np.median(sm), sm.std(), p10, p90, p90 - p10, np.polyfit(t, sm, 1)[0],
        np.median(steps), np.percentile(steps, 90), sm[-k:].mean() - sm[:k].mean(), voiced.mean(),
    ])


def _energy_stats(x: np.ndarray, sr: int, hop: int = 160) -> np.ndarray:
    import librosa
    from scipy.signal import find_peaks

    db = 20 * np.log10(librosa.feature.rms(y=x, frame_length=512, hop_length=hop)[0] + 1e-5)
    active = db > db.max() - 40
    a = db[active] if active.sum() >= 3 else db
    step = np.abs(np.diff(db))[active[1:]]
    env = (db - db.mean()) * np.hanning(len(db))
    power = np.abs(np.fft.rfft(env, n=1024)) ** 2
    freq = np.fft.rfftfreq(1024, hop / sr)
    mod = [np.log(power[(freq >= lo) & (freq < hi)].sum() + 1e-6) for lo, hi in ((1, 3), (3, 6), (6, 10), (10, 20))]
    peaks, _ = find_peaks(np.convolve(db, np.ones(5) / 5, "same"), prominence=6)
    dur = active.mean() * len(x) / sr
    p10, p90 = np.percentile(a, [10, 90])
    return np.array([
        a.mean(), a.std(), p90, p10, p90 - p10, step.mean() if len(step) else 0.0, len(peaks) / max(dur, 0.1), dur,
        *mod,
    ])


def session_normalise(
    X: np.ndarray,
    sessions: np.ndarray,
    mode: str = "session",
    order: np.ndarray | None = None,
    prior: tuple[np.ndarray, np.ndarray] | None = None,
    prior_n: float = 5.0,
    eps: float = 1e-3,
) -> np.ndarray:
    """z-normalise each row of X with the statistics of its session (no labels used).

    mode "session": mean / std over all rows of the session. mode "running": rows are
    visited in `order` within each session and each is normalised with the mean /
    variance of the rows seen so far (itself included), blended with `prior`
    (mean, variance) worth `prior_n` rows; the prior is estimated from other
    speakers' unlabelled audio (the training set), never from the session itself.
    """
    X = np.asarray(X, dtype=np.float64)
    Z = np.empty_like(X)
    for s in np.unique(sessions):
        idx = np.flatnonzero(sessions == s)
        if mode == "session":
            Z[idx] = (X[idx] - X[idx].mean(axis=0)) / (X[idx].std(axis=0) + eps)
            continue
        if mode != "running" or prior is None or order is None:
            raise ValueError("mode 'running' needs order and prior; modes: session, running")
        idx = idx[np.argsort(order[idx], kind="stable")]
        mu0, var0 = prior
        total, total_sq, n = prior_n * mu0, prior_n * (var0 + mu0**2), prior_n
        for i in idx:
            total, total_sq, n = total + X[i], total_sq + X[i] ** 2, n + 1
            mean = total / n
            Z[i] = (X[i] - mean) / (np.sqrt(np.maximum(total_sq / n - mean**2, 0.0)) + eps)
    return Z


def running_prior(X: np.ndarray, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, mean within-session variance) of training rows: the prior of mode "running"."""
    X = np.asarray(X, dtype=np.float64)
    return X.mean(axis=0), np.mean([X[sessions == s].var(axis=0) for s in np.unique(sessions)], axis=0)
