"""The body encoder's seed ensemble (export/models.EnsembleEncoder): what it averages, what it
keeps from its first member, and that it survives the checkpoint and the ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from export import onnx_export
from export.models import (
    CueEncoder,
    EncoderConfig,
    EnsembleEncoder,
    ExportWrapper,
    Projector,
    checkpoint,
    from_checkpoint,
)
from export.train import predict


def _members(n: int) -> list[CueEncoder]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)  # untrained members with different weights answer differently
        out.append(CueEncoder(EncoderConfig(in_dim=12, n_classes=4, d=16, k_tokens=2, n_aux=3)).eval())
    return out


def test_ensemble_averages_member_probabilities_and_keeps_the_first_members_tokens(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((int(n), 12)).astype(np.float32) for n in rng.integers(9, 47, 6)]
    members = _members(3)
    ens = EnsembleEncoder(members).eval()
    each = [predict(m, xs) for m in members]
    assert not np.allclose(each[0], each[1], atol=1e-3)  # a real average, not of copies
    np.testing.assert_allclose(predict(ens, xs), np.mean(each, axis=0), atol=1e-6)
    with torch.no_grad():
        x = torch.from_numpy(xs[0])[None]
        assert torch.equal(ens.tokens(x), members[0].tokens(x))
        assert torch.equal(ens(x)[0], members[0](x)[0]) and torch.equal(ens(x)[2], members[0](x)[2])
    assert ens.cfg is members[0].cfg
    torch.save(checkpoint(ens), tmp_path / "e.pt")
    again = from_checkpoint(torch.load(tmp_path / "e.pt"))
    assert isinstance(again, EnsembleEncoder) and len(again.members) == 3
    np.testing.assert_allclose(predict(again, xs), predict(ens, xs), atol=1e-6)


def test_ensemble_exports_to_onnx_with_parity(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    ens = EnsembleEncoder(_members(2)).eval()
    wrapper = ExportWrapper(ens, Projector(16, 576)).eval()
    path = onnx_export.export_onnx(wrapper, 12, tmp_path / "ens.onnx", 30, {"labels": "a,b,c,d"})
    xs = [rng.standard_normal((n, 12)).astype(np.float32) for n in (9, 30, 47)]  # dynamic time axis
    par = onnx_export.parity(wrapper, path, xs)
    assert par["tokens_max_abs_diff"] < 1e-4 and par["probs_max_abs_diff"] < 1e-5, par
    p = onnx_export.run_onnx(path, xs)
    np.testing.assert_allclose(p, predict(ens, xs), atol=1e-5)
    assert np.allclose(p.sum(1), 1, atol=1e-5)
