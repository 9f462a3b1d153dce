"""Body cue rules on landmark sequences: real mocap (Bandai-Namco BVH) and hand-built poses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edge_app.cues import CueOptions, extract_cues
from edge_app.cues.body import BodyOptions, extract_body_cues
from edge_app.cues.bvh import (
    bvh_pose_samples,
    forward_kinematics,
    load_bvh,
    project,
    to_mediapipe33,
)
from edge_app.cues.pose import PoseSample

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEEMO_DATA", ROOT / ".." / "shared" / "data"))
BVH_DIR = DATA / "bandai_motion" / "data"
needs_bvh = pytest.mark.skipif(not BVH_DIR.is_dir(), reason=f"Bandai-Namco BVH data not found at {BVH_DIR}")

ASPECT = 16 / 9


def _clip(name: str) -> list[PoseSample]:
    return bvh_pose_samples(BVH_DIR / f"dataset-1_{name}.bvh", fps=10.0)


def _cues(samples: list[PoseSample]):
    return extract_body_cues(samples, 0.0, samples[-1].t + 0.1)


# --- real mocap -------------------------------------------------------------------------


@needs_bvh
def test_bvh_forward_kinematics_gives_an_upright_facing_person():
    motion = load_bvh(BVH_DIR / "dataset-1_bow_normal_001.bvh")
    joints, tips = forward_kinematics(motion)
    assert joints.shape == (motion.n_frames, 22, 3)
    name = motion.skeleton.index
    assert joints[0, name("Head"), 1] > joints[0, name("Hips"), 1] > joints[0, name("Foot_L"), 1]
    lm = project(to_mediapipe33(motion, joints, tips))
    assert lm.shape == (motion.n_frames, 33, 4)
    # Facing the camera: the subject's left shoulder (11) is on the image's right.
    assert lm[0, 11, 0] > lm[0, 12, 0]
    assert lm[0, 0, 1] < lm[0, 11, 1] < lm[0, 23, 1] < lm[0, 27, 1]  # nose, shoulder, hip, ankle top-down
    assert np.all(lm[:, :, 3] == 1.0)


@needs_bvh
def test_motion_energy_running_exceeds_walking_and_bowing():
    energy = {name: _cues(_clip(f"{name}_normal_001")).motion_energy for name in ("dash", "run", "walk", "bow")}
    assert energy["dash"] > energy["walk"] > energy["bow"]
    assert energy["run"] > energy["bow"]
    assert energy["dash"] > 2 * energy["walk"]


@needs_bvh
def test_bow_produces_head_down_and_lean():
    samples = _clip("bow_normal_001")
    cues = _cues(samples)
    head_down = cues.events_named("head_down")
    assert head_down, [e.name for e in cues.events]
    assert sum(e.duration for e in head_down) >= 0.5
    # The bow is in the middle of the clip, not at the start.
    assert head_down[0].start > 0.5
    assert cues.events_named("leaning_forward")
    # Standing still before the bow: none of that.
    start = extract_body_cues(samples, 0.0, 1.0)
    assert not start.events_named("head_down")


@needs_bvh
def test_sad_walk_has_more_head_down_than_normal_walk():
    # Emotion styles of the same motion: sad / not-confident carry the head lower.
    def pitch(name: str) -> float:
        return _cues(_clip(name)).posture["head_height"]

    assert pitch("walk_not-confident_001") < pitch("walk_normal_001")
    assert pitch("dash_sad_001") < pitch("dash_normal_001")


@needs_bvh
def test_arm_swing_of_walking_is_not_gesturing_but_guiding_and_waving_are():
    # Before the gait and jitter discount, gesturing fired on 90 % of walking / running windows
    # (benchmarks/body_gestures.py): arm swing is not a gesture.
    for name in ("walk_normal_001", "walk_sad_001", "walk-left_angry_001", "run_sad_001", "dash_angry_001"):
        cues = _cues(_clip(name))
        assert not cues.events_named("gesturing"), (name, cues.events_named("gesturing"))
    for name in ("guide_normal_001", "guide_angry_001", "byebye_normal_001"):
        assert _cues(_clip(name)).events_named("gesturing"), name


# --- hand-built poses (rules mocap cannot show) ----------------------------------------

# A seated, front-facing upper body in "height units" (x measured like y); shoulder width 0.2.
_NEUTRAL = {
    0: (0.80, 0.34), 7: (0.84, 0.33), 8: (0.76, 0.33), 11: (0.90, 0.45), 12: (0.70, 0.45),
    13: (0.92, 0.65), 14: (0.68, 0.65), 15: (0.93, 0.83), 16: (0.67, 0.83),
    23: (0.87, 0.85), 24: (0.73, 0.85),
}  # fmt: skip
_HAND_OFFSETS = {17: (15, (0.01, 0.03)), 19: (15, (0.0, 0.035)), 21: (15, (-0.01, 0.02)),
                 18: (16, (-0.01, 0.03)), 20: (16, (0.0, 0.035)), 22: (16, (0.01, 0.02))}  # fmt: skip


def _pose(t: float, moves: dict[int, tuple[float, float]] | None = None, vis: dict[int, float] | None = None) -> PoseSample:
    pts = dict(_NEUTRAL)
    pts.update(moves or {})
    lm = np.zeros((33, 4), np.float32)
    lm[:, 3] = 0.0  # legs and face details unseen
    for i, (x, y) in pts.items():
        lm[i] = (x / ASPECT, y, 0.0, 1.0)
    for i, (wrist, (dx, dy)) in _HAND_OFFSETS.items():
        lm[i] = (lm[wrist, 0] + dx / ASPECT, lm[wrist, 1] + dy, 0.0, lm[wrist, 3])
    lm[[1, 2, 3, 4, 5, 6, 9, 10], 3] = 0.0
    for i, v in (vis or {}).items():
        lm[i, 3] = v
    return PoseSample(t=t, landmarks=lm, aspect=ASPECT)


def _sequence(span: tuple[float, float], moves, n: int = 40, vis=None) -> list[PoseSample]:
    """4 s at 10 fps; `moves` applied for t in [span)."""
    out = []
    for i in range(n):
        t = round(i * 0.1, 3)
        inside = span[0] - 1e-9 <= t < span[1] - 1e-9
        out.append(_pose(t, moves if inside else None, vis if inside else None))
    return out


def test_neutral_pose_has_no_events_and_no_motion():
    cues = extract_body_cues(_sequence((0, 0), {}), 0.0, 4.0)
    assert cues.events == ()
    assert cues.motion_energy == pytest.approx(0.0, abs=1e-6)
    assert cues.gesture_rate == 0.0
    assert cues.person_visible_ratio == 1.0
    assert 0.9 < cues.posture["openness"] < 1.6


def test_hand_to_face_event_with_times():
    seq = _sequence((1.2, 2.0), {16: (0.79, 0.37), 14: (0.72, 0.52)})
    cues = extract_body_cues(seq, 0.0, 4.0)
    events = cues.events_named("hand_to_face")
    assert len(events) == 1
    assert events[0].start == pytest.approx(1.2) and events[0].end == pytest.approx(2.0)
    assert events[0].category == "self_manipulation"
    assert not cues.events_named("hand_to_head") and not cues.events_named("hand_to_neck")


def test_hand_to_face_uses_masked_head_box_over_guessed_ears():
    # Ears guessed far off (as MediaPipe does on masked faces); the head box is right.
    seq = _sequence((1.0, 2.0), {16: (0.79, 0.37), 14: (0.72, 0.52), 7: (0.84, 0.55), 8: (0.76, 0.55)})
    box = ((0.75 / ASPECT), 0.26, (0.85 / ASPECT), 0.42)
    seq = [PoseSample(s.t, s.landmarks, s.aspect, head_box=box) for s in seq]
    assert len(extract_body_cues(seq, 0.0, 4.0).events_named("hand_to_face")) == 1


def test_short_touch_is_debounced_and_hidden_hand_is_ignored():
    brief = _sequence((1.0, 1.2), {16: (0.79, 0.37)})  # 0.2 s < min 0.3 s
    assert not extract_body_cues(brief, 0.0, 4.0).events_named("hand_to_face")
    hidden = _sequence((1.0, 2.0), {16: (0.79, 0.37)}, vis={16: 0.1, 18: 0.1, 20: 0.1, 22: 0.1})
    assert not extract_body_cues(hidden, 0.0, 4.0).events_named("hand_to_face")


def test_hand_to_head():
    seq = _sequence((0.5, 2.5), {16: (0.78, 0.22), 14: (0.66, 0.35)})
    cues = extract_body_cues(seq, 0.0, 4.0)
    assert cues.events_named("hand_to_head") and not cues.events_named("hand_to_face")


def test_arms_crossed():
    seq = _sequence((1.0, 3.5), {15: (0.72, 0.62), 16: (0.88, 0.62), 13: (0.91, 0.66), 14: (0.69, 0.66)})
    cues = extract_body_cues(seq, 0.0, 4.0)
    crossed = cues.events_named("arms_crossed")
    assert len(crossed) == 1 and crossed[0].category == "self_protection"
    assert crossed[0].start == pytest.approx(1.0) and crossed[0].end == pytest.approx(3.5)
    assert not cues.events_named("hands_together") and not cues.events_named("hand_on_arm")


def test_hunched_shoulders_raised_towards_ears():
    seq = _sequence((0.0, 4.0), {11: (0.89, 0.37), 12: (0.71, 0.37), 13: (0.91, 0.58), 14: (0.69, 0.58)})
    cues = extract_body_cues(seq, 0.0, 4.0)
    assert cues.events_named("hunched")
    assert not cues.events_named("head_down")


def test_hands_together():
    seq = _sequence((0.0, 2.0), {15: (0.82, 0.75), 16: (0.78, 0.75)})
    assert extract_body_cues(seq, 0.0, 4.0).events_named("hands_together")


def test_gesturing_raises_gesture_rate_and_motion_energy():
    moves = []
    for i in range(40):
        x = 0.67 + 0.08 * np.sin(2 * np.pi * 1.0 * i * 0.1)  # right hand waving at 1 Hz, chest height
        moves.append(_pose(i * 0.1, {16: (x, 0.6), 14: (0.68, 0.62)}))
    cues = extract_body_cues(moves, 0.0, 4.0)
    assert cues.events_named("gesturing")
    assert cues.gesture_rate >= 1.0
    assert cues.motion_energy > 0.05


def _jittered(seq: list[PoseSample], sd: float, seed: int = 0) -> list[PoseSample]:
    """Detector jitter: independent noise of `sd` (image heights) on every landmark, every frame."""
    rng = np.random.default_rng(seed)
    out = []
    for s in seq:
        lm = s.landmarks.copy()
        lm[:, 0] += rng.normal(0.0, sd / ASPECT, 33).astype(np.float32)
        lm[:, 1] += rng.normal(0.0, sd, 33).astype(np.float32)
        out.append(PoseSample(t=s.t, landmarks=lm, aspect=s.aspect))
    return out


def test_keypoint_jitter_alone_is_not_gesturing_but_a_wave_through_it_is():
    still = _sequence((0, 0), {})
    # 0.01 image heights = 0.05 shoulder widths: frame-to-frame wrist "speeds" near 1 width / s.
    cues = extract_body_cues(_jittered(still, 0.01), 0.0, 4.0)
    assert not cues.events_named("gesturing")
    assert cues.gesture_rate < 0.5
    wave = [_pose(i * 0.1, {16: (0.67 + 0.08 * np.sin(2 * np.pi * i * 0.1), 0.6), 14: (0.68, 0.62)}) for i in range(40)]
    assert extract_body_cues(_jittered(wave, 0.01), 0.0, 4.0).events_named("gesturing")


def test_one_reach_to_the_face_is_self_touch_not_gesturing():
    cues = extract_body_cues(_sequence((1.2, 2.0), {16: (0.79, 0.37), 14: (0.72, 0.52)}), 0.0, 4.0)
    assert [e.name for e in cues.events] == ["hand_to_face"]


def test_person_visible_ratio_counts_missing_samples():
    seq = _sequence((0, 0), {})[:20] + [PoseSample(t=2.0 + 0.1 * i) for i in range(10)]
    assert extract_body_cues(seq, 0.0, 4.0).person_visible_ratio == pytest.approx(20 / 30)
    assert extract_body_cues(seq[:20], 0.0, 4.0, expected_fps=10).person_visible_ratio == pytest.approx(0.5)
    empty = extract_body_cues([], 0.0, 4.0)
    assert empty.person_visible_ratio == 0.0 and empty.events == ()


def test_rejects_non_pose_samples():
    with pytest.raises(TypeError):
        extract_body_cues([np.zeros((33, 4))], 0.0, 1.0)  # type: ignore[list-item]


def test_cues_describe_and_json():
    seq = _sequence((1.2, 2.0), {16: (0.79, 0.37), 14: (0.72, 0.52)})
    cues = extract_cues(0.0, 4.0, seq, None, CueOptions())
    phrases = cues.describe()
    assert "hand to face 1.2-2.0 s" in phrases
    data = cues.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["prosody"] is None and data["body"]["events"][0]["name"] == "hand_to_face"
    assert data["description"] == phrases


def test_body_options_change_thresholds():
    seq = _sequence((1.0, 1.2), {16: (0.79, 0.37)})
    assert extract_body_cues(seq, 0.0, 4.0, BodyOptions(min_event_s=0.2)).events_named("hand_to_face")
