"""Cue encoders: de-identified audio / pose -> tokens in the LLM's embedding space.

`features` is shared by training (export/) and runtime; `backend` picks TensorRT,
ONNX Runtime GPU providers or CPU; `runtime` has `AudioEncoder` and `BodyEncoder`.
"""

from edge_app.encoders.backend import Backend
from edge_app.encoders.runtime import AudioEncoder, BodyEncoder, EncoderOptions, EncoderOutput

__all__ = ["AudioEncoder", "Backend", "BodyEncoder", "EncoderOptions", "EncoderOutput"]
