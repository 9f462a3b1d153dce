"""Voice de-identification: the first thing that touches microphone audio.

Three methods, all streaming, all on a fixed frame grid (10 ms hop):

``"mcadams"``
    The VoicePrivacy Challenge B2 baseline: LPC pole angles phi -> phi**alpha
    (see `edge_app.deid.mcadams`). With a random alpha per session it reaches
    roughly 32 % EER against an attacker who enrols on original voices.

``"mcadams+pitch"`` (default)
    Pitch normalisation first: the speaker's running median F0 is mapped to a
    fixed target (`target_f0_hz`) by one ratio r = target / median, so every
    speaker ends up on the same pitch level while the *relative* F0 contour, which
    carries the emotion, is kept. The shift is time-domain (resample at rate r,
    then WSOLA back to the original duration); resampling also scales the
    formants by r, which `formant_follow` keeps (1.0) or undoes (0.0) inside the
    McAdams pole warping that follows: angle -> (angle * r**(formant_follow-1))**alpha.
    Keeping it normalises apparent vocal-tract size along with pitch. Measured:
    see benchmarks/results/voice_privacy.md.

``"pitch+vtl"`` (emotion-preserving, weaker privacy: not the default)
    Pitch normalisation as above, then one random linear formant warp per session
    (every formant x s, s log-uniform in `formant_scale_range`: another vocal-tract
    length, formant ratios kept) instead of McAdams, then long-term spectrum
    equalisation to a fixed target (edge_app/deid/spectrum.py). It keeps the
    emotion information that McAdams' non-linear warp removes, and met every target
    on the validation actors, but on the held-out actors the speaker verifier
    re-identified more voices than the targets allow (semi-informed EER about 31 %),
    so it is opt-in.

API: `process(chunk)` anonymises one complete utterance or file;
`feed(chunk)` / `flush()` anonymise a live stream chunk by chunk, returning the
samples finalised so far (a fixed delay of a few tens of ms). Feeding any
chunking of a signal and then flushing gives exactly the samples `process`
gives for the whole signal. Random parameters (alpha, formant scale) are drawn once per
object: one object = one session = one pseudo-voice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import resample_poly

from edge_app.deid.level import LevelControl, SessionLevel
from edge_app.deid.mcadams import LPC_ORDER, NFFT, SILENCE_RMS, mcadams_frames
from edge_app.deid.pitch import F0_WIN, F0Config, RunningMedianF0, SessionPeak, estimate_f0
from edge_app.deid.spectrum import RunningLtasEqualiser
from edge_app.deid.stream import OlaTape, Tape
from edge_app.errors import UsageError
from edge_app.records import AudioChunk, DeidAudio

METHODS = ("mcadams+pitch", "pitch+vtl", "mcadams")
PITCH_METHODS = ("pitch+vtl", "mcadams+pitch")
# every module of edge_app/deid whose code decides the anonymised audio: the benchmark's
# and the training feature caches hash these, so a code change recomputes them
SOURCE_FILES = ("voice.py", "mcadams.py", "pitch.py", "stream.py", "spectrum.py", "level.py")
SR = 16_000
HOP = 160  # 10 ms frame hop, shared by every stage
WIN = 2 * HOP  # 20 ms Hann windows (50 % overlap sums to one)
PROCESS_BLOCK = SR  # whole files are run through the stream path 1 s at a time
FLUSH_PAD = 8192  # silence appended at flush so every stage drains
SOFT_KNEE = 0.9  # above this |sample| the output is softly limited below 1.0
# A frame is skipped as silence (no pitch tracking; no McAdams warp) only below the absolute
# levels of F0Config.silence_rms / mcadams.SILENCE_RMS *and* this far below the session's
# loudest frame so far. With the absolute levels alone, speech from a quiet microphone counted
# as silence and passed through almost untouched: at 45 dB below RAVDESS's recording level the
# lazy-informed attacker's EER fell from 47 % to 8.9 % (benchmarks/bench_voice_privacy.py
# --input-gain-db -45; benchmarks/voice_privacy_level.py keeps the sweep before and after).
F0_SILENCE_BELOW_PEAK_DB = 30.0
MCADAMS_SILENCE_BELOW_PEAK_DB = 50.0


@dataclass
class VoiceDeidOptions:
    """How the voice is de-identified. Defaults are the measured best trade-off."""

    # "mcadams+pitch" (default: pitch normalisation, then McAdams; meets the privacy
    # targets, see the benchmark), "pitch+vtl" (pitch normalisation, random vocal-tract
    # length, spectrum equalisation: keeps more emotion, weaker privacy) or "mcadams"
    # (VoicePrivacy B2 baseline)
    method: str = "mcadams+pitch"
    # McAdams coefficient; None = drawn uniformly from alpha_range once per session
    # (methods with McAdams only: "pitch+vtl" has none, alpha = 1)
    mcadams_alpha: float | None = None
    # range of the random per-session alpha (VPC B2 uses 0.5 .. 0.9)
    alpha_range: tuple[float, float] = (0.5, 0.9)
    # seed of the session's random parameters; None = fresh OS entropy
    seed: int | None = None
    # every speaker's running median F0 is mapped to this pitch, Hz (gender-neutral)
    target_f0_hz: float = 160.0
    # per-session random pitch level: the session's target is drawn log-uniformly
    # from this range, Hz, once per session (None = always target_f0_hz). Formants
    # follow only the normalisation to target_f0_hz, not this random offset, so the
    # pitch level is a second random voice dimension, independent of the formants.
    # Measured with pitch+vtl (benchmarks/results/voice_privacy.md): more privacy on
    # the validation speakers, but less on the held-out ones and less emotion: opt-in
    target_f0_range: tuple[float, float] | None = None
    # how far the speaker's pitch level is moved towards target_f0_hz, in [0, 1]:
    # the shift is strength * (log target - log speaker median); 1 = full
    # normalisation (every speaker on the target), 0 = pitch left as it is
    pitch_norm_strength: float = 1.0
    # how far formants follow the pitch shift: 1.0 = scaled by the same ratio
    # (normalises apparent vocal-tract size too), 0.0 = formants kept in place
    formant_follow: float = 1.0
    # per-session random vocal-tract length: every formant frequency is scaled by one
    # factor drawn log-uniformly from this range once per session (a linear warp,
    # unlike McAdams: formant ratios are kept); (1, 1) = off; None = the method's
    # default: (0.87, 1.15) for "pitch+vtl", off for the McAdams methods
    formant_scale_range: tuple[float, float] | None = None
    # long-term spectrum equalisation (edge_app/deid/spectrum.py): how far the
    # session's average spectrum is moved to a fixed target, in [0, 1]; 0 = off;
    # None = the method's default: 1 for "pitch+vtl", off for the McAdams methods
    ltas_norm_strength: float | None = None
    # stand-in speaker F0 until enough voice is heard, Hz, and its weight in
    # voiced frames (10 ms each): the running estimate blends from it
    prior_f0_hz: float = 160.0
    prior_frames: float = 10.0
    # pitch-shift ratios are clipped to [1/max_shift, max_shift]
    max_shift: float = 2.0
    # WSOLA search range either side of the nominal position, ms; must exceed
    # half the longest pitch period (60 Hz -> 8.3 ms)
    wsola_tolerance_ms: float = 10.0
    # F0 tracker settings (search range, voicing thresholds)
    f0: F0Config = field(default_factory=F0Config)
    # output level control (edge_app/deid/level.py): a session whose loudest speech
    # 40 ms frame is quieter than this, dBFS, is raised to it (one gain per session
    # that only falls; louder sessions are untouched); None = off. -35 was chosen on
    # validation, benchmarks/output_level.py
    output_level_dbfs: float | None = -35.0
    # most gain the level control applies, dB
    max_output_gain_db: float = 40.0
    # silence is judged against the session's loudest frame (pitch.SessionPeak). None: the
    # loudest of the whole session (until 2026-12-06). Else that peak is held while frames keep
    # coming within silence_peak_refresh_db of it, and after this many seconds with none that
    # close it falls by silence_peak_release_db_per_s: a door slam no longer leaves quiet speech
    # after it judged silent and passed through nearly untouched (bench_voice_privacy.py
    # --input-gain-db -40 --bang-dbfs -6: EER 23.2 / 15.0 % -> 47.0 / 41.7 %; emotion on the
    # validation sweep within 0.3 points, benchmarks/results/voice_privacy.md)
    silence_peak_hold_s: float | None = 5.0
    silence_peak_release_db_per_s: float = 6.0
    silence_peak_refresh_db: float = 20.0

    @property
    def vtl_range(self) -> tuple[float, float]:
        """formant_scale_range, or the method's default when it is None."""
        if self.formant_scale_range is not None:
            return tuple(self.formant_scale_range)
        return (0.87, 1.15) if self.method == "pitch+vtl" else (1.0, 1.0)

    @property
    def ltas_strength(self) -> float:
        """ltas_norm_strength, or the method's default when it is None."""
        if self.ltas_norm_strength is not None:
            return self.ltas_norm_strength
        return 1.0 if self.method == "pitch+vtl" else 0.0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"voice method must be one of {', '.join(METHODS)}, got {self.method!r}")
        lo, hi = self.alpha_range
        if not 0.0 < lo <= hi <= 1.5:
            raise UsageError(f"alpha_range must satisfy 0 < lo <= hi <= 1.5, got {self.alpha_range}")
        if self.mcadams_alpha is not None and not 0.0 < self.mcadams_alpha <= 1.5:
            raise UsageError(f"mcadams_alpha must be in (0, 1.5], got {self.mcadams_alpha}")
        if not 60.0 <= self.target_f0_hz <= 400.0:
            raise UsageError(f"target_f0_hz must be in [60, 400], got {self.target_f0_hz}")
        if self.target_f0_range is not None:
            tlo, thi = self.target_f0_range
            if not 60.0 <= tlo <= thi <= 400.0:
                raise UsageError(f"target_f0_range must satisfy 60 <= lo <= hi <= 400, got {self.target_f0_range}")
        if not 0.0 <= self.pitch_norm_strength <= 1.0:
            raise UsageError(f"pitch_norm_strength must be in [0, 1], got {self.pitch_norm_strength}")
        if self.max_shift < 1.0:
            raise UsageError(f"max_shift must be >= 1, got {self.max_shift}")
        slo, shi = self.vtl_range
        if not 0.5 <= slo <= shi <= 2.0:
            raise UsageError(f"formant_scale_range must satisfy 0.5 <= lo <= hi <= 2, got {self.formant_scale_range}")
        if not 0.0 <= self.ltas_strength <= 1.0:
            raise UsageError(f"ltas_norm_strength must be in [0, 1], got {self.ltas_norm_strength}")
        if self.output_level_dbfs is not None and not -60.0 <= self.output_level_dbfs <= -6.0:
            raise UsageError(f"output_level_dbfs must be in [-60, -6] or None, got {self.output_level_dbfs}")
        if self.silence_peak_hold_s is not None and not 0.0 <= self.silence_peak_hold_s <= 600.0:
            raise UsageError(f"silence_peak_hold_s must be in [0, 600] or None, got {self.silence_peak_hold_s}")
        if not 0.0 < self.silence_peak_release_db_per_s <= 120.0:
            raise UsageError(f"silence_peak_release_db_per_s must be in (0, 120], got {self.silence_peak_release_db_per_s}")
        if not 0.0 < self.silence_peak_refresh_db <= 60.0:
            raise UsageError(f"silence_peak_refresh_db must be in (0, 60], got {self.silence_peak_refresh_db}")
        if not 0.0 <= self.max_output_gain_db <= 60.0:
            raise UsageError(f"max_output_gain_db must be in [0, 60], got {self.max_output_gain_db}")


