"""The encoder's optional self-attention blocks (export/models.AttentionBlock, EncoderConfig.
attention_layers) and skeleton graph stem (GraphStem, graph_layers): what they add over the
convs, that they survive the checkpoint and the ONNX export on any window length, and that
checkpoints written before the fields existed still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from edge_app.encoders.features import BODY_DIM, BODY_JOINTS
from export import onnx_export
from export.models import (
    CueEncoder,
    EncoderConfig,
    ExportWrapper,
    GraphBlock,
    Projector,
    checkpoint,
    from_checkpoint,
    skeleton_adjacency,
)
from export.train import predict


def _encoder(attention_layers: int, seed: int = 0) -> CueEncoder:
    torch.manual_seed(seed)
    cfg = EncoderConfig(in_dim=12, n_classes=4, d=16, k_tokens=2, downsample=0, dilations=(1,), attention_layers=attention_layers)
    return CueEncoder(cfg).eval()


def _hidden(enc: CueEncoder, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return enc.blocks(enc.stem(x.transpose(1, 2)))  # (1, D, T): per frame, before pooling


def test_attention_lets_the_last_frame_see_the_first() -> None:
    # the stem (kernel 3) and one conv block (kernel 5, dilation 1) reach 3 frames each way:
    # without attention, frame 39 cannot feel a change at frame 0; with it, it must
    x = torch.randn(1, 40, 12)
    y = x.clone()
    y[0, 0] += 5.0
    conv_only, attended = _encoder(0), _encoder(2)
    assert torch.equal(_hidden(conv_only, x)[..., 10:], _hidden(conv_only, y)[..., 10:])
    assert (_hidden(attended, x)[..., -1] - _hidden(attended, y)[..., -1]).abs().max() > 1e-3


def test_attention_encoder_round_trips_and_exports_with_parity(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    enc = _encoder(2)
    xs = [rng.standard_normal((n, 12)).astype(np.float32) for n in (9, 40, 97)]  # dynamic time axis
    torch.save(checkpoint(enc), tmp_path / "a.pt")
    again = from_checkpoint(torch.load(tmp_path / "a.pt"))
    assert again.cfg.attention_layers == 2
    np.testing.assert_allclose(predict(again, xs), predict(enc, xs), atol=1e-6)
    wrapper = ExportWrapper(enc, Projector(16, 576)).eval()
    path = onnx_export.export_onnx(wrapper, 12, tmp_path / "att.onnx", 40, {"labels": "a,b,c,d"})
    par = onnx_export.parity(wrapper, path, xs)
    assert par["tokens_max_abs_diff"] < 1e-4 and par["probs_max_abs_diff"] < 1e-5, par


def test_a_checkpoint_from_before_attention_layers_loads_as_the_same_conv_encoder() -> None:
    enc = _encoder(0)
    ckpt = checkpoint(enc)
    # the fields a manifest's config written before 2026-12-07's architecture variants lacks
    for key in ("attention_layers", "heads", "graph_layers", "graph_channels"):
        del ckpt["config"][key]
    again = from_checkpoint(ckpt)
    x = np.random.default_rng(1).standard_normal((1, 30, 12)).astype(np.float32)
    assert again.cfg.attention_layers == 0
    np.testing.assert_array_equal(predict(again, list(x)), predict(enc, list(x)))


def test_skeleton_graph_stem_mixes_only_neighbouring_joints_and_exports(tmp_path: Path) -> None:
    adj = skeleton_adjacency()
    i = {j: k for k, j in enumerate(BODY_JOINTS)}
    assert torch.allclose(adj, adj.T) and adj[i[13], i[11]] > 0 and adj[i[13], i[15]] > 0  # elbow: shoulder, wrist
    assert adj[i[13], i[27]] == 0  # elbow and ankle are not neighbours
    block = GraphBlock(4, 0.0).eval()
    x = torch.zeros(1, 4, 1, len(BODY_JOINTS))  # one frame: the temporal conv sees only it
    x[0, :, 0, i[27]] = 1.0  # move the left ankle only
    with torch.no_grad():
        moved = (block(x) - block(torch.zeros_like(x))).abs().sum(dim=(0, 1, 2))
    assert moved[i[25]] > 0 and moved[i[29]] > 0  # its knee and heel feel it
    assert moved[i[13]] == 0 and moved[i[16]] == 0  # an elbow and a wrist do not, after one block
    torch.manual_seed(0)
    enc = CueEncoder(EncoderConfig(in_dim=BODY_DIM, n_classes=4, d=16, k_tokens=2, downsample=0, graph_layers=2)).eval()
    wrapper = ExportWrapper(enc, Projector(16, 576)).eval()
    path = onnx_export.export_onnx(wrapper, BODY_DIM, tmp_path / "graph.onnx", 40, {"labels": "a,b,c,d"})
    xs = [np.random.default_rng(n).standard_normal((n, BODY_DIM)).astype(np.float32) for n in (7, 40, 61)]
    par = onnx_export.parity(wrapper, path, xs)
    assert par["tokens_max_abs_diff"] < 1e-4 and par["probs_max_abs_diff"] < 1e-5, par
    with pytest.raises(ValueError, match="graph stem reads body features"):
        CueEncoder(EncoderConfig(in_dim=12, n_classes=4, graph_layers=1))  # audio-like input, strided
