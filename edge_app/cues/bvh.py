"""Read BVH motion capture and turn it into MediaPipe-33-layout keypoints.

Used by the cue tests (realistic landmark sequences from real mocap) and by the
training stage (synthetic pose tracks from Bandai-Namco clips). Only numpy: a
BVH file is a joint tree with per-joint channels, so a small reader is enough.

Conventions: BVH Euler channels are intrinsic rotations applied in the order
they are listed (e.g. "Zrotation Xrotation Yrotation" -> R = Rz @ Rx @ Ry);
positions are in the file's unit (centimetres for Bandai-Namco), Y is up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_app.cues.pose import PoseSample

__all__ = [
    "BvhMotion",
    "BvhSkeleton",
    "Camera",
    "bvh_pose_samples",
    "forward_kinematics",
    "load_bvh",
    "project",
    "to_mediapipe33",
]


@dataclass(frozen=True)
class BvhSkeleton:
    """The joint tree: names, parent index (-1 for the root), rest offsets, channels."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray = field(repr=False)  # (J, 3) rest offset from the parent
    channels: tuple[tuple[str, ...], ...] = ()  # per joint, e.g. ("Xposition", ..., "Yrotation")
    end_offsets: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # joint -> End Site offset

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass(frozen=True)
class BvhMotion:
    """A skeleton plus its per-frame channel values."""

    skeleton: BvhSkeleton
    frame_time: float  # seconds per frame
    values: np.ndarray = field(repr=False)  # (T, total channels), degrees / file units

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time


def load_bvh(path: str | Path) -> BvhMotion:
    """Parse a BVH file (HIERARCHY + MOTION)."""
    tokens = Path(path).read_text(encoding="utf-8", errors="replace").split()
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    end_offsets: dict[int, np.ndarray] = {}
    stack: list[int] = []
    pending_end = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            offsets.append([0.0, 0.0, 0.0])
            channels.append(())
            i += 2
        elif tok == "End":  # "End Site": an offset-only leaf, kept for head/hand tips
            pending_end = True
            i += 2
        elif tok == "{":
            stack.append(-2 if pending_end else len(names) - 1)
            i += 1
        elif tok == "}":
            stack.pop()
            pending_end = False
            i += 1
        elif tok == "OFFSET":
            vec = [float(v) for v in tokens[i + 1 : i + 4]]
            if pending_end:
                end_offsets[len(names) - 1] = np.asarray(vec)
            else:
                offsets[-1] = vec
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            channels[-1] = tuple(tokens[i + 2 : i + 2 + n])
            i += 2 + n
        elif tok == "MOTION":
            i += 1
            break
        else:
            i += 1
    # MOTION header: "Frames: N" "Frame Time: dt"
    n_frames = int(tokens[i + 1])
    frame_time = float(tokens[i + 4])
    data = np.asarray(tokens[i + 5 :], dtype=np.float64)
    n_ch = sum(len(c) for c in channels)
    if n_ch == 0 or data.size < n_frames * n_ch:
        raise ValueError(f"{path}: truncated MOTION block")
    skel = BvhSkeleton(tuple(names), tuple(parents), np.asarray(offsets), tuple(channels), end_offsets)
    return BvhMotion(skel, frame_time, data[: n_frames * n_ch].reshape(n_frames, n_ch))