def _periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


_HANN = _periodic_hann(WIN)


class VoiceDeidentifier:
    """One anonymisation session: fixed random voice parameters, streaming state."""

    def __init__(self, options: VoiceDeidOptions | None = None) -> None:
        self.options = options or VoiceDeidOptions()
        self.options.validate()
        rng = np.random.default_rng(self.options.seed)
        lo, hi = self.options.alpha_range
        drawn = float(rng.uniform(lo, hi))  # drawn even when fixed: same stream of draws
        self.alpha = self.options.mcadams_alpha if self.options.mcadams_alpha is not None else drawn
        if self.options.method == "pitch+vtl":
            self.alpha = 1.0
        slo, shi = self.options.vtl_range
        # drawn after alpha, so adding it leaves every session's alpha as it was
        self.formant_scale = float(np.exp(rng.uniform(np.log(slo), np.log(shi)))) if shi > slo else slo
        # drawn last, for the same reason; only when asked for
        self.target_f0 = self.options.target_f0_hz
        if self.options.target_f0_range is not None:
            tlo, thi = self.options.target_f0_range
            self.target_f0 = float(np.exp(rng.uniform(np.log(tlo), np.log(thi)))) if thi > tlo else tlo
        self.speaker = SpeakerPitch(self.options, self.target_f0)
        self._state: _StreamState | None = None

    @property
    def _formant_pre(self) -> float:
        """The session's constant pole-angle pre-scale: the vocal-tract factor, and with a
        random pitch target, the undoing of that target's offset from target_f0_hz (which
        resampling would otherwise carry into the formants)."""
        o = self.options
        if self.target_f0 == o.target_f0_hz or o.method not in PITCH_METHODS:
            return self.formant_scale
        return self.formant_scale * (o.target_f0_hz / self.target_f0) ** (o.formant_follow * o.pitch_norm_strength)

    @property
    def method(self) -> str:
        """The method and this session's random parameters, e.g. for the JSON `privacy` key."""
        if self.options.method == "pitch+vtl":
            params = f"formant_scale={self.formant_scale:.3f}"
        else:
            scale = f", formant_scale={self.formant_scale:.3f}" if self.formant_scale != 1.0 else ""
            params = f"alpha={self.alpha:.3f}{scale}"
        if self.target_f0 != self.options.target_f0_hz:
            params += f", target_f0={self.target_f0:.1f}"
        return f"{self.options.method}({params})"

    @property
    def latency_s(self) -> float:
        """Upper bound of the delay between input and output in streaming use."""
        pitch = self.options.method in PITCH_METHODS
        tol = int(round(self.options.wsola_tolerance_ms * SR / 1000))
        extra = (F0_WIN // 2 + 2 * HOP + self.options.max_shift * (tol + WIN)) if pitch else 0
        level = F0_WIN // 2 + HOP if self.options.output_level_dbfs is not None else 0
        return (WIN + HOP + extra + level) / SR

    # --- whole utterance -------------------------------------------------------

    def process(self, chunk: AudioChunk) -> DeidAudio:
        """Anonymise a complete utterance or file (same length, same start time).

        Audio at another rate is resampled to 16 kHz first. The session's random
        parameters are used, and its running speaker-F0 estimate is read and
        updated (a session is one speaker: later utterances are normalised with
        everything heard so far). Any live stream of this object is not touched.
        """
        samples = _to_float(chunk.samples)
        if chunk.sr != SR:
            samples = resample_poly(samples, SR, chunk.sr)
        state = _StreamState(self.options, self.alpha, self.speaker, self._formant_pre)
        # fed in blocks: same samples as one call (the frame grid is absolute),
        # but the per-batch arrays stay cache-sized on long files
        parts = [state.feed(samples[i : i + PROCESS_BLOCK]) for i in range(0, len(samples), PROCESS_BLOCK)]
        out = np.concatenate(parts + [state.flush()])
        return DeidAudio(t0=chunk.t0, samples=out.astype(np.float32), sr=SR, method=self.method)

    # --- live stream -----------------------------------------------------------

    def feed(self, chunk: AudioChunk) -> DeidAudio:
        """Add the next chunk of a live stream; returns the output finalised so far.

        The returned audio starts where the previous one ended (its `t0` is the
        stream time of its first sample) and may be a few tens of ms shorter than
        what was fed; `flush()` returns the rest.
        """
        if chunk.sr != SR:
            raise UsageError(f"streaming voice de-identification needs {SR} Hz audio, got {chunk.sr} Hz")
        if self._state is None:
            self._state = _StreamState(self.options, self.alpha, self.speaker, self._formant_pre, chunk.t0)
        state = self._state
        t0 = state.t0 + state.emitted / SR
        out = state.feed(_to_float(chunk.samples))
        return DeidAudio(t0=t0, samples=out.astype(np.float32), sr=SR, method=self.method)

    def flush(self) -> DeidAudio:
        """End the stream: returns the remaining output.

        The session's voice (alpha) and its speaker-F0 estimate stay, so the next
        stream continues with the same pseudo-voice and normalisation.
        """
        state, self._state = self._state, None
        if state is None:
            return DeidAudio(t0=0.0, samples=np.zeros(0, np.float32), sr=SR, method=self.method)
        t0 = state.t0 + state.emitted / SR
        return DeidAudio(t0=t0, samples=state.flush().astype(np.float32), sr=SR, method=self.method)

    def reset_speaker(self) -> None:
        """Forget the running speaker-F0 estimate (a different person speaks now)."""
        self.speaker = SpeakerPitch(self.options, self.target_f0)

    def stream(self, chunks: Iterable[AudioChunk]) -> Iterator[DeidAudio]:
        """Anonymise an iterable of consecutive chunks, flushing at the end."""
        for chunk in chunks:
            out = self.feed(chunk)
            if len(out.samples):
                yield out
        tail = self.flush()
        if len(tail.samples):
            yield tail


class SpeakerPitch:
    """The session's running estimate of the speaker's median F0 -> pitch ratios
    (and, with spectrum equalisation, of the speaker's long-term spectrum), and the
    session's loudest frames, which silence is judged against."""

    def __init__(self, opts: VoiceDeidOptions, target_hz: float) -> None:
        self.opts = opts
        self.target_hz = target_hz  # this session's pitch target (target_f0_hz unless drawn)
        self.median = RunningMedianF0()
        # the loudest frames heard (RMS of the F0 tracker's 40 ms frames and of McAdams'
        # windowed 20 ms frames; both on the 10 ms grid): silence is judged relative to these
        hold = None if opts.silence_peak_hold_s is None else round(opts.silence_peak_hold_s * SR / HOP)
        release = opts.silence_peak_release_db_per_s * HOP / SR
        self.peak_f0 = SessionPeak(hold, release, opts.silence_peak_refresh_db)
        self.peak_mcadams = SessionPeak(hold, release, opts.silence_peak_refresh_db)
        # the loudest speech frame of the output and its noise floor (the output level control's)
        self.level = SessionLevel()
        # the speaker's long-term spectrum, when it is equalised too
        self.ltas = (
            RunningLtasEqualiser(NFFT, opts.ltas_strength) if opts.ltas_strength > 0 else None
        )

    def ratios(self, f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
        """Pitch ratio target / speaker for consecutive frames (updates the estimate)."""
        median_hz = self.median.update(f0, voiced)
        # log-domain blend of prior and running median, weighted by voiced counts
        n = self.median.n_voiced - voiced.sum() + np.cumsum(voiced)
        w = n / (n + self.opts.prior_frames)
        speaker = np.exp(w * np.log(median_hz) + (1 - w) * np.log(self.opts.prior_f0_hz))
        ratio = self.target_hz / speaker
        if self.opts.pitch_norm_strength != 1.0:  # partial: (target / speaker) ** strength
            ratio = ratio**self.opts.pitch_norm_strength
        return np.clip(ratio, 1 / self.opts.max_shift, self.opts.max_shift)

    @property
    def median_hz(self) -> float | None:
        """Current estimate, None before any voiced frame."""
        if self.median.n_voiced == 0:
            return None
        return float(self.median.update(np.zeros(1), np.zeros(1, bool))[0])


def _to_float(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _soft_limit(x: np.ndarray) -> np.ndarray:
    """Identity below SOFT_KNEE, tanh knee above: output strictly inside (-1, 1)."""
    mag = np.abs(x)
    room = 1.0 - SOFT_KNEE
    limited = SOFT_KNEE + room * np.tanh((mag - SOFT_KNEE) / room)
    return np.where(mag > SOFT_KNEE, np.sign(x) * limited, x)


class _StreamState:
    """Frame-grid state machine behind `VoiceDeidentifier` (one stream)."""

    def __init__(self, opts: VoiceDeidOptions, alpha: float, speaker: SpeakerPitch,
                 formant_pre: float = 1.0, t0: float = 0.0) -> None:
        self.opts = opts
        self.alpha = alpha
        self.formant_pre = formant_pre  # the session's constant pole-angle pre-scale
        self.t0 = t0
        self.pitch = opts.method in PITCH_METHODS
        self.speaker = speaker  # the session's speaker estimates, shared across streams
        self.n_in = 0  # samples fed so far
        self.popped = 0  # samples taken from the overlap-add output so far
        self.emitted = 0  # samples handed out so far (after the level control's hold-back)
        self.level = (
            LevelControl(speaker.level, opts.output_level_dbfs, opts.max_output_gain_db)
            if opts.output_level_dbfs is not None else None
        )
        self.x = Tape()  # input
        self.out = OlaTape()  # McAdams output, overlap-added
        # per 10 ms input frame, by absolute frame number (trimmed like the audio,
        # so a stream that runs for days keeps bounded memory and per-call cost)
        self.ratios = Tape()  # pitch ratio
        self.next_mc = -1  # next McAdams frame (frame -1 covers the first 10 ms)
        if self.pitch:
            self.next_f0 = 0
            self.y = Tape()  # input resampled at the running pitch ratio
            self.phi = 0.0  # input position (samples) of the next resampled sample
            self.y_pos = Tape()  # y position of input time k * HOP, per frame k
            self.z = OlaTape()  # WSOLA output (pitch-shifted, original timing)
            self.z_tape = Tape()  # final part of z, read by McAdams
            self.next_grain = -1
            self.prev_start = -HOP  # y start of the previous grain
            self.tol = int(round(opts.wsola_tolerance_ms * SR / 1000))

    # --- driver ----------------------------------------------------------------

    def feed(self, samples: np.ndarray) -> np.ndarray:
        self.x.append(samples)
        self.n_in += len(samples)
        self._run()
        return self._emit(self._final_out())

    def flush(self) -> np.ndarray:
        self.x.append(np.zeros(FLUSH_PAD))
        self._run()
        return self._emit(self.n_in, final=True)

    def _run(self) -> None:
        if self.pitch:
            self._run_f0()
            self._run_resample()
            self._run_wsola()
        self._run_mcadams()
        self._trim()

    def _emit(self, upto: int, final: bool = False) -> np.ndarray:
        upto = min(upto, self.n_in)
        out = self.out.pop(upto) if upto > self.popped else np.zeros(0)
        self.popped += len(out)
        if self.level is not None:
            out = self.level.feed(out)
            out = np.concatenate([out, self.level.flush()]) if final else out
        self.emitted += len(out)
        return _soft_limit(out)

    def _final_out(self) -> int:
        # every McAdams frame that reaches sample t starts at or before t
        return self.next_mc * HOP

    # --- stage 1: F0 and the pitch ratio -----------------------------------------

    def _run_f0(self) -> None:
        half = F0_WIN // 2
        last = (self.x.end - half) // HOP  # frames whose window is complete
        k = np.arange(self.next_f0, last + 1)
        if not len(k):
            return
        seg = self.x.get(int(k[0]) * HOP - half, int(k[-1]) * HOP + half)
        idx = (k - k[0])[:, None] * HOP + np.arange(F0_WIN)[None, :]
        frames = seg[idx]
        silence = self.speaker.peak_f0.thresholds(
            np.sqrt((frames**2).mean(axis=1)), F0_SILENCE_BELOW_PEAK_DB, self.opts.f0.silence_rms)
        f0, voiced = estimate_f0(frames, self.opts.f0, silence)
        self.ratios.append(self.speaker.ratios(f0, voiced))
        self.next_f0 = int(k[-1]) + 1

    # --- stage 2: resample at rate r (pitch and formants x r, duration / r) -----

    def _run_resample(self) -> None:
        k0 = self.y_pos.end
        # frame k needs its ratio and input up to (k + 1) * HOP + 1 (interpolation)
        k1 = min(self.ratios.end, (self.x.end - 2) // HOP)
        if k1 <= k0:
            return
        ratios = self.ratios.get(k0, k1)
        counts = np.zeros(k1 - k0, dtype=int)
        y_pos = np.zeros(k1 - k0)
        phi, yi = self.phi, self.y.end
        for i, r in enumerate(ratios):  # scalar loop: which samples fall in frame k
            k = k0 + i
            y_pos[i] = yi - (phi - k * HOP) / r  # y position of time k * HOP
            counts[i] = max(0, int(np.ceil(((k + 1) * HOP - phi) / r)))
            phi += counts[i] * r
            yi += counts[i]
        self.y_pos.append(y_pos)
        steps = np.repeat(ratios, counts)
        pos = self.phi + np.concatenate([[0.0], np.cumsum(steps)[:-1]]) if len(steps) else steps
        self.phi = phi
        base = int(np.floor(pos[0])) if len(pos) else 0
        seg = self.x.get(base, int(np.floor(pos[-1])) + 2) if len(pos) else np.zeros(0)
        self.y.append(np.interp(pos - base, np.arange(len(seg)), seg) if len(pos) else seg)

    # --- stage 3: WSOLA back to the original timing -------------------------------

    def _run_wsola(self) -> None:
        tol = self.tol
        first = self.next_grain
        grains: list[np.ndarray] = []
        while True:
            g = self.next_grain
            nominal = self._nominal_y(g)
            if nominal is None or nominal + tol + WIN > self.y.end:
                break
            start = nominal if g < 0 else self._best_start(nominal)
            grains.append(self.y.get(start, start + WIN))
            self.prev_start = start
            self.next_grain += 1
        if grains:  # consecutive grains: one batched overlap-add
            self.z.add(first * HOP, np.stack(grains) * _HANN, HOP)
        final = self.next_grain * HOP  # z below this has all its grains
        if final > self.z_tape.end:
            self.z_tape.append(self.z.pop(final))

    def _nominal_y(self, g: int) -> int | None:
        if g < 0:
            return -HOP
        if g >= self.y_pos.end:
            return None
        return int(round(self.y_pos.get(g, g + 1)[0]))

    def _best_start(self, nominal: int) -> int:
        """WSOLA: the start near `nominal` whose first half best continues the last grain."""
        tol = self.tol
        template = self.y.get(self.prev_start + HOP, self.prev_start + 2 * HOP)
        region = self.y.get(nominal - tol, nominal + tol + HOP)
        corr = np.correlate(region, template, mode="valid")
        energy = np.convolve(region**2, np.ones(HOP), mode="valid")
        score = corr / np.sqrt(energy + 1e-9)
        return nominal - tol + int(np.argmax(score))

    # --- stage 4: McAdams pole warping and overlap-add -----------------------------

    def _run_mcadams(self) -> None:
        src = self.z_tape if self.pitch else self.x
        last = (src.end - WIN) // HOP  # frames whose 20 ms are final
        if self.pitch:
            last = min(last, self.ratios.end - 1)
        m = np.arange(self.next_mc, last + 1)
        if not len(m):
            return
        seg = src.get(int(m[0]) * HOP, int(m[-1]) * HOP + WIN)
        idx = (m - m[0])[:, None] * HOP + np.arange(WIN)[None, :]
        alpha = np.full(len(m), self.alpha)
        pre = np.full(len(m), self.formant_pre)
        if self.pitch:
            r = self.ratios.at(np.clip(m, 0, None))
            pre = pre * r ** (self.opts.formant_follow - 1.0)
        eq = self.speaker.ltas.gains if self.speaker.ltas is not None else None
        raw = seg[idx]
        silence = self.speaker.peak_mcadams.thresholds(
            np.sqrt(((raw * _HANN) ** 2).mean(axis=1)), MCADAMS_SILENCE_BELOW_PEAK_DB, SILENCE_RMS)
        frames = mcadams_frames(raw, _HANN, alpha, pre, LPC_ORDER, NFFT, eq, silence)
        self.out.add(int(m[0]) * HOP, frames, HOP)
        self.next_mc = int(m[-1]) + 1

    def _trim(self) -> None:
        """Drop samples no stage will read again (bounded memory on long streams)."""
        if self.pitch:
            self.x.trim(min(self.next_f0 * HOP - F0_WIN, int(self.phi) - 2))
            nominal = self._nominal_y(self.next_grain)
            nominal = self.y.end if nominal is None else nominal
            self.y.trim(min(self.prev_start, nominal - self.tol) - HOP)
            self.z_tape.trim(self.next_mc * HOP - HOP)
            # per-frame logs: McAdams reads from frame next_mc, resampling from
            # y_pos.end, WSOLA from next_grain
            self.ratios.trim(min(self.next_mc, self.y_pos.end))
            self.y_pos.trim(self.next_grain)
        else:
            self.x.trim(self.next_mc * HOP - HOP)
