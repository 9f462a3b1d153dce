"""Output level control: a quiet session's de-identified voice is raised to a working level.

Why: the encoders' pretrained front ends (Whisper, the speech embedding) and the prosody
cues' silence floor read absolute levels, and RAVDESS, the only training speech, is
recorded at one level. With a microphone 30 dB quieter the voice answer fell from 70.0 to
55.0 % on the test actors (benchmarks/audio_robustness.py).

How: the loudest *speech* 40 ms frame of the session so far sets one gain, target / peak,
never below 1 (a session at a normal level passes through untouched) and never above
`max_gain_db`. A frame counts as speech when the de-identifier's own autocorrelation
tracker calls it and the two frames before it voiced, and it is `SPEECH_ABOVE_FLOOR_DB`
above the quietest frame heard so far (the room's noise floor): the tracker alone calls
scattered frames of RAVDESS's background noise voiced, which raised most clips' leading
pause by up to 40 dB (with it, a -40 dBFS target cost the shipped models 2.5 points on the
clean validation clips, benchmarks/output_level.py). The peak only rises, so the
gain only falls as the session goes on; each 10 ms frame gets the gain of the peak
including its own analysis window (which reaches 25 ms ahead), so a syllable louder than
any before it is not over-amplified. No frame is raised above the target level: a clap in
a quiet room stays at it. A gain that rose slowly from the first voiced frame (3 dB per
frame) was tried and left out: RAVDESS's loudest frame is often in the first syllable,
which it then missed.

Streaming: a 10 ms frame is final once the 25 ms after its start are in, so the output
is the same for any chunking of the input (held back at most 35 ms); `flush` ends it.
"""

from __future__ import annotations

import numpy as np

from edge_app.deid.pitch import F0_WIN, F0Config, estimate_f0
from edge_app.deid.stream import Tape

HOP = 160  # 10 ms frames, the de-identifier's grid
# analysis window of frame k: 40 ms centred on the frame's middle
_BEFORE = F0_WIN // 2 - HOP // 2
_AFTER = F0_WIN // 2 + HOP // 2
_DIGITAL_SILENCE_RMS = 1e-7  # -140 dBFS: voicing is judged on anything above it
_FLOOR_MIN_RMS = 1e-6  # frames under -120 dBFS (digital silence) do not set the noise floor
SPEECH_RUN = 3  # consecutive voiced frames, ending at the frame
SPEECH_ABOVE_FLOOR_DB = 20.0


def session_gain(peak: np.ndarray | float, target: float, max_gain: float) -> np.ndarray:
    """The gain a session whose loudest speech frame so far is `peak` (RMS; 0: none yet)
    gets: target / peak, never below 1, at most `max_gain` (all linear)."""
    peak = np.asarray(peak, dtype=np.float64)
    return np.where(peak > 0, np.clip(target / np.maximum(peak, 1e-12), 1.0, max_gain), 1.0)


class SessionLevel:
    """The session's loudest speech frame so far (RMS, full scale = 1; 0 before any), its
    quietest frame (the noise floor) and how many voiced frames its last frames ended with."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.floor = np.inf
        self.run = 0

    def gain_db(self, target_dbfs: float, max_gain_db: float) -> float:
        """How far the session's voice is raised now, dB (0 at a normal level)."""
        gain = session_gain(self.peak, 10 ** (target_dbfs / 20), 10 ** (max_gain_db / 20))
        return float(20 * np.log10(gain))


class LevelControl:
    """Gain stage for one stream of a session (see the module docstring)."""

    def __init__(self, session: SessionLevel, target_dbfs: float, max_gain_db: float) -> None:
        self.session = session
        self.target = 10 ** (target_dbfs / 20)
        self.max_gain = 10 ** (max_gain_db / 20)
        self.x = Tape()
        self.next = 0  # next frame to emit
        self.n_in = 0

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; returns the gained samples final so far."""
        self.x.append(samples)
        self.n_in += len(samples)
        return self._run((self.x.end - _AFTER) // HOP + 1)

    def flush(self) -> np.ndarray:
        """End the stream: the rest, as long as what was fed."""
        self.x.append(np.zeros(F0_WIN))
        return self._run(-(-self.n_in // HOP), self.n_in)

    def gains(self, frames: np.ndarray) -> np.ndarray:
        """Gain per row of `frames` (n, F0_WIN), consecutive; updates the session peak."""
        s = self.session
        rms = np.sqrt((frames**2).mean(axis=1))
        _, voiced = estimate_f0(frames, F0Config(), np.full(len(frames), _DIGITAL_SILENCE_RMS))
        run = _run_lengths(voiced, s.run)
        heard = np.where(rms >= _FLOOR_MIN_RMS, rms, np.inf)
        floors = np.minimum.accumulate(np.concatenate([[s.floor], heard]))[1:]
        speech = (run >= SPEECH_RUN) & (rms >= floors * 10 ** (SPEECH_ABOVE_FLOOR_DB / 20))
        peaks = np.maximum.accumulate(np.concatenate([[s.peak], np.where(speech, rms, 0.0)]))[1:]
        s.peak, s.floor, s.run = float(peaks[-1]), float(floors[-1]), int(run[-1])
        gain = session_gain(peaks, self.target, self.max_gain)
        return np.maximum(1.0, np.minimum(gain, self.target / np.maximum(rms, 1e-12)))

    def _run(self, stop: int, upto: int | None = None) -> np.ndarray:
        """Frames [next, stop): their samples times their gain, cut at sample `upto`
        (None: not cut)."""
        k = np.arange(self.next, stop)
        if not len(k):
            return np.zeros(0)
        seg = self.x.get(int(k[0]) * HOP - _BEFORE, int(k[-1]) * HOP + _AFTER)
        idx = (k - k[0])[:, None] * HOP + np.arange(F0_WIN)[None, :]
        gain = self.gains(seg[idx])
        body = self.x.get(int(k[0]) * HOP, min(int(k[-1] + 1) * HOP, self.x.end))
        out = body * np.repeat(gain, HOP)[: len(body)]
        if upto is not None:
            out = out[: max(0, upto - int(k[0]) * HOP)]
        self.next = int(k[-1]) + 1
        self.x.trim(self.next * HOP - _BEFORE)
        return out


def _run_lengths(flags: np.ndarray, before: int) -> np.ndarray:
    """For each position, how many consecutive True values end there (`before` of them
    just before the first position)."""
    idx = np.arange(1, len(flags) + 1)
    last_false = np.maximum.accumulate(
        np.where(flags, 0, idx)
    )  # 1-based position of the last False
    return np.where(last_false == 0, idx + before, idx - last_false)
