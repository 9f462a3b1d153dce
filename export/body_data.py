"""Bandai-Namco BVH -> 3D joints -> random virtual cameras -> MediaPipe-33 2D keypoints.

Split by content/take, never by frames: TEST = contents bye, run, walk-left plus
walk take 002 (an unseen take of a seen content); VAL = content guide (reported, INT8
calibration; the full build trains on it too, TRAIN_SPLITS); TRAIN = everything else (the
neutral-only contents as style targets only, see `load_clips`).
Keypoints are then turned into features by `edge_app.encoders.features`, the same
function the runtime applies to live `PoseSample`s.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge_app.cues.bvh import Camera, load_bvh, project, to_mediapipe33
from edge_app.encoders.features import BODY_FPS, BODY_JOINTS, body_features_from_landmarks

EMOTIONS4 = ("neutral", "happy", "sad", "angry")
TEST_CONTENTS = ("bye", "run", "walk-left")
TEST_TAKES = (("walk", "002"),)
VAL_CONTENTS = ("guide",)
# training and evaluation window: the length `deemo-edge file` and `live` analyse by default
# (analysis.window_s). 3 s until 2026-12-01; leave-one-content-out validation could not tell
# them apart (window acc, seeds 0 / 1: trained on 4 s 0.616 / 0.565, the 3 s model scored on
# 4 s windows 0.596 / 0.574; benchmarks/body_loco.py train4s, views48_at4s), so the length
# the product uses won
WINDOW_S = 4.0
# random-camera windows drawn per training take: 48 views instead of 24 took
# leave-one-content-out window accuracy 0.531 -> 0.589 (seed 1: 0.554 -> 0.558, so a small
# gain at best; twice the epochs instead: 0.536), benchmarks/body_loco.py
TRAIN_WINDOWS_PER_CLIP = 48
# the encoder's residual conv blocks, one per dilation (kernel 5): with a fourth block at
# dilation 8 the receptive field is about 6 s instead of 3 s, so a unit sees a whole 4 s window.
# Leave-one-content-out window accuracy, seeds 0 / 1 (the decision) / 2: 0.629 / 0.632 / 0.605
# vs 0.616 / 0.565 / 0.562 with (1, 2, 4) (benchmarks/body_loco.py dil8, train4s); 96 channels
# instead of 64: 0.589 (seed 0). On the test contents, measured after, the order is reversed
# (3-seed means 0.708 vs 0.762, benchmarks/body_test_seeds.py): see README, Measurements.
DILATIONS = (1, 2, 4, 8)
# encoders trained from different seeds (and camera views) whose probabilities are averaged
# (export/models.EnsembleEncoder, build_engines --body-members): not adopted. Three seeds of
# this recipe scored leave-one-content-out window accuracy 0.589 / 0.558 / 0.538, their
# ensemble 0.565 (+0.003 over the members' mean; clips 0.679 vs 0.643): three times the
# training for no measurable gain (benchmarks/body_loco.py --ensemble)
ENSEMBLE_SEEDS = 1
# the full build trains on every content outside the test split, the validation content
# (guide) too: the recipe is fixed (no early stopping), and guide's four emotions are one more
# content to learn from, as in every leave-one-content-out fold; validation features still
# calibrate INT8 quantisation (they only need to look like run-time inputs)
TRAIN_SPLITS = ("train", "val")


@dataclass
class Clip:
    file: str
    style: str
    emotion: int  # index into EMOTIONS4, -1 = not an emotion style
    content: str
    take: str
    points: np.ndarray  # (T, 33, 3) world points at BODY_FPS
    mirrored: bool = False  # left-right mirror image of the take (training augmentation)

    @property
    def split(self) -> str:
        if self.content in TEST_CONTENTS or (self.content, self.take) in TEST_TAKES:
            return "test"
        return "val" if self.content in VAL_CONTENTS else "train"


def load_clips(
    data: Path, cache: Path | None = None, contents: tuple[str, ...] | None = None, neutral_only_labels: bool = False
) -> tuple[list[Clip], list[str]]:
    """Clips (of `contents`, None = all) with forward kinematics done once (cached .npy of
    3D joints, not media). Styles are always those of the whole dataset.

    Contents recorded only in the neutral ("normal") style (call, punch, slash, kick,
    dance-short, respond) keep their style label but get no emotion label
    (`emotion` -1) unless `neutral_only_labels`: labelled, they teach "this kind of
    action is neutral", a content shortcut, since no emotional take of the same action
    exists to contrast with. Leave-one-content-out on the training contents: window
    accuracy 0.449 -> 0.531 (seed 1: 0.449 -> 0.554), clip 0.607 -> 0.679 (benchmarks/body_loco.py)."""
    root = data / "bandai_motion"
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    styles = sorted({r["label"] for r in rows})
    emotional = {r["content"] for r in rows if r["emotion4"] and r["emotion4"] != "neutral"}
    rows = [r for r in rows if contents is None or r["content"] in contents]
    clips = []
    for r in rows:
        cp = cache / "body3d" / (Path(r["file"]).stem + ".npy") if cache else None
        if cp is not None and cp.exists():
            pts = np.load(cp)
        else:
            m = load_bvh(root / r["file"])
            step = max(1, round(m.fps / BODY_FPS))
            pts = to_mediapipe33(m)[::step].astype(np.float32)
            if cp is not None:  # written whole, then renamed: a parallel run never reads half a file
                cp.parent.mkdir(parents=True, exist_ok=True)
                tmp = cp.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, pts)
                os.replace(tmp, cp)
        emo = EMOTIONS4.index(r["emotion4"]) if r["emotion4"] else -1
        if not neutral_only_labels and r["content"] not in emotional:
            emo = -1
        clips.append(Clip(r["file"], r["label"], emo, r["content"], r["take"], pts))
    return clips, styles


# MediaPipe-33 left/right landmark pairs (eyes, ears, mouth, shoulders ... feet)
MIRROR_PAIRS = ((1, 4), (2, 5), (3, 6), (7, 8), (9, 10)) + tuple((i, i + 1) for i in range(11, 33, 2))
_MIRROR = np.arange(33)
for _l, _r in MIRROR_PAIRS:
    _MIRROR[_l], _MIRROR[_r] = _r, _l


def _feature_mirror() -> tuple[np.ndarray, np.ndarray]:
    """Channel order and signs that turn body features (`body_features_from_landmarks`:
    x, y, dx, dy, visibility per joint of BODY_JOINTS, then the hips' dx, dy) into the
    features of the left-right mirror image: partner joints swapped, x and dx negated
    (the features are hip-centred, so the mirror plane runs through the hips)."""
    idx: list[int] = []
    sign: list[float] = []
    for j in BODY_JOINTS:
        first = BODY_JOINTS.index(int(_MIRROR[j])) * 5
        idx += range(first, first + 5)
        sign += [-1.0, 1.0, -1.0, 1.0, 1.0]
    n = len(BODY_JOINTS) * 5
    return np.array([*idx, n, n + 1]), np.array([*sign, -1.0, 1.0], np.float32)


FEATURE_MIRROR_INDEX, FEATURE_MIRROR_SIGN = _feature_mirror()


def mirror_features(feats: np.ndarray) -> np.ndarray:
    """(..., BODY_DIM) features of the left-right mirror image of the same landmarks."""
    return feats[..., FEATURE_MIRROR_INDEX] * FEATURE_MIRROR_SIGN


def mirrored(clip: Clip) -> Clip:
    """The same take performed by a mirror-image actor: x -> -x (y is up, the floor is x-z)
    and left/right landmarks swapped. Emotion does not depend on handedness, so the
    labels carry over; in leave-one-content-out validation this took the body encoder's
    clip accuracy from 0.46 to 0.61, window accuracy 0.42 -> 0.45 (7 contents, 28 clips;
    benchmarks/body_loco.py)."""
    pts = clip.points[:, _MIRROR].copy()
    pts[..., 0] *= -1.0
    return replace(clip, points=pts, mirrored=True)


def front_yaw_deg(pts: np.ndarray) -> float:
    fwd = pts[0, 0] - 0.5 * (pts[0, 7] + pts[0, 8])
    return float(np.degrees(np.arctan2(fwd[0], fwd[2])))


def random_camera(rng: np.random.Generator, pts: np.ndarray) -> Camera:
    w, h = (640, 360) if rng.random() < 0.6 else (480, 640)
    return Camera(
        width=w,
        height=h,
        focal=float(rng.uniform(0.7, 1.4) * max(w, h)),
        distance=float(rng.uniform(350, 900)),
        height_above_ground=float(rng.uniform(60, 220)),
        yaw_deg=front_yaw_deg(pts) + float(rng.uniform(-70, 70)),
    )


@dataclass(frozen=True)
class ExtraAugment:
    """Training augmentations measured by leave-one-content-out validation and not adopted
    (benchmarks/body_loco.py dil8_shape, dil8_roll; seed 0, window accuracy vs dil8's 0.629):
    body proportions (width and height each scaled by up to +-`shape`, about the hips) 0.600
    (clips 0.643 vs 0.679); camera roll (the image turned by up to +-`roll_deg`) 0.632 (clips
    0.679), a tie, and the seed-to-seed spread is about 0.03. Off by default."""

    shape: float = 0.0
    roll_deg: float = 0.0


def keypoints(clip: Clip, cam: Camera, rng: np.random.Generator | None, extra: ExtraAugment = ExtraAugment()) -> np.ndarray:
    """(T, 33, 4) MediaPipe-style landmarks; with rng: detector jitter and dropped joints
    (and the `extra` augmentations)."""
    points = clip.points
    if rng is not None and extra.shape:
        centre = 0.5 * (points[0, 23] + points[0, 24])
        width, height = rng.uniform(1 - extra.shape, 1 + extra.shape, 2)
        points = (points - centre) * np.array([width, height, width], np.float32) + centre
    lm = project(points, cam)
    if rng is not None:
        T = len(lm)
        lm[..., :2] += rng.normal(0, rng.uniform(0.002, 0.01), (T, 33, 2)).astype(np.float32)
        drop = rng.random((T, 33)) < rng.uniform(0.0, 0.1)
        if rng.random() < 0.15:  # legs out of frame for the whole window
            drop[:, 25:] = True
        lm[drop, 3] = 0.0
        lm[..., 3] *= rng.uniform(0.6, 1.0, (T, 33)).astype(np.float32) ** 0.3
        if extra.roll_deg:
            lm[..., :2] = _rolled(lm[..., :2], cam, np.radians(rng.uniform(-extra.roll_deg, extra.roll_deg)))
    return lm


def _rolled(xy: np.ndarray, cam: Camera, angle: float) -> np.ndarray:
    """Normalised image points turned by `angle` about the image centre (in pixels, so the
    aspect ratio is kept)."""
    size = np.array([cam.width, cam.height], np.float32)
    c, s = np.cos(angle), np.sin(angle)
    px = (xy - 0.5) * size
    turned = np.stack([c * px[..., 0] - s * px[..., 1], s * px[..., 0] + c * px[..., 1]], -1)
    return turned / size + 0.5


def windows(clip: Clip, n: int, rng: np.random.Generator, augment: bool, seconds: float = WINDOW_S,
            extra: ExtraAugment = ExtraAugment()) -> list[np.ndarray]:
    """n windows of `seconds` (features), each from its own random camera."""
    L = int(seconds * BODY_FPS)
    out = []
    for _ in range(n):
        lm = keypoints(clip, random_camera(rng, clip.points), rng if augment else None, extra)
        T = len(lm)
        if T > L:
            s = int(rng.integers(0, T - L + 1))
            lm = lm[s : s + L]
        out.append(body_features_from_landmarks(lm))
    return out


def make_set(clips: list[Clip], split: str | tuple[str, ...], per_clip: int, seed: int, augment: bool, emotion_only: bool,
             seconds: float = WINDOW_S) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Feature windows (`seconds` long), 4-class labels (-1 none), style labels and clip ids
    of one split (or several)."""
    splits = (split,) if isinstance(split, str) else split
    rng = np.random.default_rng(seed)
    styles = sorted({c.style for c in clips})
    xs, ys, ss, ids = [], [], [], []
    for i, c in enumerate(clips):
        if c.split not in splits or (emotion_only and c.emotion < 0):
            continue
        for w in windows(c, per_clip, rng, augment, seconds):
            xs.append(w)
            ys.append(c.emotion)
            ss.append(styles.index(c.style))
            ids.append(i)
    return xs, np.array(ys), np.array(ss), np.array(ids)




def per_clip(y: np.ndarray, p: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clip ids, clip labels, clip probabilities) from window labels, window probabilities
    and clip ids (`make_set`): a clip's answer is the mean of its windows' probabilities."""
    u = np.unique(ids)
    return u, np.array([y[ids == i][0] for i in u]), np.stack([p[ids == i].mean(0) for i in u])
