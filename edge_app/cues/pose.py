"""Body pose on de-identified frames (MediaPipe Pose, tracking mode).

Privacy boundary: `PoseEstimator.estimate` accepts only `DeidFrame`. A raw
`Frame` or a bare array raises `TypeError`, so pose can never be run on a frame
whose face has not been removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edge_app.records import Box, DeidFrame

__all__ = [
    "LANDMARK_NAMES",
    "N_LANDMARKS",
    "PoseEstimator",
    "PoseOptions",
    "PoseSample",
    "RateLimiter",
]

N_LANDMARKS = 33
# MediaPipe Pose landmark order (index = position in this tuple).
LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip


@dataclass(frozen=True)
class PoseSample:
    """One pose estimate at time `t` (seconds, same clock as the frames).

    `landmarks` is float32 (33, 4): x, y normalised to image width / height,
    z (MediaPipe relative depth, hip centre = 0, smaller = nearer the camera,
    same scale as x) and visibility in [0, 1]. `None` means the frame was
    sampled but nobody was found: the pipeline may record such samples so that
    `person_visible_ratio` counts them.
    `aspect` = image width / height, needed to compare x and y distances.
    `head_box` = the de-identifier's masked head box nearest this person
    (x0, y0, x1, y1 normalised), or None. After masking, MediaPipe's nose / ear
    points are guesses (off by 0.1-0.3 image heights on a masked photo), so
    head-related rules prefer this box.
    """

    t: float
    landmarks: np.ndarray | None = field(default=None, repr=False)
    aspect: float = 16.0 / 9.0
    frame_index: int = -1
    head_box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.landmarks is not None:
            lm = np.asarray(self.landmarks, dtype=np.float32)
            if lm.shape != (N_LANDMARKS, 4):
                raise ValueError(f"landmarks must be (33, 4), got {lm.shape}")
            object.__setattr__(self, "landmarks", lm)

    @property
    def has_person(self) -> bool:
        return self.landmarks is not None

    def to_dict(self) -> dict[str, Any]:
        lm = None if self.landmarks is None else np.round(self.landmarks, 4).tolist()
        box = None if self.head_box is None else [round(v, 4) for v in self.head_box]
        return {
            "t": round(self.t, 3),
            "frame_index": self.frame_index,
            "aspect": round(self.aspect, 4),
            "head_box": box,
            "landmarks": lm,
        }


@dataclass
class PoseOptions:
    """Settings of `PoseEstimator`."""

    # MediaPipe model: 0 lite, 1 full (bundled, ~20 ms on a 640x360 frame), 2 heavy. Default 1.
    model_complexity: int = 1
    # Frames whose longer side exceeds this are downscaled first (pose needs little detail). Default 640.
    max_side: int = 640
    # Video mode: follow the person from frame to frame (frames must come in time order). Default True.
    tracking: bool = True
    # Person detector confidence, used only when no masked head box can seed the search. Default 0.5.
    min_detection_confidence: float = 0.5
    # A result counts as a person only if both shoulders are at least this visible. Default 0.5.
    min_shoulder_visibility: float = 0.5
    # Seed guesses, tried in order: hip centre this many head-box heights below the head centre.
    # Default (2.0, 1.4, 2.8).
    seed_hip_offsets: tuple[float, ...] = (2.0, 1.4, 2.8)
    # Landmark passes on a seed (each re-centres the crop on the found body). Default 2.
    seed_passes: int = 2


# A graph with only MediaPipe's landmark stage: it takes the crop (ROI) from us.
_ROI_GRAPH = """
input_stream: "image"
input_stream: "roi"
input_side_packet: "model_complexity"
output_stream: "landmarks"
output_stream: "aux"
node {
  calculator: "PoseLandmarkByRoiCpu"
  input_stream: "IMAGE:image"
  input_stream: "ROI:roi"
  input_side_packet: "MODEL_COMPLEXITY:model_complexity"
  output_stream: "LANDMARKS:landmarks"
  output_stream: "AUXILIARY_LANDMARKS:aux"
}
"""


class PoseEstimator:
    """MediaPipe Pose on `DeidFrame`s. Not thread-safe; one instance per stream.

    Why not plain `mp.solutions.pose.Pose`: its person detector keys on the
    face, and after de-identification there is none, so it finds nobody (checked
    on blacked-out, grey, blurred and pixelated faces). The landmark model
    itself copes well with a masked head once it is given a crop. So the crop
    is seeded from the de-identifier's masked head box (`DeidFrame.masked_boxes`),
    refined with the model's own body-centre / scale points and, in tracking
    mode, carried to the next frame. Frames with no masked box fall back to the
    stock detector (a person whose face was not visible, e.g. turned away).

    Usage::

        with PoseEstimator() as pose:
            sample = pose.estimate(deid_frame)   # PoseSample or None
    """

    def __init__(self, options: PoseOptions | None = None) -> None:
        self.options = options or PoseOptions()
        # Imported here: mediapipe is heavy and only this stage needs it.
        import mediapipe as mp
        from google.protobuf import text_format
        from mediapipe.framework import calculator_pb2
        from mediapipe.framework.formats import rect_pb2
        from mediapipe.python.solution_base import SolutionBase

        o = self.options
        graph = text_format.Parse(_ROI_GRAPH, calculator_pb2.CalculatorGraphConfig())
        self._by_roi = SolutionBase(
            graph_config=graph, side_inputs={"model_complexity": o.model_complexity}, outputs=["landmarks", "aux"]
        )
        self._detector = mp.solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=o.model_complexity,
            min_detection_confidence=o.min_detection_confidence,
        )
        self._rect = rect_pb2.NormalizedRect
        self._roi: Any = None  # crop for the next frame while tracking
        self._last_t: float | None = None

    def estimate(self, frame: DeidFrame) -> PoseSample | None:
        """Pose of the most prominent person in a de-identified frame; None if nobody."""
        if not isinstance(frame, DeidFrame):
            raise TypeError(
                f"PoseEstimator.estimate takes a DeidFrame (de-identified), got {type(frame).__name__}"
            )
        image = frame.image
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            raise ValueError(f"DeidFrame.image must be HxWx3 BGR, got {getattr(image, 'shape', None)}")
        if not self.options.tracking or (self._last_t is not None and frame.t < self._last_t):
            self._roi = None  # a jump back in time means a new clip
        self._last_t = frame.t
        h, w = image.shape[:2]
        rgb = cv2.cvtColor(_downscale(image, self.options.max_side), cv2.COLOR_BGR2RGB)

        lm = self._track(rgb) if self._roi is not None else None
        if lm is None:
            lm = self._seed_from_head(rgb, frame, w, h)
        if lm is None:
            lm = self._detect(rgb)
        if lm is None:
            self._roi = None
            return None
        return PoseSample(
            t=float(frame.t), landmarks=lm, aspect=w / h, frame_index=frame.index, head_box=_head_box(frame, lm, w, h)
        )

    def _track(self, rgb: np.ndarray) -> np.ndarray | None:
        return self._run_roi(rgb, self._roi)

    def _seed_from_head(self, rgb: np.ndarray, frame: DeidFrame, w: int, h: int) -> np.ndarray | None:
        """Guess an upright body below the largest masked head box, then refine."""
        if not frame.masked_boxes:
            return None
        box = max(frame.masked_boxes, key=lambda b: b.area)
        head_h = max(1, box.y1 - box.y0)
        cx, cy = 0.5 * (box.x0 + box.x1), 0.5 * (box.y0 + box.y1)
        for offset in self.options.seed_hip_offsets:
            hip_y = cy + offset * head_h
            side = 2.5 * (hip_y - box.y0)  # MediaPipe's crop: 2.5 x (hip centre to head top)
            roi = self._rect(x_center=cx / w, y_center=hip_y / h, width=side / w, height=side / h, rotation=0.0)
            lm = None
            for _ in range(max(1, self.options.seed_passes)):
                lm = self._run_roi(rgb, roi)
                if lm is None:
                    break
                roi = self._roi
            if lm is not None:
                return lm
        return None

    def _detect(self, rgb: np.ndarray) -> np.ndarray | None:
        """Stock MediaPipe detector + landmarks (works when some face is visible)."""
        result = self._detector.process(rgb)
        if result.pose_landmarks is None:
            return None
        lm = _landmark_array(result.pose_landmarks)
        if not self._is_person(lm):
            return None
        # Hand over to ROI tracking: a crop centred on the hips covering the body.
        self._roi = self._roi_from_points(lm[23:25, :2].mean(axis=0), lm[[0, 11, 12], :2].mean(axis=0), rgb.shape)
        return lm

    def _run_roi(self, rgb: np.ndarray, roi: Any) -> np.ndarray | None:
        result = self._by_roi.process({"image": rgb, "roi": roi})
        if result.landmarks is None or result.aux is None:
            self._roi = None
            return None
        lm = _landmark_array(result.landmarks)
        if not self._is_person(lm):
            self._roi = None
            return None
        aux = np.array([(p.x, p.y) for p in result.aux.landmark[:2]])
        self._roi = self._roi_from_aux(aux[0], aux[1], rgb.shape)
        return lm

    def _is_person(self, lm: np.ndarray) -> bool:
        return bool(lm[11:13, 3].min() >= self.options.min_shoulder_visibility)

    def _roi_from_aux(self, centre: np.ndarray, scale_pt: np.ndarray, shape: tuple[int, ...]) -> Any:
        """MediaPipe's own rule: square of 2.5 x |centre-scale point|, rotated so the body is upright."""
        h, w = shape[:2]
        dx, dy = (scale_pt[0] - centre[0]) * w, (scale_pt[1] - centre[1]) * h
        side = 2.5 * float(np.hypot(dx, dy))
        rotation = _normalise_angle(np.pi / 2 - np.arctan2(-dy, dx))
        return self._rect(
            x_center=float(centre[0]), y_center=float(centre[1]), width=side / w, height=side / h, rotation=rotation
        )

    def _roi_from_points(self, hips: np.ndarray, head: np.ndarray, shape: tuple[int, ...]) -> Any:
        # Head top is about a third of the hip-head distance above the shoulder / nose centroid.
        top = head + 0.35 * (head - hips)
        return self._roi_from_aux(hips, top, shape)

    def reset(self) -> None:
        """Forget the tracked person (call between unrelated clips)."""
        self._roi = None
        self._last_t = None

    def close(self) -> None:
        self._by_roi.close()
        self._detector.close()

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _head_box(frame: DeidFrame, lm: np.ndarray, w: int, h: int) -> tuple[float, float, float, float] | None:
    """The masked box nearest to where this person's head should be (above the shoulders)."""
    if not frame.masked_boxes:
        return None
    sh = lm[11:13, :2].mean(axis=0) * (w, h)
    sw = max(1.0, float(np.linalg.norm((lm[11, :2] - lm[12, :2]) * (w, h))))
    expected = sh - (0.0, 0.7 * sw)

    def distance(b: Box) -> float:
        return float(np.hypot(0.5 * (b.x0 + b.x1) - expected[0], 0.5 * (b.y0 + b.y1) - expected[1]))

    best = min(frame.masked_boxes, key=distance)
    if distance(best) > 2.0 * sw:  # someone else's head
        return None
    return (best.x0 / w, best.y0 / h, best.x1 / w, best.y1 / h)


def _landmark_array(landmarks: Any) -> np.ndarray:
    return np.array([(p.x, p.y, p.z, p.visibility) for p in landmarks.landmark], dtype=np.float32)


def _normalise_angle(a: float) -> float:
    return float(a - 2 * np.pi * np.floor((a + np.pi) / (2 * np.pi)))


def _downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if max_side <= 0 or scale >= 1.0:
        return image
    # INTER_AREA: no aliasing when shrinking; normalised landmarks are scale-free.
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


class RateLimiter:
    """Decides which frames to run pose on, to hold about `fps` samples per second.

    Drift-free: the schedule advances by whole periods, so 30 fps input at
    fps=10 keeps every third frame. A jump back in time restarts the schedule.
    """

    def __init__(self, fps: float = 10.0) -> None:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.period = 1.0 / fps
        self._next: float | None = None

    def should_sample(self, t: float) -> bool:
        # Half a millisecond of slack absorbs container timestamp rounding.
        tol = 5e-4
        if self._next is None or t < self._next - self.period - tol:
            self._next = t + self.period
            return True
        if t + tol < self._next:
            return False
        while self._next <= t + tol:
            self._next += self.period
        return True

    def reset(self) -> None:
        self._next = None