def _axis_rot(axis: str, deg: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotation about one axis for T angles in degrees."""
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    if axis == "X":
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == "Y":
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def forward_kinematics(motion: BvhMotion) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """World positions of every joint, (T, J, 3), plus End Site tips by joint name.

    Position channels, when present, replace the rest offset (Bandai-Namco stores
    6 channels on every joint; the values equal the offsets except for the root).
    """
    skel = motion.skeleton
    T, J = motion.n_frames, len(skel.names)
    pos = np.zeros((T, J, 3))
    rot = np.zeros((T, J, 3, 3))
    col = 0
    for j in range(J):
        local_t = np.broadcast_to(skel.offsets[j], (T, 3)).copy()
        local_r = np.broadcast_to(np.eye(3), (T, 3, 3)).copy()
        for ch in skel.channels[j]:
            v = motion.values[:, col]
            col += 1
            if ch.endswith("position"):
                local_t[:, "XYZ".index(ch[0])] = v
            elif ch.endswith("rotation"):
                local_r = local_r @ _axis_rot(ch[0], v)
        p = skel.parents[j]
        if p < 0:
            pos[:, j], rot[:, j] = local_t, local_r
        else:
            pos[:, j] = pos[:, p] + np.einsum("tij,tj->ti", rot[:, p], local_t)
            rot[:, j] = rot[:, p] @ local_r
    tips = {}
    for j, off in skel.end_offsets.items():
        name = skel.names[j]
        if np.linalg.norm(off) < 1e-9:
            # Most Bandai-Namco files store zero End Sites; bones run along the
            # joint's own offset axis, so extend that by a plausible length.
            off = _unit(skel.offsets[j]) * _TIP_LENGTH.get(name, 5.0)
        tips[name] = pos[:, j] + np.einsum("tij,j->ti", rot[:, j], off)
    return pos, tips


# Tip lengths (cm) for zero End Sites, from the files that do store them (head 10, hand 5)
# except the hand: MediaPipe's finger points sit near the knuckles, about 8 cm from the wrist.
_TIP_LENGTH = {"Head": 10.0, "Hand_L": 8.0, "Hand_R": 8.0, "Toes_L": 5.0, "Toes_R": 5.0}


# MediaPipe Pose indices (33 landmarks) we can fill from a 22-joint body skeleton.
_MP_FROM_BVH: dict[int, str] = {
    11: "UpperArm_L", 12: "UpperArm_R",  # shoulders: the arm root, not the clavicle
    13: "LowerArm_L", 14: "LowerArm_R",  # elbows
    15: "Hand_L", 16: "Hand_R",  # wrists
    23: "UpperLeg_L", 24: "UpperLeg_R",  # hips
    25: "LowerLeg_L", 26: "LowerLeg_R",  # knees
    27: "Foot_L", 28: "Foot_R",  # ankles
    31: "Toes_L", 32: "Toes_R",  # foot index
}


def to_mediapipe33(
    motion: BvhMotion,
    joints: np.ndarray | None = None,
    tips: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """(T, 33, 3) world points in MediaPipe Pose order, from a Bandai-Namco-style skeleton.

    Face points are placed on the head: nose in front of the head centre (the
    side the toes point to), eyes/ears/mouth around it, so head-down and head
    turn geometry behaves like MediaPipe's. Hand points (pinky/index/thumb) are
    the hand End Site spread slightly; heels sit behind the ankles.
    """
    if joints is None or tips is None:
        joints, tips = forward_kinematics(motion)
    idx = motion.skeleton.index
    T = joints.shape[0]
    out = np.zeros((T, 33, 3))
    for mp_i, name in _MP_FROM_BVH.items():
        out[:, mp_i] = joints[:, idx(name)]

    neck, head = joints[:, idx("Neck")], joints[:, idx("Head")]
    head_top = tips.get("Head", head + (head - neck))
    up = _unit(head_top - head)
    right = _unit(joints[:, idx("UpperArm_R")] - joints[:, idx("UpperArm_L")])  # subject's right
    # Forward = right x up points out of the chest for a Y-up right-handed frame...
    fwd = _unit(np.cross(up, right))
    # ...but check against the feet: toes point forward in a standing pose.
    toes = joints[:, idx("Toes_L")] + joints[:, idx("Toes_R")] - joints[:, idx("Foot_L")] - joints[:, idx("Foot_R")]
    if np.mean(np.sum(fwd * toes, axis=1)) < 0:
        fwd = -fwd
    h = np.linalg.norm(head_top - head, axis=1, keepdims=True)  # ~ head radius scale
    centre = head + 0.5 * (head_top - head)
    left = -right
    out[:, 0] = centre + 0.9 * h * fwd  # nose
    for mp_i, side, dy in ((2, left, 0.15), (5, right, 0.15)):  # eyes
        out[:, mp_i] = centre + 0.75 * h * fwd + 0.3 * h * side + dy * h * up
        out[:, mp_i - 1] = out[:, mp_i] - 0.1 * h * side  # inner
        out[:, mp_i + 1] = out[:, mp_i] + 0.1 * h * side  # outer
    out[:, 7] = centre + 0.75 * h * left  # left ear
    out[:, 8] = centre + 0.75 * h * right
    out[:, 9] = centre + 0.8 * h * fwd - 0.4 * h * up + 0.2 * h * left  # mouth left
    out[:, 10] = centre + 0.8 * h * fwd - 0.4 * h * up + 0.2 * h * right

    for side, base in (("L", 15), ("R", 16)):
        wrist = joints[:, idx(f"Hand_{side}")]
        tip = tips.get(f"Hand_{side}", wrist)
        hand = tip - wrist
        lateral = _unit(np.cross(hand, up)) * np.linalg.norm(hand, axis=1, keepdims=True) * 0.4
        out[:, base + 2] = tip + lateral  # pinky (17/18)
        out[:, base + 4] = tip - lateral  # index (19/20)
        out[:, base + 6] = wrist + 0.5 * hand - lateral  # thumb (21/22)
    for side, heel in (("L", 29), ("R", 30)):
        ankle, toe = joints[:, idx(f"Foot_{side}")], joints[:, idx(f"Toes_{side}")]
        out[:, heel] = ankle - 0.3 * (toe - ankle)
    return out


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking at the subject, for `project`."""

    width: int = 640  # image width in pixels; default 640
    height: int = 360  # image height in pixels; default 360
    focal: float = 500.0  # focal length in pixels; default 500
    distance: float = 400.0  # camera distance from the subject's start position (file units); default 400
    height_above_ground: float = 120.0  # camera height (file units, Y up); default 120
    yaw_deg: float | None = None  # camera azimuth; None = face the subject's first-frame front


def project(points: np.ndarray, camera: Camera = Camera()) -> np.ndarray:
    """Project (T, K, 3) world points to MediaPipe-style (T, K, 4) landmarks.

    Returns x, y normalised to [0, 1] image coords, z = depth relative to the
    hip centre scaled like x (MediaPipe convention: smaller = closer to the
    camera), and visibility 1 inside the image, 0 outside or behind the camera.
    """
    pts = np.asarray(points, dtype=np.float64)
    hips0 = 0.5 * (pts[0, 23] + pts[0, 24])
    if camera.yaw_deg is None:
        # face the subject: put the camera along the direction the nose points at t=0
        fwd = pts[0, 0] - 0.5 * (pts[0, 7] + pts[0, 8])
        yaw = np.arctan2(fwd[0], fwd[2])
    else:
        yaw = np.radians(camera.yaw_deg)
    back = np.array([np.sin(yaw), 0.0, np.cos(yaw)])  # from subject towards camera
    eye = np.array([hips0[0], camera.height_above_ground, hips0[2]]) + camera.distance * back
    z_axis = -back  # camera looks at the subject
    x_axis = _unit(np.cross(z_axis, np.array([0.0, 1.0, 0.0])))  # image right
    y_axis = np.cross(z_axis, x_axis)  # image down
    rel = pts - eye
    xc = rel @ x_axis
    yc = rel @ y_axis
    zc = rel @ z_axis
    safe = np.where(zc > 1e-6, zc, np.nan)
    u = (camera.focal * xc / safe + camera.width / 2) / camera.width
    v = (camera.focal * yc / safe + camera.height / 2) / camera.height
    hip_depth = 0.5 * (zc[:, 23:24] + zc[:, 24:25])
    z = (zc - hip_depth) * camera.focal / safe / camera.width
    vis = ((zc > 1e-6) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)).astype(np.float64)
    out = np.stack([u, v, z, vis], axis=-1)
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def bvh_pose_samples(
    path: str | Path,
    fps: float | None = 10.0,
    camera: Camera = Camera(),
    t0: float = 0.0,
) -> list[PoseSample]:
    """A BVH clip as the `PoseSample`s a camera would give, resampled to about `fps`
    (None keeps every mocap frame). Times start at `t0`."""
    motion = load_bvh(path)
    lm = project(to_mediapipe33(motion), camera)
    step = 1 if not fps else max(1, round(motion.fps / fps))
    aspect = camera.width / camera.height
    return [
        PoseSample(t=t0 + i * motion.frame_time, landmarks=lm[i], aspect=aspect, frame_index=i)
        for i in range(0, motion.n_frames, step)
    ]
