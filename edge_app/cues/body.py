"""Non-facial body language (NFBL), posture and motion cues from pose samples.

Rules follow the three NFBL categories of DEEMO-NFBL:
  self_manipulation  hand to face / head / neck, hand on arm, hands together (rubbing)
  hand_activity      gesturing: hands moving a lot in front of the body
  self_protection    arms crossed, hunched torso, hands shielding the body
plus posture events (head down, leaning forward / back).

All distances are measured in "body widths" (the window's median shoulder
width, or half the torso length when the person is side-on), so the rules do
not depend on how far the person stands from the camera. Landmarks whose
visibility is below `min_visibility` are ignored. A rule must hold for at least
`min_event_s` (gaps up to `max_gap_s` are bridged) to become an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import find_peaks

from edge_app.cues.pose import PoseSample

__all__ = ["CATEGORIES", "BodyCues", "BodyOptions", "NfblEvent", "extract_body_cues"]

CATEGORIES = ("self_manipulation", "hand_activity", "self_protection", "posture")

# MediaPipe indices
NOSE, L_EAR, R_EAR = 0, 7, 8
L_SH, R_SH, L_EL, R_EL, L_WR, R_WR = 11, 12, 13, 14, 15, 16
L_HAND = (15, 17, 19, 21)  # wrist, pinky, index, thumb
R_HAND = (16, 18, 20, 22)
L_HIP, R_HIP = 23, 24
# Landmarks whose speed makes up motion energy: head, arms, torso (legs often off-screen).
MOTION_SET = (0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


@dataclass
class BodyOptions:
    """Thresholds of the body rules. Distances in body widths (shoulder width)."""

    # Landmarks below this visibility count as missing. Default 0.5.
    min_visibility: float = 0.5
    # Minimum duration of an event, seconds. Default 0.3.
    min_event_s: float = 0.3
    # Gaps up to this long inside an event are bridged (one missed frame at 10 fps). Default 0.25.
    max_gap_s: float = 0.25
    # Samples further apart than this are not used for speeds. Default 0.5 s.
    max_speed_gap_s: float = 0.5
    # Hand point within this distance of the face centre = hand to face. Default 0.55.
    face_radius: float = 0.55
    # Hand point within this distance of the neck point = hand to neck. Default 0.35.
    neck_radius: float = 0.35
    # Hand point this far above the head centre (and within head_radius sideways) = hand to head. Default 0.25.
    head_above: float = 0.25
    # Sideways reach for hand to head. Default 0.8.
    head_radius: float = 0.8
    # Wrists closer than this = hands together / rubbing. Default 0.35.
    hands_together: float = 0.35
    # Wrist past the body midline by this much (towards the other side) = crossed. Default 0.1.
    cross_margin: float = 0.1
    # Hand within this of the other arm's segments = hand on arm. Default 0.35.
    arm_touch: float = 0.35
    # Ear-to-shoulder vertical gap below this (shoulders raised, head sunk) = hunched. Default 0.3.
    hunch_neck_gap: float = 0.3
    # Nose this far below the ear line = head pitched down. Default 0.3.
    head_down_pitch: float = 0.3
    # Nose this close above the shoulder line (or below it) = head down. Default 0.25.
    head_down_height: float = 0.25
    # Torso lean (sine-like, z-based): above +x forward, below -x back. Default 0.25.
    lean_threshold: float = 0.25
    # Wrist (relative to the shoulders, smoothed over 3 samples) faster than this, in body widths / s,
    # above the hips = moving hand. Default 2.0.
    gesture_speed: float = 2.0
    # ... or faster than this many times the window's own landmark jitter, if that is higher (a small,
    # far-away person's keypoints shake by more than a hand moves). Default 3.0.
    gesture_noise_factor: float = 3.0
    # Minimum time between two counted wrist-speed peaks, s. Default 0.25.
    gesture_min_interval_s: float = 0.25
    # Hips moving faster than this (body widths / s) = walking or running. Default 1.0.
    walking_speed: float = 1.0
    # While walking, a moving hand counts as gesturing only when raised to within this share of
    # the torso below the shoulders (arm swing hangs lower). Default 0.3.
    gait_hand_height: float = 0.3
    # Hand in front of the shoulders by this much (MediaPipe z) inside the torso box = shielding. Default 0.3.
    shield_depth: float = 0.3
    # A shielding hand moves slower than this, body widths / s. Default 0.75.
    shield_still_speed: float = 0.75


@dataclass(frozen=True)
class NfblEvent:
    """One body-language event: `name` (e.g. "hand_to_face"), `category`, time span, confidence 0-1."""

    name: str
    category: str
    start: float
    end: float
    confidence: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "confidence": round(self.confidence, 2),
        }


@dataclass(frozen=True)
class BodyCues:
    """Body cues of one window.

    posture: window medians (keys: lean_forward, openness, head_height,
    head_pitch, neck_gap, shoulder_asymmetry; missing when not measurable).
    motion_energy: mean landmark speed in body widths per second.
    gesture_rate: wrist-speed peaks per second (both hands) above the gesture threshold, arm
    swing while walking and keypoint jitter discounted (see `_hand_speeds`).
    person_visible_ratio: share of the window's pose samples that found a person.
    """

    events: tuple[NfblEvent, ...] = ()
    posture: dict[str, float] = field(default_factory=dict)
    motion_energy: float | None = None
    gesture_rate: float | None = None
    person_visible_ratio: float = 0.0

    def events_named(self, name: str) -> tuple[NfblEvent, ...]:
        return tuple(e for e in self.events if e.name == name)

    def to_dict(self, ndigits: int = 3) -> dict[str, Any]:
        return {
            "events": [e.to_dict() for e in self.events],
            "posture": {k: round(v, ndigits) for k, v in self.posture.items()},
            "motion_energy": _round(self.motion_energy, ndigits),
            "gesture_rate": _round(self.gesture_rate, ndigits),
            "person_visible_ratio": round(self.person_visible_ratio, ndigits),
        }


# Each rule: name -> category. Order = order of events with equal start.
RULES: dict[str, str] = {
    "hand_to_face": "self_manipulation",
    "hand_to_head": "self_manipulation",
    "hand_to_neck": "self_manipulation",
    "hand_on_arm": "self_manipulation",
    "hands_together": "self_manipulation",
    "gesturing": "hand_activity",
    "arms_crossed": "self_protection",
    "hunched": "self_protection",
    "hands_shielding": "self_protection",
    "head_down": "posture",
    "leaning_forward": "posture",
    "leaning_back": "posture",
}


def extract_body_cues(
    samples: Sequence[PoseSample],
    start: float,
    end: float,
    options: BodyOptions | None = None,
    expected_fps: float | None = None,
) -> BodyCues:
    """Body cues of the window [start, end) from pose samples (any order, others ignored).

    `expected_fps`: the pose sampling rate; when given, samples the caller did not
    record (nobody found) still count as "no person" in `person_visible_ratio`.
    """
    o = options or BodyOptions()
    for s in samples:
        if not isinstance(s, PoseSample):
            raise TypeError(f"extract_body_cues takes PoseSample records, got {type(s).__name__}")
    window = sorted((s for s in samples if start <= s.t < end), key=lambda s: s.t)
    n_expected = round((end - start) * expected_fps) if expected_fps else 0
    present = [s for s in window if s.landmarks is not None]
    denominator = max(len(window), n_expected)
    visible_ratio = min(1.0, len(present) / denominator) if denominator else 0.0
    if not present:
        return BodyCues(person_visible_ratio=visible_ratio)

    t = np.array([s.t for s in present])
    pts, z, vis = _to_body_units(present, o.min_visibility)
    head_box = _head_box_centres(present)
    scale = _body_scale(pts)
    if scale is None:  # shoulders never seen: no reference size, no rules
        return BodyCues(person_visible_ratio=visible_ratio)
    pts, z = pts / scale, z / scale
    geo = _Geometry(pts, z, vis, head_box / scale)

    hand_speeds = _hand_speeds(geo, t, o)
    flags, conf = _frame_rules(geo, t, o, hand_speeds)
    period = _frame_period(t)
    events: list[NfblEvent] = []
    for name, on in flags.items():
        for i0, i1 in _debounce(t, on, period, o):
            events.append(
                NfblEvent(
                    name=name,
                    category=RULES[name],
                    start=float(t[i0]),
                    end=float(min(end, t[i1] + period)),
                    confidence=float(np.clip(np.nanmean(conf[name][i0 : i1 + 1]), 0.0, 1.0)),
                )
            )
    events.sort(key=lambda e: (e.start, list(RULES).index(e.name)))
    return BodyCues(
        events=tuple(events),
        posture=_posture(geo),
        motion_energy=_motion_energy(pts, t, o),
        gesture_rate=_gesture_rate(hand_speeds, t, o, end - start),
        person_visible_ratio=visible_ratio,
    )


# --- geometry -------------------------------------------------------------------


def _to_body_units(samples: Sequence[PoseSample], min_vis: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,33,2) isotropic image coords (x scaled by aspect), (N,33) z, (N,33) visibility; hidden = NaN."""
    lm = np.stack([s.landmarks for s in samples]).astype(np.float64)  # type: ignore[misc]
    aspect = np.array([s.aspect for s in samples])[:, None]
    vis = lm[:, :, 3]
    hidden = vis < min_vis
    # x is normalised by width, y by height: multiply x (and z, MediaPipe's z shares x's scale) by w/h.
    pts = np.stack([lm[:, :, 0] * aspect, lm[:, :, 1]], axis=-1)
    z = lm[:, :, 2] * aspect
    pts[hidden] = np.nan
    z[hidden] = np.nan
    return pts, z, vis


