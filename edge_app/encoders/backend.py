"""Which engine runs the encoders: TensorRT, ONNX Runtime (TensorRT/CUDA EP) or ORT on CPU.

`auto` tries, in order: a TensorRT engine file (needs `tensorrt`, the CUDA runtime
bindings and a GPU), ORT with the TensorRT or CUDA execution provider, ORT on CPU.
An execution provider counts only if the created session really uses it:
onnxruntime-gpu lists CUDA/TensorRT in `get_available_providers()` even on a machine
without a GPU and then silently falls back to CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_app.errors import UsageError

log = logging.getLogger(__name__)


class Backend(str, Enum):
    AUTO = "auto"
    TENSORRT = "tensorrt"
    CUDA = "cuda"
    CPU = "cpu"


class Runner(Protocol):
    backend: str  # what actually runs, e.g. "ort:CPUExecutionProvider"

    def run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class OrtRunner:
    """ONNX Runtime session with input `frames` (1, T, F) -> `tokens`, `probs`."""

    path: Path
    providers: list[str]
    threads: int = 1

    def __post_init__(self) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), so, providers=self.providers)
        self.backend = f"ort:{self.session.get_providers()[0]}"

    def run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tokens, probs = self.session.run(["tokens", "probs"], {"frames": frames.astype(np.float32)})
        return tokens, probs


class TrtRunner:
    """A serialized TensorRT engine (built by export/build_engines.py on the device)."""

    def __init__(self, engine_path: Path) -> None:
        import tensorrt as trt
        from cuda import cudart  # cuda-python: explicit device buffers, no torch needed

        self._trt, self._cudart = trt, cudart
        logger = trt.Logger(trt.Logger.WARNING)
        with open(engine_path, "rb") as f:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError(f"could not deserialize TensorRT engine {engine_path}")
        self.context = self.engine.create_execution_context()
        _, self.stream = cudart.cudaStreamCreate()
        self.backend = "tensorrt"

    def run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cudart = self._cudart
        x = np.ascontiguousarray(frames, dtype=np.float32)
        self.context.set_input_shape("frames", x.shape)
        bufs, outs = [], {}
        try:
            for name in ("frames", "tokens", "probs"):
                shape = tuple(self.context.get_tensor_shape(name))
                host = x if name == "frames" else np.empty(shape, np.float32)
                _, dev = cudart.cudaMalloc(host.nbytes)
                bufs.append(dev)
                self.context.set_tensor_address(name, dev)
                if name == "frames":
                    cudart.cudaMemcpyAsync(dev, host.ctypes.data, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream)
                else:
                    outs[name] = (host, dev)
            self.context.execute_async_v3(self.stream)
            for host, dev in outs.values():
                cudart.cudaMemcpyAsync(host.ctypes.data, dev, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream)
            cudart.cudaStreamSynchronize(self.stream)
        finally:
            for dev in bufs:
                cudart.cudaFree(dev)
        return outs["tokens"][0], outs["probs"][0]


def _gpu_present() -> bool:
    try:
        from cuda import cudart
    except ImportError:
        return False
    err, n = cudart.cudaGetDeviceCount()
    return int(err) == 0 and n > 0


def open_runner(onnx_path: Path, engine_path: Path | None, backend: Backend | str, threads: int = 1) -> Runner:
    """The best runner `backend` allows; logs what was chosen and why."""
    b = Backend(backend)
    if b in (Backend.AUTO, Backend.TENSORRT):
        why = _trt_unavailable(engine_path)
        if why is None:
            log.info("encoder backend: TensorRT engine %s", engine_path)
            return TrtRunner(engine_path)  # type: ignore[arg-type]
        log.info("encoder backend: no TensorRT engine (%s)", why)
    if b in (Backend.AUTO, Backend.TENSORRT, Backend.CUDA):
        import onnxruntime as ort

        wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if b != Backend.CUDA else ["CUDAExecutionProvider"]
        offered = [p for p in wanted if p in ort.get_available_providers()]
        if offered:
            r = OrtRunner(onnx_path, offered + ["CPUExecutionProvider"], threads)
            if r.backend != "ort:CPUExecutionProvider":
                log.info("encoder backend: %s (session providers %s)", r.backend, r.session.get_providers())
                return r
            log.info("encoder backend: %s offered but the session fell back to CPU (no usable GPU)", offered)
        else:
            log.info("encoder backend: onnxruntime has no GPU execution provider")
        if b != Backend.AUTO:
            raise UsageError(f"encoder backend {b.value!r} requested but not usable on this machine")
    r = OrtRunner(onnx_path, ["CPUExecutionProvider"], threads)
    log.info("encoder backend: %s (%s)", r.backend, onnx_path.name)
    return r


def _trt_unavailable(engine_path: Path | None) -> str | None:
    """None if a TensorRT engine can run here, else the reason it cannot."""
    if engine_path is None:  # the manifest names none: engines are built on the target device
        return "no engine file built for this model (python export/build_engines.py --engines-only on the device)"
    if not engine_path.exists():
        return f"engine file {engine_path} missing"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt not installed"
    if not _gpu_present():
        return "no CUDA GPU (or cuda-python missing)"
    return None
