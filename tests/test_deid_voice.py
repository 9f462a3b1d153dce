"""Voice de-identification: signal-level properties, sessions, streaming, pitch."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from edge_app.deid.pitch import F0_WIN, estimate_f0
from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
from edge_app.errors import UsageError
from edge_app.records import AudioChunk, DeidAudio

SR = 16_000


def synth_voice(median_f0: float, seconds: float = 3.0, formant_scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """A vowel-like test voice: glottal pulse train with an expressive F0 contour
    (declination + vibrato-like movement) through three formant resonators."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    contour = 2.0 ** (0.25 * np.sin(2 * np.pi * 0.7 * t) - 0.15 * t / seconds)  # +-3 semitones
    f0 = median_f0 * contour
    phase = np.cumsum(f0 / SR)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    x = lfilter([1.0], [1.0, -0.95], pulses)  # glottal roll-off
    for formant, bw in ((700, 80), (1220, 90), (2600, 120)):
        r = np.exp(-np.pi * bw / SR)
        theta = 2 * np.pi * formant * formant_scale / SR
        x = lfilter([1.0 - r], [1.0, -2 * r * np.cos(theta), r * r], x)
    x = 0.3 * x / np.abs(x).max() + 1e-3 * rng.standard_normal(len(x))
    return x.astype(np.float32)


def f0_track(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), F0_WIN)[::160]
    return estimate_f0(frames)


def log_spectrum(x: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::256] * np.hanning(512)
    return np.log(np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0) + 1e-10)


def run(x: np.ndarray, **opts) -> DeidAudio:
    return VoiceDeidentifier(VoiceDeidOptions(**opts)).process(AudioChunk(0.0, x, SR))


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return synth_voice(120.0)


@pytest.mark.parametrize("method", ["mcadams", "mcadams+pitch"])
def test_changes_spectrum_keeps_length_rate_and_range(voice, method):
    out = run(voice, method=method, mcadams_alpha=0.7)
    assert isinstance(out, DeidAudio)
    assert out.sr == SR and len(out.samples) == len(voice) and out.samples.dtype == np.float32
    assert np.isfinite(out.samples).all()
    assert np.abs(out.samples).max() < 1.0
    diff = np.abs(log_spectrum(out.samples) - log_spectrum(voice)).mean()
    assert diff > 1.0, f"spectrum barely changed (mean |log ratio| {diff:.2f})"
    assert method in out.method


def test_alpha_one_without_pitch_is_identity(voice):
    out = run(voice, method="mcadams", mcadams_alpha=1.0)
    assert np.abs(out.samples - voice).max() < 1e-4


def test_loud_input_stays_bounded():
    x = np.clip(synth_voice(200.0, 1.0) * 4.0, -1.0, 1.0)  # driven to full scale
    out = run(x, seed=3)
    assert np.isfinite(out.samples).all() and np.abs(out.samples).max() < 1.0


def test_sessions_differ_and_seed_reproduces(voice):
    alphas = {VoiceDeidentifier(VoiceDeidOptions()).alpha for _ in range(8)}
    assert len(alphas) == 8 and all(0.5 <= a <= 0.9 for a in alphas)
    a = run(voice, seed=7)
    b = run(voice, seed=7)
    c = run(voice, seed=8)
    assert np.array_equal(a.samples, b.samples)
    assert not np.allclose(a.samples, c.samples)


def test_alpha_fixed_for_the_life_of_the_object(voice):
    deid = VoiceDeidentifier(VoiceDeidOptions(method="mcadams", seed=1))
    first = deid.process(AudioChunk(0.0, voice, SR))
    second = deid.process(AudioChunk(5.0, voice, SR))
    assert first.method == second.method and np.array_equal(first.samples, second.samples)
    assert second.t0 == 5.0


def test_speaker_estimate_carries_over_the_session():
    deid = VoiceDeidentifier(VoiceDeidOptions(seed=1))
    assert deid.speaker.median_hz is None
    x = synth_voice(110.0, 2.0)
    deid.process(AudioChunk(0.0, x, SR))
    heard = deid.speaker.median_hz
    assert heard is not None and 90 < heard < 130
    deid.feed(AudioChunk(0.0, x, SR))
    deid.flush()  # a new stream keeps the session's estimate
    assert deid.speaker.median_hz is not None
    deid.reset_speaker()
    assert deid.speaker.median_hz is None


@pytest.mark.parametrize("method", ["mcadams", "mcadams+pitch"])
def test_streaming_equals_whole_file_without_clicks(method):
    x = np.concatenate([synth_voice(110.0, 2.5, seed=1), synth_voice(210.0, 2.5, 0.85, seed=2)])
    opts = VoiceDeidOptions(method=method, seed=11)
    whole = VoiceDeidentifier(opts).process(AudioChunk(0.0, x, SR)).samples

    deid = VoiceDeidentifier(opts)
    rng = np.random.default_rng(0)
    sizes = rng.integers(int(0.5 * SR), 2 * SR, size=10)
    sizes[1] = 37  # a tiny chunk must work too
    parts, pos = [], 0
    for n in sizes:
        if pos >= len(x):
            break
        out = deid.feed(AudioChunk(pos / SR, x[pos : pos + n], SR))
        parts.append(out)
        pos += n
        emitted = sum(len(p.samples) for p in parts)
        assert emitted >= min(pos, len(x)) - deid.latency_s * SR  # bounded delay
    if pos < len(x):
        parts.append(deid.feed(AudioChunk(pos / SR, x[pos:], SR)))
    parts.append(deid.flush())

    # each part starts where the previous one ended
    starts = np.cumsum([0] + [len(p.samples) for p in parts[:-1]]) / SR
    assert np.allclose([p.t0 for p in parts], starts)
    streamed = np.concatenate([p.samples for p in parts])
    assert len(streamed) == len(x)
    assert np.abs(streamed - whole).max() < 1e-6
    # no click: jumps at chunk boundaries are no larger than anywhere else
    jumps = np.abs(np.diff(streamed))
    bounds = np.cumsum([len(p.samples) for p in parts[:-1]])
    bounds = bounds[(bounds > 0) & (bounds < len(streamed))]
    assert jumps[bounds - 1].max() <= jumps.max() + 1e-9
    assert jumps.max() < 0.5


