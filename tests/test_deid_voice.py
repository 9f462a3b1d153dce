"""Voice de-identification: signal-level properties, sessions, streaming, pitch."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from edge_app.deid.files import voice_gain_db
from edge_app.deid.pitch import F0_WIN, SessionPeak, estimate_f0
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


@pytest.mark.parametrize("method", ["mcadams", "mcadams+pitch", "pitch+vtl"])
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
    default = [VoiceDeidentifier(VoiceDeidOptions()) for _ in range(8)]
    assert len({d.alpha for d in default}) == 8 and all(0.5 <= d.alpha <= 0.9 for d in default)
    assert {d.formant_scale for d in default} == {1.0} and default[0].speaker.ltas is None
    # pitch+vtl draws a vocal-tract length per session and has no McAdams warp
    vtl = [VoiceDeidentifier(VoiceDeidOptions(method="pitch+vtl")) for _ in range(8)]
    assert len({d.formant_scale for d in vtl}) == 8 and {d.alpha for d in vtl} == {1.0}
    assert all(0.87 <= d.formant_scale <= 1.15 for d in vtl)
    assert all(d.speaker.ltas is not None for d in vtl)  # spectrum equaliser on
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


# -50 dB: a quiet microphone, so the output level control is raising it; hold_s: the silence
# reference falls after a second of quiet (SessionPeak's loop path)
@pytest.mark.parametrize("method,gain_db,hold_s", [("mcadams", 0, None), ("mcadams+pitch", 0, None), ("pitch+vtl", 0, None),
                                                   ("mcadams+pitch", -50, None), ("mcadams+pitch", 0, 1.0)])
def test_streaming_equals_whole_file_without_clicks(method, gain_db, hold_s):
    x = np.concatenate([synth_voice(110.0, 2.5, seed=1), synth_voice(210.0, 2.5, 0.85, seed=2)]) * 10 ** (gain_db / 20)
    if hold_s is not None:  # then 40 dB quieter: the reference falls in between
        x[len(x) // 2 :] *= 0.01
    opts = VoiceDeidOptions(method=method, seed=11, silence_peak_hold_s=hold_s)
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


def loudest_frame_dbfs(x: np.ndarray) -> float:
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), F0_WIN)[::160]
    return float(20 * np.log10(np.sqrt((frames**2).mean(axis=1)).max() + 1e-12))


def test_output_level_raises_a_quiet_session_and_leaves_a_normal_one():
    # half a second of room noise first: speech is judged against the quietest frame heard
    room = 1e-3 * np.random.default_rng(4).standard_normal(SR // 2).astype(np.float32)
    x = np.concatenate([room, synth_voice(120.0, 2.0, seed=3)])
    target = VoiceDeidOptions().output_level_dbfs
    normal = run(x, seed=5).samples
    assert np.array_equal(normal, run(x, seed=5, output_level_dbfs=None).samples)  # untouched
    for gain_db in (-40, -50):  # both need less than the 40 dB cap to reach the target
        quiet = x * 10 ** (gain_db / 20)
        off = run(quiet, seed=5, output_level_dbfs=None).samples
        on = run(quiet, seed=5).samples
        assert loudest_frame_dbfs(off) < target - 10
        assert abs(loudest_frame_dbfs(on) - target) < 1.5
        # one gain for the session once its loudest voiced frame is in: the voice itself is unchanged
        late = slice(SR, len(x))
        ratio = on[late] / np.where(np.abs(off[late]) > 1e-9, off[late], np.nan)
        assert np.nanstd(ratio) < 1e-3 * np.nanmean(ratio)
        # what privacy.voice_gain_db reports is that gain
        deid = VoiceDeidentifier(VoiceDeidOptions(seed=5))
        deid.process(AudioChunk(0.0, quiet, SR))
        assert abs(voice_gain_db(deid) - 20 * np.log10(np.nanmean(ratio))) < 0.05
    deid = VoiceDeidentifier(VoiceDeidOptions(seed=5))
    deid.process(AudioChunk(0.0, x, SR))
    assert voice_gain_db(deid) == 0.0


def test_output_level_never_raises_noise_or_passes_the_cap():
    rng = np.random.default_rng(0)
    hiss = 10 ** (-70 / 20) * rng.standard_normal(2 * SR)  # nothing voiced
    assert np.array_equal(run(hiss, seed=5).samples, run(hiss, seed=5, output_level_dbfs=None).samples)
    # speech near -85 dBFS over a -115 dBFS floor: it needs 45 dB, the cap gives 40
    room = 10 ** (-115 / 20) * rng.standard_normal(SR // 2)
    faint = np.concatenate([room, synth_voice(120.0, 2.0, seed=3) * 10 ** (-65 / 20)])
    opts = VoiceDeidOptions()
    raised = loudest_frame_dbfs(run(faint, seed=5).samples) - loudest_frame_dbfs(run(faint, seed=5, output_level_dbfs=None).samples)
    assert opts.max_output_gain_db - 1.0 < raised < opts.max_output_gain_db + 0.5


def test_long_stream_keeps_bounded_state():
    # a service streams for days: every per-sample and per-frame buffer is trimmed
    deid = VoiceDeidentifier(VoiceDeidOptions(seed=5))
    x = synth_voice(150.0, 2.0, seed=3)
    sizes = []
    for i in range(30):  # 60 s in 2 s chunks
        deid.feed(AudioChunk(2.0 * i, x, SR))
        st = deid._state
        sizes.append(max(len(st.ratios.buf), len(st.y_pos.buf), len(st.x.buf), len(st.y.buf)))
    assert deid._state.ratios.end >= 5900  # frames really went through
    assert max(sizes[-5:]) < 1.5 * max(sizes[:5]), sizes  # no growth with stream length
    assert max(len(deid._state.ratios.buf), len(deid._state.y_pos.buf)) < 400


def test_ltas_equaliser_removes_a_fixed_timbre_difference():
    # the same voice through two different "throats / microphones" (a fixed tilt):
    # with the long-term spectrum equalised, the two outputs' average spectra are
    # much closer than the inputs' were, while each frame keeps its energy contour
    base = np.concatenate([synth_voice(140.0, 3.0, seed=s) for s in range(3)])
    base = base * (0.15 + np.abs(np.sin(np.pi * 1.3 * np.arange(len(base)) / SR)))  # syllable-like
    tilted = lfilter([1.0, -0.9], [1.0], base)  # +~20 dB per decade high-frequency tilt
    tilted = (0.3 * tilted / np.abs(tilted).max()).astype(np.float32)

    def ltas(x):
        return log_spectrum(x)[16:240] - log_spectrum(x)[16:240].mean()  # 500-7500 Hz shape

    gap_in = np.abs(ltas(base) - ltas(tilted)).mean()
    opts = {"method": "mcadams+pitch", "mcadams_alpha": 1.0, "seed": 1}
    out_a = run(base, ltas_norm_strength=1.0, **opts).samples
    out_b = run(tilted, ltas_norm_strength=1.0, **opts).samples
    gap_out = np.abs(ltas(out_a) - ltas(out_b)).mean()
    assert gap_out < 0.4 * gap_in, (gap_in, gap_out)
    plain = run(tilted, ltas_norm_strength=0.0, **opts).samples  # equaliser off: gap stays
    assert np.abs(ltas(out_a) - ltas(plain)).mean() > 0.7 * gap_in
    # loudness contour kept: 50 ms frame energies correlate with the input's
    frames = lambda x: np.log(np.lib.stride_tricks.sliding_window_view(x, 800)[::800].var(axis=1) + 1e-9)
    assert np.corrcoef(frames(tilted), frames(out_b))[0, 1] > 0.9


def test_formant_scale_is_a_per_session_linear_warp():
    opts = {"method": "mcadams", "mcadams_alpha": 1.0}
    scales = [VoiceDeidentifier(VoiceDeidOptions(formant_scale_range=(0.8, 1.25), seed=s)).formant_scale
              for s in range(20)]
    assert all(0.8 <= f <= 1.25 for f in scales) and min(scales) < 0.9 and max(scales) > 1.1
    # adding the range leaves each seed's alpha as it was
    assert VoiceDeidentifier(VoiceDeidOptions(seed=3)).alpha == \
        VoiceDeidentifier(VoiceDeidOptions(seed=3, formant_scale_range=(0.8, 1.25))).alpha
    # a 1.2 warp moves every formant up by 1.2 (a 1.2x shorter vocal tract)
    x = synth_voice(120.0)
    out = run(x, formant_scale_range=(1.2, 1.2), **opts)
    assert "formant_scale=1.200" in out.method
    for formant in (1220.0, 2600.0):  # the test voice's F2 and F3
        ratio = formant_track(out.samples, 1.2 * formant) / formant_track(x, formant)
        assert abs(ratio - 1.2) < 0.05, (formant, ratio)


def test_random_pitch_target_moves_the_pitch_level_not_the_formants():
    targets = [VoiceDeidentifier(VoiceDeidOptions(method="pitch+vtl", target_f0_range=(125.0, 205.0), seed=s))
               for s in range(20)]
    assert all(125.0 <= d.target_f0 <= 205.0 for d in targets) and len({d.target_f0 for d in targets}) == 20
    # drawn last: each seed's vocal-tract factor is the one it had without the range
    assert [d.formant_scale for d in targets[:3]] == \
        [VoiceDeidentifier(VoiceDeidOptions(method="pitch+vtl", seed=s)).formant_scale for s in range(3)]
    assert VoiceDeidentifier(VoiceDeidOptions(seed=4)).target_f0 == 160.0  # default: fixed target
    x = synth_voice(120.0, 4.0)
    opts = {"method": "pitch+vtl", "formant_scale_range": (1.0, 1.0), "ltas_norm_strength": 0.0, "seed": 1}
    fixed = run(x, **opts).samples  # 120 -> 160 Hz, formants follow (x 4/3)
    high = run(x, target_f0_range=(200.0, 200.0), **opts)  # 120 -> 200 Hz, formants as for 160
    assert "target_f0=200.0" in high.method

    def median_f0(y):
        f0, voiced = f0_track(y)
        return float(np.median(f0[voiced]))

    assert abs(median_f0(high.samples) / median_f0(fixed) - 1.25) < 0.05
    for formant in (1220.0, 2600.0):
        near = formant * 160.0 / 120.0
        ratio = formant_track(high.samples, near) / formant_track(fixed, near)
        assert abs(ratio - 1.0) < 0.04, (formant, ratio)


def formant_track(x: np.ndarray, near_hz: float) -> float:
    """Median frequency of the narrow LPC resonance closest to `near_hz` over 20 ms frames."""
    from edge_app.deid.mcadams import lpc_batch, poles_batch

    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), 320)[::160] * np.hanning(320)
    poles = poles_batch(lpc_batch(frames, 20))
    freq = np.where((poles.imag > 0) & (np.abs(poles) > 0.9), np.angle(poles) * SR / (2 * np.pi), np.inf)
    nearest = np.take_along_axis(freq, np.argmin(np.abs(freq - near_hz), axis=1)[:, None], axis=1)
    return float(np.median(nearest[np.isfinite(nearest)]))


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
        spread = lambda f, sel=sel: np.subtract(*np.percentile(np.log2(f[sel]), [95, 5]))
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


def test_session_peak_holds_through_speech_and_falls_after_a_bang():
    loud, quieter, quiet = 0.1, 0.02, 1e-3  # quieter: within 20 dB of loud; quiet: 40 dB under
    speech = np.tile([loud] * 5 + [quieter] * 50, 20)  # loud syllables every 0.55 s
    for hold in (None, 100):
        peak = SessionPeak(hold, release_db=0.06)
        assert np.allclose(peak.thresholds(speech, 30.0, 1.0), loud * 10 ** (-30 / 20))  # never falls in speech
    bang_then_quiet = np.concatenate([[1.0], np.full(2000, quiet)])
    kept = SessionPeak(None).thresholds(bang_then_quiet, 30.0, 1.0)
    assert kept[-1] == pytest.approx(10 ** (-30 / 20))  # the bang's reference for good
    peak = SessionPeak(100, release_db=0.06)
    falls = peak.thresholds(bang_then_quiet, 30.0, 1.0)
    assert np.all(falls[:101] == falls[0])  # held 100 frames (1 s), then falling 6 dB/s ...
    assert falls[200] == pytest.approx(falls[0] * 10 ** (-6 / 20))
    assert peak.value == pytest.approx(quiet * 10, rel=0.01)  # ... until the frames are within 20 dB of it
    # thresholds depend only on frames already heard: any split gives the same
    again = SessionPeak(100, release_db=0.06)
    parts = [again.thresholds(bang_then_quiet[a:b], 30.0, 1.0) for a, b in ((0, 7), (7, 150), (150, 2001))]
    assert np.array_equal(np.concatenate(parts), falls)


def test_bad_options_are_usage_errors():
    for bad in ({"output_level_dbfs": 0.0}, {"max_output_gain_db": -1.0}, {"silence_peak_hold_s": -1.0},
                {"silence_peak_release_db_per_s": 0.0}):
        with pytest.raises(UsageError):
            VoiceDeidOptions(**bad).validate()
    with pytest.raises(UsageError):
        VoiceDeidentifier(VoiceDeidOptions(method="robot"))
    with pytest.raises(UsageError):
        VoiceDeidentifier(VoiceDeidOptions(mcadams_alpha=0.0))
    with pytest.raises(UsageError):
        VoiceDeidentifier(VoiceDeidOptions(target_f0_hz=20.0))
    with pytest.raises(UsageError):
        VoiceDeidentifier(VoiceDeidOptions(pitch_norm_strength=1.5))
    with pytest.raises(UsageError, match="target_f0_range"):
        VoiceDeidentifier(VoiceDeidOptions(target_f0_range=(300.0, 200.0)))
    with pytest.raises(UsageError, match="formant_scale_range"):
        VoiceDeidentifier(VoiceDeidOptions(formant_scale_range=(1.2, 1.1)))
    with pytest.raises(UsageError, match="ltas_norm_strength"):
        VoiceDeidentifier(VoiceDeidOptions(ltas_norm_strength=2.0))
    deid = VoiceDeidentifier(VoiceDeidOptions())
    with pytest.raises(UsageError):
        deid.feed(AudioChunk(0.0, np.zeros(100, np.float32), 8000))
