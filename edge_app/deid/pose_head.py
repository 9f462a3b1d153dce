"""Head region from MediaPipe Pose landmarks, for heads no face detector sees.

Pose finds a person from the body, so it still places the head when the face
is turned away, in profile, blurred or too small for a face detector. It runs
on the RAW frame inside the privacy boundary; only the head box leaves here.
MediaPipe Pose tracks one person per call: for several people the face
detectors and persistence do the work, pose is the extra net under them.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from edge_app.errors import ModelError, UsageError

# Landmark indices (BlazePose): 0 nose, 1-6 eyes, 7-8 ears, 9-10 mouth, 11-12 shoulders.
HEAD_POINTS = tuple(range(11))
LEFT_EAR, RIGHT_EAR, LEFT_SHOULDER, RIGHT_SHOULDER = 7, 8, 11, 12


class PoseHeadEstimator:
    """`head(bgr)` -> (x0, y0, x1, y1) of the head in pixels, or None."""

    name = "pose"

    def __init__(self, model_complexity: int = 1, min_confidence: float = 0.5) -> None:
        import mediapipe as mp

        _require_bundled_model(mp, model_complexity)
        # static_image_mode: we call it a few times a second on a moving camera,
        # so tracking from the previous call would start from a stale region.
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=model_complexity,
            enable_segmentation=False,
            min_detection_confidence=min_confidence,
        )

    def head(self, image: np.ndarray) -> tuple[float, float, float, float] | None:
        h, w = image.shape[:2]
        result = self._pose.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if result.pose_landmarks is None:
            return None
        pts = np.array([(p.x * w, p.y * h) for p in result.pose_landmarks.landmark], np.float32)
        return head_from_landmarks(pts)

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None


def _require_bundled_model(mp, complexity: int) -> None:
    """MediaPipe downloads a missing pose model on first use; we never download."""
    names = {0: "lite", 1: "full", 2: "heavy"}
    if complexity not in names:
        raise UsageError(f"pose model complexity must be 0, 1 or 2 (got {complexity})")
    path = os.path.join(os.path.dirname(mp.__file__), "modules", "pose_landmark", f"pose_landmark_{names[complexity]}.tflite")
    if not os.path.isfile(path):
        raise ModelError(f"pose: model file not installed: {path} (only 'full', complexity 1, ships with mediapipe)")


def head_from_landmarks(pts: np.ndarray) -> tuple[float, float, float, float]:
    """Head box from 33 BlazePose points (pixels), generous on purpose.

    Size takes the largest of three cues so that one collapsing cue (ears in
    profile, shoulders turned sideways) cannot shrink the box: ear distance,
    shoulder width, and nose-to-shoulder-line height.
    """
    head = pts[list(HEAD_POINTS)]
    ears = np.linalg.norm(pts[LEFT_EAR] - pts[RIGHT_EAR])
    shoulders = np.linalg.norm(pts[LEFT_SHOULDER] - pts[RIGHT_SHOULDER])
    neck = np.linalg.norm(pts[0] - (pts[LEFT_SHOULDER] + pts[RIGHT_SHOULDER]) / 2)
    width = max(2.0 * ears, 0.6 * shoulders, 0.9 * neck, float(np.ptp(head[:, 0])) * 1.6, 8.0)
    height = 1.35 * width
    cx = float(head[:, 0].mean())
    cy = float(head[:, 1].mean()) - 0.15 * height  # landmarks sit low on the head; hair is above
    return (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
