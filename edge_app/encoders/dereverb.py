"""Single-channel WPE dereverberation of de-identified speech, before the audio encoders.

Weighted prediction error (Nakatani et al., IEEE TASLP 2010): in the STFT domain each frequency's
late reverberation is predicted from the frames `delay` to `delay + taps - 1` before it and
subtracted; the prediction filter is weighted by the inverse power of the dereverberated speech,
re-estimated a few times. Early reflections (within `delay` frames) are kept: they carry no
harm for emotion and removing them costs speech quality.

Why here: a reverberant room was the worst channel condition of `benchmarks/audio_robustness.py`
and longer rooms in the training augmentation did not fix it (benchmarks/results/
reverb_augmentation.md). It runs on de-identified audio only, after the voice de-identifier,
so it changes nothing that the privacy measurements cover. Off by default
(`EncoderOptions.dereverb`): at inference only it helped on validation speakers (reverb +4.2
points) but not on the test speakers (+0.4), benchmarks/results/dereverb.md.

    y = dereverberate(x)                        # 16 kHz float32 in, same length out
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import istft, stft

from edge_app.encoders.features import SR


@dataclass(frozen=True)
class DereverbOptions:
    """WPE settings; the defaults were chosen on the validation actors 19-20 (taps 10 vs 30,
    benchmarks/results/dereverb.md)."""

    # STFT frame and hop in samples (32 ms / 8 ms at 16 kHz)
    frame: int = 512
    hop: int = 128
    # prediction filter length in frames (30 x 8 ms: reverberation up to about 0.25 s after
    # the delay is predicted; longer tails decay through the weighting)
    taps: int = 30
    # frames skipped before the prediction window: the direct sound and early reflections stay
    delay: int = 3
    # re-estimations of the speech power that weights the prediction
    iterations: int = 3


def dereverberate(samples: np.ndarray, options: DereverbOptions | None = None) -> np.ndarray:
    """Dereverberated copy of 16 kHz mono `samples` (float32, same length)."""
    o = options or DereverbOptions()
    x = np.asarray(samples, np.float32).reshape(-1)
    if len(x) < o.frame:
        return x.copy()
    _, _, spec = stft(x, fs=SR, window="hann", nperseg=o.frame, noverlap=o.frame - o.hop)
    _, y = istft(wpe(spec, o), fs=SR, window="hann", nperseg=o.frame, noverlap=o.frame - o.hop)
    y = y[: len(x)]
    return np.pad(y, (0, len(x) - len(y))).astype(np.float32)


def wpe(spec: np.ndarray, o: DereverbOptions, bins_per_block: int = 8) -> np.ndarray:
    """WPE on a (freqs, frames) complex spectrogram; returns the same shape. Frequencies are
    independent; a few at a time keep the (frames x taps) matrices in cache (all 257 at once
    move about 60 MB per step and run twice as slow)."""
    spec = spec.astype(np.complex128)
    return np.concatenate([_wpe_block(spec[i : i + bins_per_block], o)
                           for i in range(0, len(spec), bins_per_block)])


def _wpe_block(spec: np.ndarray, o: DereverbOptions) -> np.ndarray:
    past = delayed_frames(spec, o.delay, o.taps)  # (F, T, K)
    past_h = np.ascontiguousarray(past.conj().transpose(0, 2, 1))  # (F, K, T)
    out = spec
    for _ in range(o.iterations):
        # weights: inverse power of the current estimate, floored per frequency (1e-10 of its
        # loudest frame) so near-silent frames do not dominate the statistics
        power = np.abs(out) ** 2
        power = np.maximum(power, 1e-10 * power.max(axis=1, keepdims=True) + 1e-30)
        # contiguous batched matrix products run in BLAS (einsum or strided views: 10x slower)
        weighted_h = past_h / power[:, None, :]
        cov = weighted_h @ past  # (F, K, K), conjugate of sum_t x x^H / power
        cross = (weighted_h @ spec[:, :, None])[..., 0]  # conjugate of sum_t x y* / power
        # a trace of diagonal loading keeps silent inputs solvable; a first version with 1e-6
        # (and one floor for all frequencies) dereverberated far less on the validation
        # speakers (benchmarks/results/dereverb.md)
        load = 1e-10 * np.trace(cov, axis1=1, axis2=2).real[:, None, None] + 1e-30
        # solving the conjugated system gives conj(filter), which is what the prediction needs
        filt_conj = np.linalg.solve(cov + load * np.eye(o.taps), cross[..., None])
        out = spec - (past @ filt_conj)[..., 0]
    return out


def delayed_frames(spec: np.ndarray, delay: int, taps: int) -> np.ndarray:
    """(F, T, taps): for frame t, frames t - delay - k (k = 0..taps-1), zero before the start."""
    n_freq, n_frames = spec.shape
    padded = np.concatenate([np.zeros((n_freq, delay + taps - 1), spec.dtype), spec], axis=1)
    idx = np.arange(n_frames)[:, None] + (taps - 1 - np.arange(taps))[None, :]
    return np.ascontiguousarray(padded[:, idx])
