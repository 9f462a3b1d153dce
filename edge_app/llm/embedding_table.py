"""The model's own input-embedding table, read from its GGUF file (no llama.cpp needed)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edge_app.llm.model import GGUF_HEADER, GGUF_MAGIC

_log = logging.getLogger("deemo_edge.llm")

# GGUF metadata value types (gguf.GGUFValueType): fixed sizes, 8 = string, 9 = array
_FIXED_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


class TensorLocation(NamedTuple):
    """Where one tensor's bytes are in a GGUF file."""

    dims: tuple[int, ...]  # GGUF order: dims[0] is the row length (n_embd for token_embd)
    qtype: int  # gguf.GGMLQuantizationType value
    offset: int  # absolute byte offset of its data


def locate_tensor(path: Path, name: str) -> TensorLocation | None:
    """Find a tensor in a little-endian GGUF (v2/v3) by walking its header, skipping metadata values.

    gguf.GGUFReader builds a numpy view for every metadata element; SmolLM2's tokenizer
    alone has ~100k of them, which took 8 s of a file's 30 s start-up on a 2-core CPU.
    Skipping them is a few hundred ms. None when the tensor is not there; ValueError when
    the file is not a GGUF this can read."""
    with open(path, "rb") as f:
        buf = f.read(1 << 20)
        pos = 0

        def need(n: int) -> None:
            nonlocal buf
            while pos + n > len(buf):
                more = f.read(max(1 << 20, n))
                if not more:
                    raise ValueError(f"{path.name}: truncated GGUF header")
                buf += more

        def unpack(fmt: str) -> tuple:
            nonlocal pos
            size = struct.calcsize(fmt)
            need(size)
            out = struct.unpack_from(fmt, buf, pos)
            pos += size
            return out

        def string() -> bytes:
            nonlocal pos
            (n,) = unpack("<Q")
            need(n)
            pos += n
            return buf[pos - n : pos]

        def skip_value(vtype: int) -> None:
            nonlocal pos
            if vtype in _FIXED_SIZE:
                need(_FIXED_SIZE[vtype])
                pos += _FIXED_SIZE[vtype]
            elif vtype == _STRING:
                string()
            elif vtype == _ARRAY:
                etype, count = unpack("<IQ")
                if etype in _FIXED_SIZE:
                    need(count * _FIXED_SIZE[etype])
                    pos += count * _FIXED_SIZE[etype]
                else:
                    for _ in range(count):
                        skip_value(etype)
            else:
                raise ValueError(f"{path.name}: unknown GGUF value type {vtype}")

        magic, version, n_tensors, n_kv = unpack(GGUF_HEADER.format)
        if magic != GGUF_MAGIC or version not in (2, 3):
            raise ValueError(f"{path.name}: not a little-endian GGUF v2/v3 file")
        alignment = 32  # GGUF_DEFAULT_ALIGNMENT
        for _ in range(n_kv):
            key = string()
            (vtype,) = unpack("<I")
            if key == b"general.alignment" and vtype == 4:
                (alignment,) = unpack("<I")
            else:
                skip_value(vtype)
        found = None
        for _ in range(n_tensors):
            tname = string()
            (n_dims,) = unpack("<I")
            dims = unpack(f"<{n_dims}Q")
            qtype, offset = unpack("<IQ")
            if tname == name.encode():
                found = (tuple(int(d) for d in dims), int(qtype), int(offset))
        if found is None:
            return None
        data_start = -(-pos // alignment) * alignment
        return TensorLocation(found[0], found[1], data_start + found[2])


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
            where = locate_tensor(Path(path), cls.TENSOR)
            if where is None or len(where.dims) != 2 or where.dims[0] != n_embd:
                return None
            qtype = gguf.GGMLQuantizationType(where.qtype)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
            if n_embd % block:
                raise ValueError(f"row of {n_embd} is not a multiple of {qtype.name}'s block of {block}")
            # bytes per row, as gguf's reader lays quantised data out: dequantize() takes them
            data = np.memmap(path, dtype=np.uint8, mode="r", offset=where.offset,
                             shape=(where.dims[1], n_embd // block * type_size))  # fmt: skip
        except (OSError, ValueError, KeyError) as err:
            _log.info("cannot read %s from %s (%s): window text goes as tokens", cls.TENSOR, path, err)
            return None
        table = cls(data, qtype, n_embd)
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
