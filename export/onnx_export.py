"""PyTorch encoder -> ONNX (dynamic time axis) -> parity check -> static INT8 (ORT)
-> TensorRT fp16 / INT8 engines (on a machine with `tensorrt` and a GPU, e.g. Jetson).

Calibration data are cue tensors (feature frames) kept in calibration/<name>.npz,
never raw media.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from export.models import ExportWrapper

OPSET = 17


def export_onnx(wrapper: ExportWrapper, in_dim: int, path: Path, example_len: int, meta: dict[str, str]) -> Path:
    """Write `path` with input `frames` (1, T, F), outputs `tokens` (K, 576) and `probs`."""
    import onnx

    wrapper.eval()
    x = torch.randn(1, example_len, in_dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        # the TorchScript exporter: one self-contained file, plain dynamic_axes
        torch.onnx.export(
            wrapper, (x,), str(path), dynamo=False, opset_version=OPSET,
            input_names=["frames"], output_names=["tokens", "probs"],
            dynamic_axes={"frames": {1: "time"}}, do_constant_folding=True,
        )  # fmt: skip
    model = onnx.load(str(path))
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def parity(wrapper: ExportWrapper, path: Path, inputs: Sequence[np.ndarray]) -> dict[str, float]:
    """Max |ONNX - PyTorch| over tokens and probs, for inputs of several lengths."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tok_d = prob_d = 0.0
    wrapper.eval()
    for x in inputs:
        with torch.no_grad():
            t_ref, p_ref = (a.numpy() for a in wrapper(torch.from_numpy(x[None])))
        t, p = sess.run(["tokens", "probs"], {"frames": x[None].astype(np.float32)})
        tok_d = max(tok_d, float(np.abs(t - t_ref).max()))
        prob_d = max(prob_d, float(np.abs(p - p_ref).max()))
    return {"tokens_max_abs_diff": tok_d, "probs_max_abs_diff": prob_d, "n_inputs": len(inputs)}


def save_calibration(path: Path, feats: Sequence[np.ndarray]) -> Path:
    """Feature tensors (float16) used by ORT static quantisation and TensorRT INT8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{f"x{i:04d}": f.astype(np.float16) for i, f in enumerate(feats)})
    return path


def load_calibration(path: Path) -> list[np.ndarray]:
    with np.load(path) as z:
        return [z[k].astype(np.float32) for k in sorted(z.files)]


def quantize_int8(fp32: Path, out: Path, calib: Path) -> Path:
    """Static QDQ INT8 (per-channel weights) calibrated on calibration/ features."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"frames": x[None]} for x in load_calibration(calib)])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    quantize_static(
        str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return out


def time_onnx(path: Path, x: np.ndarray, runs: int = 30, threads: int = 1) -> float:
    """Median latency (ms) of one window on CPU."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {"frames": x[None].astype(np.float32)}
    sess.run(None, feed)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def run_onnx(path: Path, xs: Sequence[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.stack([sess.run(["probs"], {"frames": x[None].astype(np.float32)})[0] for x in xs])


# --- TensorRT (Jetson / any NVIDIA GPU) --------------------------------------------


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    in_dim: int,
    t_min: int,
    t_opt: int,
    t_max: int,
    fp16: bool = True,
    int8_calib: Path | None = None,
    workspace_mb: int = 512,
) -> Path:
    """Serialise a TensorRT engine with a dynamic-time optimisation profile.

    fp16 always where the GPU supports it; INT8 additionally when `int8_calib` is
    given (entropy calibration over the calibration/ features, cache next to the engine).
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape("frames", (1, t_min, in_dim), (1, t_opt, in_dim), (1, t_max, in_dim))
    config.add_optimization_profile(profile)
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8_calib is not None:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = EntropyCalibrator(int8_calib, engine_path.with_suffix(".calib"), t_opt)
        config.set_calibration_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT engine build failed for {onnx_path}")
    engine_path.write_bytes(bytes(blob))
    return engine_path


def _entropy_calibrator_base() -> type:
    import tensorrt as trt

    return trt.IInt8EntropyCalibrator2


class EntropyCalibrator:
    """IInt8EntropyCalibrator2 over calibration/*.npz; the class is created lazily so
    this module imports without TensorRT."""

    def __new__(cls, calib: Path, cache: Path, length: int):  # type: ignore[misc]
        base = _entropy_calibrator_base()

        class _Calib(base):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                base.__init__(self)
                from cuda import cudart

                self.cudart = cudart
                xs = load_calibration(calib)
                # fixed-length crops / edge pads: calibration batches have one shape
                self.batches = [
                    np.ascontiguousarray(
                        (x[:length] if len(x) >= length else np.pad(x, ((0, length - len(x)), (0, 0)), mode="edge"))[None],
                        dtype=np.float32,
                    )
                    for x in xs
                ]
                self.i = 0
                _, self.dev = cudart.cudaMalloc(self.batches[0].nbytes)

            def get_batch_size(self) -> int:
                return 1

            def get_batch(self, names: list[str]) -> list[int] | None:
                if self.i >= len(self.batches):
                    return None
                b = self.batches[self.i]
                self.i += 1
                self.cudart.cudaMemcpy(self.dev, b.ctypes.data, b.nbytes, self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
                return [int(self.dev)]

            def read_calibration_cache(self) -> bytes | None:
                return cache.read_bytes() if cache.exists() else None

            def write_calibration_cache(self, data: bytes) -> None:
                cache.write_bytes(bytes(data))

        return _Calib()


def states_logp(path: Path, states: np.ndarray) -> np.ndarray:
    """(N, C) log-probabilities of the exported Whisper-states head."""
    import onnxruntime as ort

    if len(states) == 0:
        return np.zeros((0, 0), np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logp"], {"states": np.asarray(states, np.float32)})[0]  # exported with a batch axis


def runtime_probs(models: Path, name: str, probs: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Probabilities of manifest model `name` ("audio" or "audio_session") as the runtime
    gives them: fused with the Whisper-states head (export/states_head.py) when one is
    registered, else unchanged. `states`: row for row with `probs`."""
    from edge_app.encoders.runtime import fuse_states

    manifest = json.loads((models / "manifest.json").read_text())
    sh = manifest["models"]["audio"].get("states_head")
    if not sh or len(probs) == 0:
        return probs
    w = sh["weight"] if name == "audio" else manifest["models"].get(name, {}).get("states_weight", 0.0)
    return fuse_states(probs, states_logp(models / sh["onnx"], states), w)
