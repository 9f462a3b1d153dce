"""Long-term spectrum equalisation: every speaker's average timbre moved to one target.

A speaker's long-term average spectrum (LTAS: vocal-tract size, voice quality,
spectral tilt, and the microphone) is much of what a speaker verifier hears. The
equaliser follows the session's running LTAS in mel bands and filters every frame
by target / speaker, so all sessions end up with the same average spectrum. The
filter changes only as fast as the long-term average does: how one utterance's
spectrum differs from the speaker's average (what emotion changes: tilt, effort,
brightness) is kept.
"""

from __future__ import annotations

import numpy as np

SR = 16_000
N_BANDS = 20
BAND_EDGES_HZ = (80.0, 7600.0)
# Target: the mean band log-power of RAVDESS actors 1-20 (training and validation
# actors, 10 men and 10 women, every clip, after pitch normalisation to 160 Hz),
# each frame relative to its own mean; `python benchmarks/ltas_target.py` measures it
# (between-actor spread: 0.2-0.7 per band). Only the shape matters: every frame
# keeps its own energy.
TARGET_LOG_POWER = np.array([
    4.603, 4.570, 4.026, 3.232, 2.284, 1.510, 1.091, 0.781, 0.447, 0.187,
    -0.075, -0.365, -0.758, -1.410, -2.173, -2.740, -3.229, -3.734, -4.017, -4.229,
])


def _mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_bands(nfft: int) -> np.ndarray:
    """Triangular mel filters (N_BANDS, nfft // 2 + 1), peak 1."""
    freqs = np.arange(nfft // 2 + 1) * SR / nfft
    edges = _hz(np.linspace(*_mel(np.array(BAND_EDGES_HZ)), N_BANDS + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.clip(np.minimum(up, down), 0.0, None)


def band_log_power(spec: np.ndarray, band_weights: np.ndarray) -> np.ndarray:
    """Mean log-power per band of each spectrum row (n, bins) -> (n, N_BANDS), relative
    to the row's own mean (so only the shape of the spectrum counts). `band_weights`:
    mel_bands with each band's weights summing to one."""
    power = (np.abs(spec) ** 2) @ band_weights.T
    logp = np.log(power + 1e-12)
    return logp - logp.mean(axis=1, keepdims=True)


class RunningLtasEqualiser:
    """Per-frame gains (n, bins) that move the session's running LTAS to the target.

    The estimate is the mean band log-power of every non-silent frame so far, blended
    from the target itself (`prior_frames` pseudo-frames), so a new session starts flat.
    """

    def __init__(self, nfft: int, strength: float = 1.0, prior_frames: float = 50.0,
                 max_gain_db: float = 15.0) -> None:
        self.bands = mel_bands(nfft)
        self.band_weights = self.bands / self.bands.sum(axis=1, keepdims=True)  # per band, sums to 1
        # band gains -> bin gains: each bin takes the weighted mean of its bands
        weights = self.bands / np.maximum(self.bands.sum(axis=0, keepdims=True), 1e-9)
        below = np.arange(self.bands.shape[1]) * SR / nfft < BAND_EDGES_HZ[0]
        self.to_bins = weights.T  # (bins, bands)
        self.to_bins[below, 0] = 1.0  # below the first band: its gain
        above = self.bands.sum(axis=0) < 1e-9
        self.to_bins[above & ~below, -1] = 1.0  # above the last band: its gain
        self.strength = strength
        self.prior_frames = prior_frames
        self.max_log_gain = max_gain_db / 20.0 * np.log(10.0)
        self.sum = np.zeros(N_BANDS)
        self.count = 0

    def gains(self, spec: np.ndarray) -> np.ndarray:
        """Real amplitude gain per bin for each spectrum row, from all rows so far."""
        logp = band_log_power(spec, self.band_weights)
        cum = self.sum + np.cumsum(logp, axis=0)
        n = self.count + np.arange(1, len(logp) + 1)[:, None]
        self.sum, self.count = cum[-1], int(n[-1, 0])
        speaker = (cum + self.prior_frames * TARGET_LOG_POWER) / (n + self.prior_frames)
        # amplitude gain is half the log-power difference
        log_gain = np.clip(0.5 * self.strength * (TARGET_LOG_POWER - speaker),
                           -self.max_log_gain, self.max_log_gain)
        return np.exp(log_gain @ self.to_bins.T)

    @property
    def ltas(self) -> np.ndarray | None:
        """The session's mean band log-power so far; None before any frame."""
        return self.sum / self.count if self.count else None
