"""Voice prosody from de-identified audio (praat-parselmouth + numpy).

The voice anonymiser shifts pitch and may alter timbre, so absolute F0 is both
meaningless and identity-bearing: every pitch measure here is relative to the
window's own median (semitones). Energy is in dBFS (depends on mic gain, so
compare within a recording). Jitter and shimmer are reported as measured on the
anonymised voice; `method` says which anonymiser produced it.
Undefined values (no voice, too short) are None, never NaN, so JSON stays valid.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import parselmouth
from parselmouth.praat import call
from scipy.signal import find_peaks

from edge_app.records import DeidAudio

__all__ = ["Prosody", "ProsodyOptions", "extract_prosody"]


@dataclass
class ProsodyOptions:
    """Settings of `extract_prosody`."""

    # Lowest / highest F0 searched, Hz. Wide because anonymisers shift pitch. Defaults 75 / 600.
    pitch_floor: float = 75.0
    pitch_ceiling: float = 600.0
    # Hop of the pitch and energy contours, s. Default 0.01.
    time_step: float = 0.01
    # RMS frame length, s. Default 0.04 (spans a few glottal periods at 75 Hz).
    frame_s: float = 0.04
    # Frames more than this many dB below the window's loud level (95th percentile) are silence. Default 25.
    silence_below_peak_db: float = 25.0
    # Frames below this absolute level (dBFS) are always silence. Default -50.
    silence_floor_db: float = -50.0
    # Silent stretches at least this long are pauses, s. Default 0.25.
    min_pause_s: float = 0.25
    # Energy peak must stand this many dB above its surrounding dips to be a syllable nucleus. Default 2.0.
    nucleus_prominence_db: float = 2.0
    # Minimum time between syllable nuclei, s (caps the rate at 10/s). Default 0.1.
    nucleus_min_interval_s: float = 0.1
    # Fewer voiced pitch frames than this: F0, jitter and shimmer are None. Default 5.
    min_voiced_frames: int = 5
    # Windows shorter than this (s) are not analysed (all measures None). Default 0.1.
    min_duration_s: float = 0.1


@dataclass(frozen=True)
class Prosody:
    """Prosodic summary of one audio window.

    f0_* are semitones relative to the window median (st); slope in st / s.
    energy_db_* are over non-silent frames, dBFS. speaking_rate: syllable nuclei
    per second of speech (window minus pauses). pause_ratio: share of the window
    in pauses >= min_pause_s. jitter / shimmer: Praat local measures (ratios).
    """

    duration: float
    voiced_ratio: float
    f0_std_st: float | None = None
    f0_range_st: float | None = None
    f0_slope_st_s: float | None = None
    energy_db_mean: float | None = None
    energy_db_std: float | None = None
    speaking_rate: float | None = None
    pause_ratio: float | None = None
    longest_pause_s: float | None = None
    jitter_local: float | None = None
    shimmer_local: float | None = None
    method: str = ""

    def to_dict(self, ndigits: int = 3) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                value = round(value, ndigits if key not in ("jitter_local", "shimmer_local") else 4)
            out[key] = value
        return out


def extract_prosody(
    audio: DeidAudio,
    options: ProsodyOptions | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Prosody:
    """Prosody of a de-identified audio window (typically 2-6 s; ~20-30 ms for 4 s at 16 kHz).

    `start` / `end` (seconds, the clock of `audio.t0`) restrict the analysis to
    [start, end) without copying the record; None = from the start / to the end.
    """
    if not isinstance(audio, DeidAudio):
        raise TypeError(f"extract_prosody takes DeidAudio (de-identified), got {type(audio).__name__}")
    o = options or ProsodyOptions()
    sr = int(audio.sr)
    if sr <= 0:
        raise ValueError(f"DeidAudio.sr must be > 0, got {audio.sr}")
    i0 = 0 if start is None else max(0, int(round((start - audio.t0) * sr)))
    i1 = len(audio.samples) if end is None else max(i0, int(round((end - audio.t0) * sr)))
    x = _mono_float(np.asarray(audio.samples)[i0:i1])
    duration = len(x) / sr
    if duration < o.min_duration_s:
        return Prosody(duration=duration, voiced_ratio=0.0, method=audio.method)
    if not np.any(x):  # digital silence: one long pause
        return Prosody(duration=duration, voiced_ratio=0.0, pause_ratio=1.0, longest_pause_s=duration, method=audio.method)

    db, hop = _frame_db(x, sr, o)
    active = _active_frames(db, o)
    pauses = _pause_runs(~active, hop, o.min_pause_s)
    pause_time = sum(b - a for a, b in pauses) * hop
    # Pitch is the costly part: run it only on the stretches between pauses.
    f0, f0_t, _n_pitch_frames, jitter, shimmer = _pitch_segments(x, sr, _speech_spans(len(db), pauses, hop, duration), o)
    n_frames_total = max(1, int(round(duration / o.time_step)))
    f0_stats = _f0_stats(f0, f0_t, o)
    speech_time = max(0.0, duration - pause_time)
    nuclei = _syllable_nuclei(db, hop, active, f0_t, o)
    return Prosody(
        duration=duration,
        voiced_ratio=min(1.0, len(f0) / n_frames_total),
        f0_std_st=f0_stats[0],
        f0_range_st=f0_stats[1],
        f0_slope_st_s=f0_stats[2],
        energy_db_mean=_finite(np.mean(db[active])) if active.any() else None,
        energy_db_std=_finite(np.std(db[active])) if active.sum() > 1 else None,
        speaking_rate=nuclei / speech_time if speech_time >= 0.2 and active.any() else None,
        pause_ratio=min(1.0, pause_time / (len(db) * hop)),
        longest_pause_s=max((b - a) * hop for a, b in pauses) if pauses else 0.0,
        jitter_local=jitter,
        shimmer_local=shimmer,
        method=audio.method,
    )


def _mono_float(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim == 2:  # (n, channels): the de-identifier should give mono, but be lenient
        x = x.mean(axis=1)
    if np.issubdtype(x.dtype, np.integer):
        x = x / float(np.iinfo(x.dtype).max)
    return np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _frame_db(x: np.ndarray, sr: int, o: ProsodyOptions) -> tuple[np.ndarray, float]:
    """RMS level per frame in dBFS and the hop in seconds."""
    hop = max(1, int(round(o.time_step * sr)))
    win = max(hop, int(round(o.frame_s * sr)))
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    return 20.0 * np.log10(rms + 1e-10), hop / sr


def _active_frames(db: np.ndarray, o: ProsodyOptions) -> np.ndarray:
    loud = np.percentile(db, 95)
    return db > max(o.silence_floor_db, loud - o.silence_below_peak_db)


def _pause_runs(silent: np.ndarray, hop: float, min_pause_s: float) -> list[tuple[int, int]]:
    """[start, end) frame index runs of silence lasting at least min_pause_s."""
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, ends) if (b - a) * hop >= min_pause_s - 1e-9]


def _f0_stats(f0: np.ndarray, t: np.ndarray, o: ProsodyOptions) -> tuple[float | None, float | None, float | None]:
    """F0 std, 5-95 % range and slope in semitones relative to the median."""
    if len(f0) < o.min_voiced_frames:
        return None, None, None
    st = 12.0 * np.log2(f0 / np.median(f0))
    lo, hi = np.percentile(st, [5, 95])  # percentiles: robust to octave errors
    slope = float(np.polyfit(t, st, 1)[0]) if np.ptp(t) > 0 else None
    return _finite(np.std(st)), _finite(hi - lo), _finite(slope) if slope is not None else None


def _speech_spans(n_frames: int, pauses: list[tuple[int, int]], hop: float, duration: float) -> list[tuple[float, float]]:
    """Time spans (s) between pauses, widened by 50 ms so pitch windows see the onsets."""
    spans, cursor = [], 0
    for a, b in pauses + [(n_frames, n_frames)]:
        if a > cursor:
            spans.append((max(0.0, cursor * hop - 0.05), min(duration, a * hop + 0.05)))
        cursor = b
    return spans


def _pitch_segments(
    x: np.ndarray, sr: int, spans: list[tuple[float, float]], o: ProsodyOptions
) -> tuple[np.ndarray, np.ndarray, int, float | None, float | None]:
    """Voiced F0 (Hz) and times over all spans, frame count, and duration-weighted jitter / shimmer."""
    f0_all, t_all, n_frames = [], [], 0
    perturb: list[tuple[float, float, float]] = []
    min_len = 3.0 / o.pitch_floor + 0.01  # Praat needs three periods of the floor pitch
    for t0, t1 in spans:
        if t1 - t0 < min_len:
            continue
        seg = x[int(t0 * sr) : int(t1 * sr)]
        snd = parselmouth.Sound(seg, sampling_frequency=sr)
        pitch = snd.to_pitch_ac(time_step=o.time_step, pitch_floor=o.pitch_floor, pitch_ceiling=o.pitch_ceiling)
        f0 = pitch.selected_array["frequency"]
        voiced = f0 > 0
        n_frames += len(f0)
        f0_all.append(f0[voiced])
        t_all.append(pitch.xs()[voiced] + t0)
        jitter, shimmer = _perturbation(snd, pitch, int(voiced.sum()), o)
        if jitter is not None and shimmer is not None:
            perturb.append((jitter, shimmer, float(voiced.sum())))
    f0 = np.concatenate(f0_all) if f0_all else np.zeros(0)
    t = np.concatenate(t_all) if t_all else np.zeros(0)
    if not perturb:
        return f0, t, n_frames, None, None
    w = np.array([p[2] for p in perturb])
    jit = float(np.average([p[0] for p in perturb], weights=w))
    shim = float(np.average([p[1] for p in perturb], weights=w))
    return f0, t, n_frames, jit, shim


def _perturbation(
    snd: parselmouth.Sound, pitch: parselmouth.Pitch, n_voiced: int, o: ProsodyOptions
) -> tuple[float | None, float | None]:
    """Praat local jitter and shimmer (standard settings: periods 0.1-20 ms, factor 1.3 / 1.6)."""
    if n_voiced < max(o.min_voiced_frames, 10):
        return None, None
    points = call([snd, pitch], "To PointProcess (cc)")
    if call(points, "Get number of points") < 5:
        return None, None
    jitter = call(points, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3)
    shimmer = call([snd, points], "Get shimmer (local)", 0, 0, 0.0001, 0.02, 1.3, 1.6)
    return _finite(jitter), _finite(shimmer)


def _syllable_nuclei(db: np.ndarray, hop: float, active: np.ndarray, voiced_t: np.ndarray, o: ProsodyOptions) -> int:
    """Count energy peaks that are prominent, not silent and voiced (de Jong & Wempe style)."""
    if len(voiced_t) == 0:
        return 0
    # Light smoothing: the 40 ms RMS frames already average over pitch periods.
    smooth = np.convolve(db, np.ones(3) / 3.0, mode="same")
    distance = max(1, int(round(o.nucleus_min_interval_s / hop)))
    peaks, _ = find_peaks(smooth, prominence=o.nucleus_prominence_db, distance=distance)
    peaks = peaks[active[peaks]]
    # A peak is voiced if a voiced pitch frame lies within one hop of its frame centre.
    centres = (peaks * hop) + o.frame_s / 2
    idx = np.searchsorted(voiced_t, centres)
    near = np.zeros(len(peaks), bool)
    for shift in (-1, 0):
        j = np.clip(idx + shift, 0, len(voiced_t) - 1)
        near |= np.abs(voiced_t[j] - centres) <= max(hop, o.time_step) * 1.5
    return int(near.sum())


def _finite(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None