def _head_box_centres(samples: Sequence[PoseSample]) -> np.ndarray:
    """(N,2) centres of the masked head boxes in the same units as `_to_body_units`; NaN if none."""
    out = np.full((len(samples), 2), np.nan)
    for i, s in enumerate(samples):
        if s.head_box is not None:
            x0, y0, x1, y1 = s.head_box
            out[i] = (0.5 * (x0 + x1) * s.aspect, 0.5 * (y0 + y1))
    return out


def _body_scale(pts: np.ndarray) -> float | None:
    """Median body width: shoulder width, or half the torso length if larger (side-on person)."""
    sw = np.linalg.norm(pts[:, L_SH] - pts[:, R_SH], axis=1)
    torso = np.linalg.norm(_mid(pts, L_SH, R_SH) - _mid(pts, L_HIP, R_HIP), axis=1)
    per_frame = np.where(np.isnan(torso), sw, np.fmax(sw, 0.5 * torso))
    if np.all(np.isnan(per_frame)):
        return None
    value = float(np.nanmedian(per_frame))
    return value if value > 1e-6 else None


def _mid(a: np.ndarray, i: int, j: int) -> np.ndarray:
    return 0.5 * (a[:, i] + a[:, j])


class _Geometry:
    """Per-frame reference points in body units, computed once per window."""

    def __init__(self, pts: np.ndarray, z: np.ndarray, vis: np.ndarray, head_box: np.ndarray) -> None:
        self.pts, self.z, self.vis = pts, z, vis
        self.sh_mid = _mid(pts, L_SH, R_SH)
        self.hip_mid = _mid(pts, L_HIP, R_HIP)
        # Lateral axis from the subject's right shoulder to the left one, and the body's "down".
        lateral = pts[:, L_SH] - pts[:, R_SH]
        self.u = lateral / np.maximum(np.linalg.norm(lateral, axis=1, keepdims=True), 1e-9)
        down = np.array([0.0, 1.0]) - np.sum(self.u * np.array([0.0, 1.0]), axis=1, keepdims=True) * self.u
        self.v = down / np.maximum(np.linalg.norm(down, axis=1, keepdims=True), 1e-9)
        ear_mid = _mid(pts, L_EAR, R_EAR)
        # Head centre: the masked head box when known (MediaPipe's ear / nose points are
        # guesses once the face is masked), else the ears (one is enough when the head
        # is turned), else an average neck above the shoulders.
        one_ear = np.where(np.isnan(pts[:, L_EAR]), pts[:, R_EAR], pts[:, L_EAR])
        ears = np.where(np.isnan(ear_mid), one_ear, ear_mid)
        fallback = self.sh_mid - 0.65 * self.v
        head = np.where(np.isnan(head_box), ears, head_box)
        self.head = np.where(np.isnan(head), fallback, head)
        self.ears = ears
        # Face centre slightly below the ear line; neck a third of the way up from the shoulders.
        self.face = self.head + 0.15 * self.v
        self.neck = self.sh_mid + 0.35 * (self.head - self.sh_mid)
        torso_len = np.linalg.norm(self.hip_mid - self.sh_mid, axis=1)
        self.torso_len = np.where(np.isnan(torso_len), 2.0, torso_len)  # hips off-screen: average torso
        # Head measures (body widths): ears above shoulders, nose below ears, nose above shoulders.
        _, ear_down = self.body_coords(np.where(np.isnan(head_box), ears, head_box))
        _, nose_down = self.body_coords(pts[:, NOSE])
        self.neck_gap = -ear_down
        self.head_pitch = nose_down - ear_down
        self.head_height = -nose_down
        # Lean: shoulders nearer the camera than the hips (MediaPipe z) = forward, as a sine of the torso angle.
        self.sh_z = 0.5 * (z[:, L_SH] + z[:, R_SH])
        hip_z = 0.5 * (z[:, L_HIP] + z[:, R_HIP])
        self.lean = (hip_z - self.sh_z) / np.maximum(self.torso_len, 1e-6)

    def body_coords(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lateral, down) coordinates of (N,2) points relative to the shoulder centre."""
        d = p - self.sh_mid
        return np.sum(d * self.u, axis=1), np.sum(d * self.v, axis=1)

    def hand_min_dist(self, hand: tuple[int, ...], target: np.ndarray) -> np.ndarray:
        """Distance from the nearest visible point of a hand to (N,2) targets."""
        d = np.linalg.norm(self.pts[:, list(hand)] - target[:, None, :], axis=2)
        return _nanmin(d, axis=1)

    def hand_visibility(self, hand: tuple[int, ...]) -> np.ndarray:
        return self.vis[:, list(hand)].max(axis=1)


def _nanmin(a: np.ndarray, axis: int) -> np.ndarray:
    # np.nanmin warns on all-NaN rows; those rows simply stay NaN (= rule off).
    filled = np.where(np.isnan(a), np.inf, a)
    out = filled.min(axis=axis)
    return np.where(np.isinf(out), np.nan, out)


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of (N,2) points to segments a-b."""
    ab = b - a
    denom = np.maximum(np.sum(ab * ab, axis=1), 1e-12)
    s = np.clip(np.sum((p - a) * ab, axis=1) / denom, 0.0, 1.0)
    return np.linalg.norm(p - (a + s[:, None] * ab), axis=1)


