"""Identity-free cues: body language, posture, motion and voice prosody.

Everything here works on de-identified media only (`DeidFrame`, `DeidAudio`).
`extract_cues` summarises one time window into a `Cues` record; `Cues.describe()`
turns the salient cues into short human phrases with times, which the
reasoning LLM cites.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_app.cues.body import BodyCues, BodyOptions, NfblEvent, extract_body_cues
from edge_app.cues.pose import PoseEstimator, PoseOptions, PoseSample, RateLimiter
from edge_app.cues.prosody import Prosody, ProsodyOptions, extract_prosody
from edge_app.records import DeidAudio

__all__ = [
    "BodyCues",
    "BodyOptions",
    "CueOptions",
    "Cues",
    "NfblEvent",
    "PoseEstimator",
    "PoseOptions",
    "PoseSample",
    "Prosody",
    "ProsodyOptions",
    "RateLimiter",
    "extract_cues",
]


@dataclass
class DescribeOptions:
    """When a window-level value is salient enough to be named by `Cues.describe`."""

    # |Median torso lean| above this = "leaning forward / back" (when no lean event was named). Default 0.25.
    lean: float = 0.25
    # Motion energy (body widths / s) above this = "high motion energy". Default 1.0 (walking ~1.5-2.5).
    high_motion_energy: float = 1.0
    # Motion energy below this = "very still". Default 0.05.
    low_motion_energy: float = 0.05
    # Wrist-speed peaks per second above this = "frequent hand gestures". Default 1.0.
    high_gesture_rate: float = 1.0
    # Arm spread (body widths) below this = "arms held close to the body"; above the next = "open, expansive arms".
    closed_openness: float = 1.1  # default 1.1
    open_openness: float = 2.8  # default 2.8
    # Shoulder height difference (body widths) above this = "uneven shoulders". Default 0.25.
    shoulder_asymmetry: float = 0.25
    # Person visible in less than this share of the window = "person mostly out of view". Default 0.5.
    min_visible_ratio: float = 0.5
    # F0 5-95 % range (st) above this = "raised pitch variability"; below the next = "flat pitch".
    high_f0_range_st: float = 12.0  # default 12 (acted neutral speech ~6-12 st)
    low_f0_range_st: float = 4.0  # default 4
    # |F0 slope| (st / s) above this = "rising / falling pitch". Default 3.0.
    f0_slope_st_s: float = 3.0
    # Loudness std over speech (dB) above this = "strong loudness variation". Default 6.5.
    high_energy_std_db: float = 6.5
    # Syllables per second of speech: above = "fast speaking rate", below = "slow". Defaults 5.5 / 2.5.
    fast_rate: float = 5.5
    slow_rate: float = 2.5
    # Longest pause (s) at least this = "long pauses". Default 1.0.
    long_pause_s: float = 1.0
    # Voiced share below this = "little or no speech" (then no other voice phrase). Default 0.05.
    min_voiced_ratio: float = 0.05
    # Local jitter / shimmer above these = "irregular voice quality". Defaults 0.04 / 0.16.
    high_jitter: float = 0.04
    high_shimmer: float = 0.16
    # At most this many time spans listed per event name. Default 3.
    max_spans: int = 3


@dataclass
class CueOptions:
    """Settings of the cue stage."""

    # Pose samples per second the pipeline runs (see `RateLimiter`); also the expected
    # sample count for `person_visible_ratio`. Default 10.
    pose_fps: float = 10.0
    # Pose estimator settings (model, input size, tracking).
    pose: PoseOptions = field(default_factory=PoseOptions)
    # Body rule thresholds.
    body: BodyOptions = field(default_factory=BodyOptions)
    # Prosody analysis settings.
    prosody: ProsodyOptions = field(default_factory=ProsodyOptions)
    # Which window-level values `describe()` names.
    describe: DescribeOptions = field(default_factory=DescribeOptions)
    # Decimal places of floats in `to_dict()`. Default 3.
    ndigits: int = 3


@dataclass(frozen=True)
class Cues:
    """All identity-free cues of the window [start, end) in seconds."""

    start: float
    end: float
    body: BodyCues | None = None
    prosody: Prosody | None = None
    options: DescribeOptions = field(default_factory=DescribeOptions, repr=False, compare=False)

    def to_dict(self, ndigits: int = 3) -> dict[str, Any]:
        return {
            "start": round(float(self.start), 3),
            "end": round(float(self.end), 3),
            "body": None if self.body is None else self.body.to_dict(ndigits),
            "prosody": None if self.prosody is None else self.prosody.to_dict(ndigits),
            "description": self.describe(),
        }

    def describe(self) -> list[str]:
        """Short phrases for the salient cues, body first, e.g. "hand to face 1.2-2.0 s"."""
        return self.describe_body() + self.describe_voice()

    def describe_body(self) -> list[str]:
        return _describe_body(self.body, self.options) if self.body is not None else []

    def describe_voice(self) -> list[str]:
        return _describe_prosody(self.prosody, self.options) if self.prosody is not None else []


def extract_cues(
    start: float,
    end: float,
    poses: Sequence[PoseSample] | None,
    audio: DeidAudio | None,
    options: CueOptions | None = None,
) -> Cues:
    """Cues of the window [start, end) from pose samples and de-identified audio.

    `poses` may hold samples outside the window (ignored); None = no video.
    `audio` may be longer than the window: only [start, end) is analysed.
    """
    o = options or CueOptions()
    if end <= start:
        raise ValueError(f"empty window: start={start} end={end}")
    body = None
    if poses is not None:
        body = extract_body_cues(poses, start, end, o.body, expected_fps=o.pose_fps)
    prosody = None
    if audio is not None:
        prosody = extract_prosody(audio, o.prosody, start=start, end=end)
    return Cues(start=start, end=end, body=body, prosody=prosody, options=o.describe)


# --- phrases ----------------------------------------------------------------------

_EVENT_PHRASES = {
    "hand_to_face": "hand to face",
    "hand_to_head": "hand to head",
    "hand_to_neck": "hand to neck",
    "hand_on_arm": "hand on arm",
    "hands_together": "hands together / rubbing",
    "gesturing": "gesturing",
    "arms_crossed": "arms crossed",
    "hunched": "hunched shoulders",
    "hands_shielding": "hands shielding the body",
    "head_down": "head down",
    "leaning_forward": "leaning forward",
    "leaning_back": "leaning back",
}


def _describe_body(b: BodyCues, d: DescribeOptions) -> list[str]:
    out: list[str] = []
    if b.person_visible_ratio < d.min_visible_ratio:
        out.append(f"person mostly out of view ({b.person_visible_ratio:.0%} of the window)")
    by_name: dict[str, list[NfblEvent]] = {}
    for e in b.events:
        by_name.setdefault(e.name, []).append(e)
    for name, events in by_name.items():
        spans = ", ".join(f"{e.start:.1f}-{e.end:.1f} s" for e in events[: d.max_spans])
        more = f" (+{len(events) - d.max_spans} more)" if len(events) > d.max_spans else ""
        out.append(f"{_EVENT_PHRASES.get(name, name.replace('_', ' '))} {spans}{more}")
    p = b.posture
    lean = p.get("lean_forward")
    if lean is not None and "leaning_forward" not in by_name and lean > d.lean:
        out.append("leaning forward")
    if lean is not None and "leaning_back" not in by_name and lean < -d.lean:
        out.append("leaning back")
    openness = p.get("openness")
    if openness is not None and "arms_crossed" not in by_name:
        if openness < d.closed_openness:
            out.append("arms held close to the body")
        elif openness > d.open_openness:
            out.append("open, expansive arms")
    if p.get("shoulder_asymmetry", 0.0) > d.shoulder_asymmetry:
        out.append("uneven shoulders")
    if b.motion_energy is not None:
        if b.motion_energy > d.high_motion_energy:
            out.append(f"high motion energy ({b.motion_energy:.1f})")
        elif b.motion_energy < d.low_motion_energy:
            out.append("very still")
    if b.gesture_rate is not None and b.gesture_rate > d.high_gesture_rate:
        out.append(f"frequent hand movements ({b.gesture_rate:.1f}/s)")
    return out


def _describe_prosody(p: Prosody, d: DescribeOptions) -> list[str]:
    if p.voiced_ratio < d.min_voiced_ratio:
        return ["little or no speech"]
    out: list[str] = []
    if p.f0_range_st is not None:
        if p.f0_range_st > d.high_f0_range_st:
            out.append(f"raised pitch variability (+{p.f0_range_st:.1f} st range)")
        elif p.f0_range_st < d.low_f0_range_st:
            out.append(f"flat pitch ({p.f0_range_st:.1f} st range)")
    if p.f0_slope_st_s is not None and abs(p.f0_slope_st_s) > d.f0_slope_st_s:
        out.append(f"{'rising' if p.f0_slope_st_s > 0 else 'falling'} pitch ({p.f0_slope_st_s:+.1f} st/s)")
    if p.energy_db_std is not None and p.energy_db_std > d.high_energy_std_db:
        out.append(f"strong loudness variation ({p.energy_db_std:.1f} dB)")
    if p.speaking_rate is not None:
        if p.speaking_rate > d.fast_rate:
            out.append(f"fast speaking rate ({p.speaking_rate:.1f} syll/s)")
        elif p.speaking_rate < d.slow_rate:
            out.append(f"slow speaking rate ({p.speaking_rate:.1f} syll/s)")
    if p.longest_pause_s is not None and p.longest_pause_s >= d.long_pause_s:
        out.append(f"long pauses (longest {p.longest_pause_s:.1f} s)")
    if (p.jitter_local or 0.0) > d.high_jitter or (p.shimmer_local or 0.0) > d.high_shimmer:
        out.append("irregular voice quality (high jitter/shimmer)")
    return out
