"""The model's own input-embedding table, read from its GGUF file (no llama.cpp needed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_log = logging.getLogger("deemo_edge.llm")


class TokenEmbeddings:
    """Rows of the GGUF's input embedding table (`token_embd.weight`), dequantised on demand.

    Lets a window's text go to llama.cpp as vectors, in the same batch as the injected
    encoder vectors: one llama_decode call per window instead of one per text/vector
    segment. Each call costs about one full pass over the weights, so on a 2-core CPU
    this cut window evaluation by ~40 % (bench_llm.py). The file is memory-mapped; only
    the rows looked up are read. None from `load` when the table or its quantisation
    type cannot be read here (the caller then keeps one call per segment).
    """

    TENSOR = "token_embd.weight"

    def __init__(self, data: np.ndarray, qtype: object, n_embd: int) -> None:
        self._data = data
        self._qtype = qtype
        self.n_embd = n_embd

    @classmethod
    def load(cls, path: Path, n_embd: int) -> TokenEmbeddings | None:
        try:
            import gguf
        except ImportError:
            _log.info("gguf package missing: window text goes to llama.cpp as tokens")
            return None
        try:
            reader = gguf.GGUFReader(str(path))
            tensor = next((t for t in reader.tensors if t.name == cls.TENSOR), None)
        except (OSError, ValueError) as err:
            _log.info("cannot read %s from %s (%s): window text goes as tokens", cls.TENSOR, path, err)
            return None
        if tensor is None or int(tensor.shape[0]) != n_embd:
            return None
        table = cls(tensor.data, tensor.tensor_type, n_embd)
        try:
            table.rows([0])
        except (NotImplementedError, ValueError, TypeError) as err:  # an unsupported quant type
            _log.info("cannot dequantise %s (%s): window text goes as tokens", cls.TENSOR, err)
            return None
        return table

    def rows(self, tokens: Sequence[int]) -> np.ndarray:
        """(len(tokens), n_embd) float32: what llama.cpp's get_rows gives the first layer."""
        from gguf.quants import dequantize

        picked = self._data[np.asarray(tokens, dtype=np.int64)]
        return dequantize(picked, self._qtype).astype(np.float32).reshape(len(tokens), self.n_embd)