def test_stream_helper_yields_everything(voice):
    deid = VoiceDeidentifier(VoiceDeidOptions(seed=2))
    chunks = [AudioChunk(i / 2, voice[i * SR // 2 : (i + 1) * SR // 2], SR) for i in range(6)]
    total = sum(len(o.samples) for o in deid.stream(chunks))
    assert total == len(voice)


def test_pitch_normalisation_maps_median_and_keeps_contour():
    target = 160.0
    medians = []
    for f0, scale in ((105.0, 1.0), (235.0, 0.85)):  # 1.16 octaves apart
        x = synth_voice(f0, 4.0, scale)
        out = run(x, method="mcadams+pitch", mcadams_alpha=0.8, target_f0_hz=target).samples
        f_in, v_in = f0_track(x)
        f_out, v_out = f0_track(out)
        both = v_in & v_out
        both[:50] = False  # the running estimate needs a moment of voice first
        late = both.copy()
        late[: len(late) // 2] = False  # by then the running median has settled
        medians.append(np.median(f_out[late]))
        assert abs(np.log2(np.median(f_out[both]) / target)) < 0.3
        # a running median lags a slow contour, so "near" is a few semitones here
        assert abs(np.log2(medians[-1] / target)) < 0.25, f"median {medians[-1]:.0f} Hz, target {target}"
        # octave errors of the (cheap) tracker on either side are not contour changes
        shift = np.log2(f_out[both] / f_in[both])
        ok = np.abs(shift - np.median(shift)) < 0.4
        assert ok.mean() > 0.85
        corr = np.corrcoef(np.log2(f_in[both][ok]), np.log2(f_out[both][ok]))[0, 1]
        assert corr > 0.8, f"contour correlation {corr:.2f}"  # includes the settling drift
        ratio = np.where(late, f_out, 1.0) / np.where(late, f_in, 1.0)
        sel = late & (np.abs(np.log2(np.maximum(ratio, 1e-3)) - np.median(shift)) < 0.4)
        corr_late = np.corrcoef(np.log2(f_in[sel]), np.log2(f_out[sel]))[0, 1]
        assert corr_late > 0.95, f"contour correlation after settling {corr_late:.2f}"
        # the contour keeps its shape: its spread in octaves is about the same
        spread = lambda f: np.subtract(*np.percentile(np.log2(f[sel]), [95, 5]))  # noqa: E731
        spread_in, spread_out = spread(f_in), spread(f_out)
        assert 0.7 < spread_out / spread_in < 1.4
    assert abs(np.log2(medians[0] / medians[1])) < 0.25  # from 1.16 octaves apart


def test_pitch_norm_strength_scales_the_shift():
    x = synth_voice(110.0, 3.0)
    f_in, v_in = f0_track(x)
    full = run(x, method="mcadams+pitch", mcadams_alpha=0.8, seed=4).samples
    # strength 1 is exactly the full normalisation
    one = run(x, method="mcadams+pitch", mcadams_alpha=0.8, seed=4, pitch_norm_strength=1.0).samples
    assert np.array_equal(full, one)
    shifts = {}
    for strength in (0.0, 0.5, 1.0):
        out = run(x, method="mcadams+pitch", mcadams_alpha=1.0, pitch_norm_strength=strength).samples
        f_out, v_out = f0_track(out)
        both = v_in & v_out
        both[: len(both) // 3] = False  # after the running estimate has settled
        shift = np.log2(f_out[both] / f_in[both])
        shifts[strength] = np.median(shift[np.abs(shift - np.median(shift)) < 0.4])
    assert abs(shifts[0.0]) < 0.03  # strength 0: pitch left where it was
    full_shift = np.log2(160.0 / 110.0)  # about 0.54 octave up
    assert abs(shifts[1.0] - full_shift) < 0.15
    assert abs(shifts[0.5] - 0.5 * shifts[1.0]) < 0.07  # half the log shift


def test_silence_short_and_empty_inputs():
    for n in (0, 10, 400):
        out = run(np.zeros(n, np.float32), seed=0)
        assert len(out.samples) == n and np.all(out.samples == 0)


def test_other_sample_rate_is_resampled(voice):
    x8k = voice[::2].copy()
    out = VoiceDeidentifier(VoiceDeidOptions(seed=0)).process(AudioChunk(0.0, x8k, 8000))
    assert out.sr == SR and abs(len(out.samples) - len(voice)) <= 1


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError):
        VoiceDeidentifier(VoiceDeidOptions(method="robot"))
    with pytest.raises(UsageError):
        VoiceDeidentifier(VoiceDeidOptions(mcadams_alpha=0.0))
    with pytest.raises(UsageError):
        VoiceDeidentifier(VoiceDeidOptions(target_f0_hz=20.0))
    with pytest.raises(UsageError):
        VoiceDeidentifier(VoiceDeidOptions(pitch_norm_strength=1.5))
    deid = VoiceDeidentifier(VoiceDeidOptions())
    with pytest.raises(UsageError):
        deid.feed(AudioChunk(0.0, np.zeros(100, np.float32), 8000))
