"""McAdams-coefficient voice anonymisation, vectorised over frames.

Follows the VoicePrivacy Challenge B2 baseline (Patino et al., 2021): LPC order
20 on 20 ms Hann frames with a 10 ms hop; the angle phi of every complex LPC pole
becomes phi**alpha (radius kept), the frame's LPC residual is re-filtered through
the warped all-pole filter, and frames are overlap-added.

Differences from the baseline, each for a reason:
  * LPC by the autocorrelation method (Levinson-Durbin run on all frames at once)
    instead of Burg per frame: the resulting filter is always stable and the whole
    batch costs a handful of numpy calls.
  * Poles are the eigenvalues of stacked companion matrices (one batched
    `np.linalg.eigvals`) instead of `np.roots` per frame.
  * Inverse and warped synthesis filters are applied together in the frequency
    domain on a zero-padded FFT, and the whole filtered frame *including its
    decaying tail* is overlap-added; the baseline truncates the tail and applies a
    second window, which modulates the level at 100 Hz.
  * Each frame keeps the energy of its input frame, so the loudness contour (an
    emotion cue) survives and no global peak normalisation is needed, which a
    stream could not do anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LPC_ORDER = 20
NFFT = 1024  # zero-padded FFT: 64 ms at 16 kHz, long enough for the all-pole tail
MAX_POLE_RADIUS = 0.999  # caps the all-pole tail so it (nearly) fits in NFFT
_EPS = 1e-9
SILENCE_RMS = 3e-4  # -70 dBFS (windowed frame): below this a frame is left as is


def lpc_batch(frames: np.ndarray, order: int = LPC_ORDER) -> np.ndarray:
    """LPC polynomials [1, a1..ap] of each row of `frames` (n, L) -> (n, order+1).

    Autocorrelation method with a tiny white-noise floor (lag-0 bias) so silent
    frames give a flat filter instead of a singular system.
    """
    n, length = frames.shape
    spec = np.fft.rfft(frames, 2 * length, axis=1)
    acf = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, : order + 1]
    acf[:, 0] = acf[:, 0] * (1.0 + 1e-6) + _EPS
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = acf[:, 0].copy()
    for i in range(1, order + 1):
        # reflection coefficient for every frame at once
        k = -(a[:, :i] * acf[:, i:0:-1]).sum(axis=1) / err
        a[:, 1 : i + 1] = a[:, 1 : i + 1] + k[:, None] * a[:, i - 1 :: -1][:, :i]
        err = err * (1.0 - k * k)
    return a


def poles_batch(a: np.ndarray) -> np.ndarray:
    """Roots of each LPC polynomial, via eigenvalues of its companion matrix."""
    n, p1 = a.shape
    p = p1 - 1
    comp = np.zeros((n, p, p))
    comp[:, 0, :] = -a[:, 1:]
    comp[:, np.arange(1, p), np.arange(p - 1)] = 1.0
    return np.linalg.eigvals(comp)


def poly_from_roots(roots: np.ndarray) -> np.ndarray:
    """Real polynomial coefficients from conjugate-symmetric roots (n, p) -> (n, p+1)."""
    n, p = roots.shape
    coeffs = np.zeros((n, p + 1), dtype=complex)
    coeffs[:, 0] = 1.0
    for i in range(p):
        # multiply by (1 - r_i z^-1) for all frames
        coeffs[:, 1 : i + 2] = coeffs[:, 1 : i + 2] - roots[:, i : i + 1] * coeffs[:, : i + 1]
    return coeffs.real


def warp_poles(poles: np.ndarray, alpha: np.ndarray, pre_scale: np.ndarray) -> np.ndarray:
    """Map each complex pole's angle phi -> (phi * pre_scale) ** alpha, per frame.

    `pre_scale` (n,) first rescales the angles (1.0 = plain McAdams); the pitch
    normaliser uses it to undo or keep the formant shift its resampling caused.
    Real poles (spectral tilt) are left alone, as in the baseline. Working on
    |phi| keeps conjugate pairs conjugate, so the polynomial stays real.
    """
    angle = np.angle(poles)
    radius = np.minimum(np.abs(poles), MAX_POLE_RADIUS)
    is_complex = np.abs(poles.imag) > 1e-10
    mag = np.abs(angle) * pre_scale[:, None]
    new_mag = np.clip(mag ** alpha[:, None], 0.0, np.pi)
    new_angle = np.where(is_complex, np.sign(angle) * new_mag, angle)
    return np.where(is_complex, radius * np.exp(1j * new_angle), poles)


def mcadams_frames(
    frames: np.ndarray,
    window: np.ndarray,
    alpha: np.ndarray,
    pre_scale: np.ndarray | None = None,
    order: int = LPC_ORDER,
    nfft: int = NFFT,
    equalise: Callable[[np.ndarray], np.ndarray] | None = None,
    silence_rms: np.ndarray | float = SILENCE_RMS,
) -> np.ndarray:
    """Anonymise raw frames (n, L) -> filtered, windowed frames with tails (n, nfft).

    The caller overlap-adds row m at sample m * hop. `window` must sum to one
    at the hop used (periodic Hann at 50 % overlap), so an unmodified filter
    would reconstruct the input exactly. `equalise`, if given, maps the warped
    spectra of the non-silent frames (rows, in order) to a real gain per bin
    (the long-term spectrum equaliser, edge_app/deid/spectrum.py). Windowed frames
    whose RMS is not above `silence_rms` (one per frame, or one for all) are left
    as they are.
    """
    n = frames.shape[0]
    if pre_scale is None:
        pre_scale = np.ones(n)
    win_frames = frames * window
    out = np.zeros((n, nfft))
    out[:, : frames.shape[1]] = win_frames  # silent frames pass through unchanged
    # near-silent frames carry no voice to hide; skipping them saves the eigenvalue
    # and FFT work on the pauses of real speech (a third of RAVDESS). The de-identifier
    # passes thresholds relative to the session's level, so a quiet voice is not a pause
    active = np.sqrt((win_frames**2).mean(axis=1)) > silence_rms
    if not active.any():
        return out
    wf = win_frames[active]
    a = lpc_batch(wf, order)
    new_a = poly_from_roots(warp_poles(poles_batch(a), alpha[active], pre_scale[active]))
    spec_in = np.fft.rfft(wf, nfft, axis=1)
    # residual through A(z), then synthesis through 1/A'(z): one spectral ratio
    filt = np.fft.rfft(np.concatenate([a, new_a]), nfft, axis=1)
    spec_out = spec_in * (filt[: len(a)] / filt[len(a) :])
    if equalise is not None:
        spec_out = spec_out * equalise(spec_out)
    # per-frame energy match (Parseval on the one-sided spectra)
    e_in = (np.abs(spec_in) ** 2).sum(axis=1)
    e_out = (np.abs(spec_out) ** 2).sum(axis=1)
    gain = np.sqrt((e_in + _EPS) / (e_out + _EPS))
    out[active] = np.fft.irfft(spec_out * gain[:, None], nfft, axis=1)
    return out