def _lt(a: np.ndarray, thr: float) -> np.ndarray:
    """a < thr with NaN = False (missing landmark never fires a rule)."""
    return np.nan_to_num(a, nan=np.inf) < thr


def _gt(a: np.ndarray, thr: float) -> np.ndarray:
    return np.nan_to_num(a, nan=-np.inf) > thr


# --- per-frame rules ---------------------------------------------------------------


def _frame_rules(
    g: _Geometry, t: np.ndarray, o: BodyOptions, hand_speeds: list[np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Boolean per-frame flags and per-frame confidences for every rule (`hand_speeds`: _hand_speeds)."""
    p, vis = g.pts, g.vis
    flags: dict[str, np.ndarray] = {}
    conf: dict[str, np.ndarray] = {}
    sh_vis = vis[:, [L_SH, R_SH]].min(axis=1)

    # Self-manipulation: where is each hand relative to the head, neck and the other arm?
    face_any = np.zeros(len(t), bool)
    head_any = np.zeros(len(t), bool)
    neck_any = np.zeros(len(t), bool)
    on_arm_any = np.zeros(len(t), bool)
    for hand, other_sh, other_el, other_wr in ((L_HAND, R_SH, R_EL, R_WR), (R_HAND, L_SH, L_EL, L_WR)):
        d_face = g.hand_min_dist(hand, g.face)
        lat, down = g.body_coords(_nanmin_point(p[:, list(hand)], g.head))
        head_lat, head_down = g.body_coords(g.head)
        above = head_down - down  # >0: hand above the head centre
        at_head = _gt(above, o.head_above) & _lt(np.abs(lat - head_lat), o.head_radius)
        at_face = _lt(d_face, o.face_radius) & ~at_head
        at_neck = _lt(g.hand_min_dist(hand, g.neck), o.neck_radius) & ~at_face & ~at_head
        wrist = p[:, hand[0]]
        d_arm = np.fmin(_seg_dist(wrist, p[:, other_sh], p[:, other_el]), _seg_dist(wrist, p[:, other_el], p[:, other_wr]))
        on_arm = _lt(d_arm, o.arm_touch) & _gt(np.linalg.norm(wrist - p[:, other_wr], axis=1), o.hands_together)
        face_any |= at_face
        head_any |= at_head
        neck_any |= at_neck
        on_arm_any |= on_arm
    hands_vis = np.fmax(g.hand_visibility(L_HAND), g.hand_visibility(R_HAND))
    wrist_gap = np.linalg.norm(p[:, L_WR] - p[:, R_WR], axis=1)
    _, l_down = g.body_coords(p[:, L_WR])
    _, r_down = g.body_coords(p[:, R_WR])
    together = _lt(wrist_gap, o.hands_together) & _gt(np.fmax(l_down, r_down), 0.2) & ~face_any

    # Self-protection: arms crossed, hunched, hands shielding the torso.
    l_lat, _ = g.body_coords(p[:, L_WR])
    r_lat, _ = g.body_coords(p[:, R_WR])
    torso_len = g.torso_len

    def in_torso_height(down: np.ndarray) -> np.ndarray:
        # between just below the shoulders and just below the hips
        return _gt(down, 0.2) & _lt(down, torso_len + 0.3)

    crossed = (
        _lt(l_lat, -o.cross_margin) & _gt(r_lat, o.cross_margin) & in_torso_height(l_down) & in_torso_height(r_down)
    )
    on_arm_any &= ~crossed
    # Head down: nose clearly below the ears, or low over the shoulders while tilted down.
    # Raised shoulders alone (nose level with the ears) is hunching, not head down.
    tilted = _gt(g.head_pitch, 0.35 * o.head_down_pitch)
    head_is_down = _gt(g.head_pitch, o.head_down_pitch) | (_lt(g.head_height, o.head_down_height) & tilted)
    hunched = _lt(g.neck_gap, o.hunch_neck_gap) & ~head_is_down
    sh_z = g.sh_z
    # Hand activity: wrists moving fast (relative to the shoulders), see _hand_speeds; a hand
    # reaching the face, head or neck is self-manipulation, not a gesture. Speed peaks are brief
    # even in steady gesturing: spread each fast frame over its neighbours. One quick movement (a
    # hand going once to a new place) is not gesturing: need two speed peaks, or 0.3 s of fast
    # motion, within 0.6 s.
    fast = np.zeros(len(t), bool)
    peaks = np.zeros(len(t), bool)
    for excess in hand_speeds:
        fast |= _gt(excess, 0.0)
        peaks[_speed_peaks(excess, t, o)] = True
    fast &= ~(face_any | head_any | neck_any)
    sustained = (_window_count(t, fast, 0.6) >= 3) | (_window_count(t, peaks & fast, 0.6) >= 2)
    moving = _dilate(t, fast, 0.5 * o.gesture_min_interval_s + 1e-6) & sustained
    # Shielding: a hand held still in front of the torso (a swinging arm passes through too).
    shield = np.zeros(len(t), bool)
    for wr, lat_w, down_w in ((L_WR, l_lat, l_down), (R_WR, r_lat, r_down)):
        in_front = _gt(sh_z - g.z[:, wr], o.shield_depth)
        held = _lt(_speed(p[:, wr] - g.sh_mid, t, o.max_speed_gap_s), o.shield_still_speed)
        shield |= in_front & held & _lt(np.abs(lat_w), 0.6) & in_torso_height(down_w)
    shield &= ~crossed & ~together

    lean = g.lean

    face_conf = np.nanmax(vis[:, [L_EAR, R_EAR]], axis=1) * hands_vis
    flags.update(
        hand_to_face=face_any, hand_to_head=head_any, hand_to_neck=neck_any, hand_on_arm=on_arm_any,
        hands_together=together, gesturing=moving, arms_crossed=crossed, hunched=hunched,
        hands_shielding=shield, head_down=head_is_down,
        leaning_forward=_gt(lean, o.lean_threshold), leaning_back=_lt(lean, -o.lean_threshold),
    )  # fmt: skip
    wrists_vis = np.minimum(vis[:, L_WR], vis[:, R_WR])
    conf.update(
        hand_to_face=face_conf, hand_to_head=face_conf, hand_to_neck=hands_vis * sh_vis,
        hand_on_arm=hands_vis * sh_vis, hands_together=wrists_vis, gesturing=hands_vis,
        arms_crossed=wrists_vis * sh_vis, hunched=np.nanmax(vis[:, [L_EAR, R_EAR]], axis=1) * sh_vis,
        hands_shielding=hands_vis * sh_vis, head_down=vis[:, NOSE] * sh_vis,
        leaning_forward=np.minimum(sh_vis, vis[:, [L_HIP, R_HIP]].min(axis=1)),
        leaning_back=np.minimum(sh_vis, vis[:, [L_HIP, R_HIP]].min(axis=1)),
    )  # fmt: skip
    return flags, conf


def _dilate(t: np.ndarray, on: np.ndarray, radius: float) -> np.ndarray:
    """True wherever a True frame lies within `radius` seconds."""
    out = on.copy()
    for i in np.flatnonzero(on):
        out |= np.abs(t - t[i]) <= radius
    return out


def _window_count(t: np.ndarray, on: np.ndarray, radius: float) -> np.ndarray:
    """How many True frames lie within `radius` seconds of each frame."""
    hits = t[on]
    return np.array([int(np.sum(np.abs(hits - ti) <= radius)) for ti in t])


def _nanmin_point(hand_pts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N,2): the visible hand point nearest to the target (NaN when none)."""
    d = np.linalg.norm(hand_pts - target[:, None, :], axis=2)
    d = np.where(np.isnan(d), np.inf, d)
    best = np.argmin(d, axis=1)
    out = hand_pts[np.arange(len(best)), best]
    out[np.isinf(d.min(axis=1))] = np.nan
    return out


def _speed(p: np.ndarray, t: np.ndarray, max_gap: float) -> np.ndarray:
    """Per-frame speed of (N,2) points (backward difference; first frame uses the forward one)."""
    if len(t) < 2:
        return np.full(len(t), np.nan)
    dt = np.diff(t)
    v = np.linalg.norm(np.diff(p, axis=0), axis=1) / np.maximum(dt, 1e-6)
    v[dt > max_gap] = np.nan
    return np.concatenate([v[:1], v])


def _frame_period(t: np.ndarray) -> float:
    return float(np.median(np.diff(t))) if len(t) > 1 else 0.1


def _debounce(t: np.ndarray, on: np.ndarray, period: float, o: BodyOptions) -> list[tuple[int, int]]:
    """Runs of True (first, last index) after bridging short gaps and dropping short runs."""
    runs: list[list[int]] = []
    for i in np.flatnonzero(on):
        if runs and t[i] - t[runs[-1][1]] - period <= o.max_gap_s + 1e-6:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    # Duration counts the last frame's own period: 3 frames at 10 fps last 0.3 s.
    return [(a, b) for a, b in runs if t[b] - t[a] + period >= o.min_event_s - 1e-6]


# --- window summaries ---------------------------------------------------------------


def _posture(g: _Geometry) -> dict[str, float]:
    """Window medians of posture measures; a key is absent when never measurable."""
    p = g.pts
    arm_pts = p[:, [L_EL, R_EL, L_WR, R_WR]]
    lat = np.sum((arm_pts - g.sh_mid[:, None, :]) * g.u[:, None, :], axis=2)
    with np.errstate(invalid="ignore"):
        openness = (np.nanmax(np.where(np.isnan(lat), -np.inf, lat), axis=1)
                    - np.nanmin(np.where(np.isnan(lat), np.inf, lat), axis=1))  # fmt: skip
    openness = np.where(np.isfinite(openness), openness, np.nan)
    asym = np.abs(np.sum((p[:, L_SH] - p[:, R_SH]) * np.array([0.0, 1.0]), axis=1))
    values = {
        "lean_forward": g.lean,
        "openness": openness,
        "head_height": g.head_height,
        "head_pitch": g.head_pitch,
        "neck_gap": g.neck_gap,
        "shoulder_asymmetry": asym,
    }
    return {k: float(np.nanmedian(v)) for k, v in values.items() if np.any(np.isfinite(v))}


def _motion_energy(pts: np.ndarray, t: np.ndarray, o: BodyOptions) -> float | None:
    """Mean speed of the visible body landmarks, body widths per second."""
    if len(t) < 2:
        return None
    dt = np.diff(t)
    keep = (dt > 0) & (dt <= o.max_speed_gap_s)
    sub = pts[:, list(MOTION_SET)]
    v = np.linalg.norm(np.diff(sub, axis=0), axis=2) / np.maximum(dt, 1e-6)[:, None]
    v = v[keep]
    return float(np.nanmean(v)) if np.any(np.isfinite(v)) else None


def _gesture_rate(hand_speeds: list[np.ndarray], t: np.ndarray, o: BodyOptions, duration: float) -> float | None:
    """Wrist-speed peaks above the gesture threshold (see _hand_speeds), per second."""
    if len(t) < 3 or duration <= 0:
        return None
    peaks = 0
    seen = False
    for excess in hand_speeds:
        if np.any(np.isfinite(excess)):
            seen = True
            peaks += len(_speed_peaks(excess, t, o))
    return peaks / duration if seen else None


def _speed_peaks(excess: np.ndarray, t: np.ndarray, o: BodyOptions) -> np.ndarray:
    """Indices of the speed peaks above the gesture threshold, at least `gesture_min_interval_s` apart."""
    distance = max(1, int(round(o.gesture_min_interval_s / max(_frame_period(t), 1e-6))))
    # Pad so a peak on the first / last sample still counts.
    padded = np.concatenate([[-1.0], np.nan_to_num(excess, nan=-1.0), [-1.0]])
    found, _ = find_peaks(padded, height=1e-9, distance=distance)
    return found - 1


def _hand_speeds(g: _Geometry, t: np.ndarray, o: BodyOptions) -> list[np.ndarray]:
    """Per wrist: how far its smoothed speed (relative to the shoulders) exceeds the gesture
    threshold, per frame (> 0 = a gesturing frame; NaN = wrist unseen).

    Three things move a wrist without any gesture, measured on the Bandai-Namco motion capture
    (benchmarks/body_gestures.py): keypoint jitter (hence the 3-sample smoothing and a threshold
    that rises with the window's own jitter), arm swing while walking or running (hence the hand
    must be raised while the hips travel), and hands hanging below the hips."""
    threshold = max(o.gesture_speed, o.gesture_noise_factor * _jitter_speed(g.pts, t, o))
    walking = _walking(g, t, o)
    out = []
    for wr in (L_WR, R_WR):
        speed = _smooth_speed(g.pts[:, wr] - g.sh_mid, t, o.max_speed_gap_s)
        _, down = g.body_coords(g.pts[:, wr])
        height = down / g.torso_len  # 0 at the shoulders, 1 at the hips
        counted = _lt(height, 1.0) & ~(walking & ~_lt(height, o.gait_hand_height))
        out.append(np.where(counted | np.isnan(speed), speed - threshold, -threshold))
    return out


def _smoothed(p: np.ndarray, t: np.ndarray, max_gap: float) -> np.ndarray:
    """(N,2) points averaged with their two neighbours in time (not across a gap longer than
    `max_gap`, nor over missing points); a missing point stays missing."""
    near = _neighbours(p, t, max_gap)
    total = np.nansum(near, axis=0)
    count = np.sum(~np.isnan(near), axis=0)
    return np.where(np.isnan(p), np.nan, total / np.maximum(count, 1))


def _neighbours(p: np.ndarray, t: np.ndarray, max_gap: float) -> np.ndarray:
    """(3,N,2): previous, same and next point; NaN where there is none within `max_gap`."""
    pad_p = np.concatenate([np.full((1, 2), np.nan), p, np.full((1, 2), np.nan)])
    pad_t = np.concatenate([[-np.inf], t, [np.inf]])
    out = np.stack([pad_p[:-2], p, pad_p[2:]])
    gap = np.abs(np.stack([pad_t[:-2], t, pad_t[2:]]) - t)
    out[gap > max_gap] = np.nan
    return out


def _smooth_speed(p: np.ndarray, t: np.ndarray, max_gap: float) -> np.ndarray:
    """Speed of (N,2) points from the smoothed track, centred difference (one-sided at the ends
    or next to a gap); NaN where the point is missing or has no neighbour."""
    s = _smoothed(p, t, max_gap)
    prev, _, nxt = _neighbours(s, t, max_gap)
    pad_t = np.concatenate([[np.nan], t, [np.nan]])
    t_prev = np.where(np.isnan(prev[:, 0]), t, pad_t[:-2])
    t_next = np.where(np.isnan(nxt[:, 0]), t, pad_t[2:])
    prev = np.where(np.isnan(prev), s, prev)
    nxt = np.where(np.isnan(nxt), s, nxt)
    dt = t_next - t_prev
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.linalg.norm(nxt - prev, axis=1) / dt
    return np.where(dt > 0, v, np.nan)


def _jitter_speed(pts: np.ndarray, t: np.ndarray, o: BodyOptions) -> float:
    """Speed that keypoint jitter alone gives `_smooth_speed`, body widths / s: the median
    distance of the shoulders and hips from their smoothed track, over twice the frame period
    (for white jitter of s.d. sigma that distance is about 0.8 sigma, and the smoothed centred
    speed's noise about 0.8 sigma / (2 period))."""
    torso = [L_SH, R_SH, L_HIP, R_HIP]
    resid = [np.linalg.norm(pts[:, j] - _smoothed(pts[:, j], t, o.max_speed_gap_s), axis=1) for j in torso]
    resid = np.concatenate(resid)
    if len(t) < 3 or not np.any(np.isfinite(resid)):
        return 0.0
    return float(np.nanmedian(resid)) / (2 * _frame_period(t))


def _walking(g: _Geometry, t: np.ndarray, o: BodyOptions) -> np.ndarray:
    """Frames where the hips travel faster than `walking_speed` for most of the surrounding second."""
    fast = _gt(_smooth_speed(g.hip_mid, t, o.max_speed_gap_s), o.walking_speed)
    return _window_count(t, fast, 0.5) >= 3


def _round(v: float | None, ndigits: int) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), ndigits)
