"""The speech-embedding head and its fusion with the convolutional audio encoder (export/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from edge_app.encoders.features import AUDIO_DIM, PROSODY_DIM
from export.models import CueEncoder, EncoderConfig, FusedEncoder, checkpoint, from_checkpoint
from export.train import fit_embedding_head, fuse_embedding_head, pooled_embedding, predict


def _windows(n: int, rng: np.random.Generator, labels: np.ndarray) -> list[np.ndarray]:
    """Random feature windows whose embedding channels carry the label (a shifted mean)."""
    out = []
    for y in labels:
        x = rng.standard_normal((int(rng.integers(60, 140)), AUDIO_DIM)).astype(np.float32)
        x[:, PROSODY_DIM + int(y)] += 3.0
        out.append(x)
    return out


def test_head_pools_like_numpy_and_learns_the_embedding_channels() -> None:
    rng = np.random.default_rng(0)
    ty, vy = np.arange(160) % 4, np.arange(40) % 4
    tx, vx = _windows(160, rng, ty), _windows(40, rng, vy)
    head, info = fit_embedding_head(tx, ty, vx, vy, n_classes=8)
    with torch.no_grad():
        logp = np.stack([head(torch.from_numpy(x)[None])[0].numpy() for x in vx])
        # the graph's pooling is pooled_embedding's
        e = torch.from_numpy(vx[0])[None, :, PROSODY_DIM:]
        pooled = torch.cat([e.mean(1), e.std(1, unbiased=False)], -1)[0].numpy()
    np.testing.assert_allclose(pooled, pooled_embedding(vx[:1])[0], atol=1e-5)
    assert np.allclose(np.exp(logp).sum(1), 1, atol=1e-5)
    assert (logp.argmax(1) == vy).mean() > 0.9 and info["val_macro_f1"] > 0.9
    assert np.exp(logp[:, 4:]).max() < 1e-6  # classes never seen in training are never predicted


def test_fusion_weight_is_chosen_on_validation_and_zero_is_the_encoder_alone(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ty, vy = np.arange(160) % 4, np.arange(40) % 4
    tx, vx = _windows(160, rng, ty), _windows(40, rng, vy)
    torch.manual_seed(0)
    enc = CueEncoder(EncoderConfig(in_dim=PROSODY_DIM, n_classes=8, d=16, k_tokens=2)).eval()  # untrained: chance
    fused, info = fuse_embedding_head(enc, tx, ty, vx, vy)
    assert info["weight"] > 0  # the head is far better than an untrained encoder on validation
    assert fused.cfg.in_dim == AUDIO_DIM and fused.cfg.d == 16
    assert (predict(fused, vx).argmax(1) == vy).mean() > 0.9
    # weight 0 reproduces the encoder; tokens are always the encoder's
    alone = FusedEncoder(enc, fused.head, 0.0).eval()
    np.testing.assert_allclose(predict(alone, vx), predict(enc, vx), atol=1e-6)
    with torch.no_grad():
        x = torch.from_numpy(vx[0])[None]
        assert torch.equal(fused.tokens(x), enc.tokens(x))
    # the checkpoint rebuilds the same fused model (stage 2 reloads it from there)
    torch.save(checkpoint(fused), tmp_path / "m.pt")
    again = from_checkpoint(torch.load(tmp_path / "m.pt"))
    assert isinstance(again, FusedEncoder) and again.weight == fused.weight
    np.testing.assert_allclose(predict(again, vx), predict(fused, vx), atol=1e-6)


def test_feature_cache_key_follows_code_not_prose() -> None:
    """A docstring or comment edit keeps the cached features (about 12 min to rebuild);
    a code edit does not."""
    from export.audio_data import code_only

    src = 'def f(x):\n    """Doc."""\n    return x + 1  # note\n'
    assert code_only(src) == code_only('def f(x):\n    """Other words."""\n    # more\n    return x + 1\n')
    assert code_only(src) != code_only('def f(x):\n    """Doc."""\n    return x + 2\n')
    assert code_only('"""Module."""\nX = 1\n') == code_only("X = 1\n")


def test_lda_states_head_computes_sklearns_probabilities_in_one_linear_layer() -> None:
    """The states head is shrinkage LDA (export.train.fit_lda) copied into StatesHead's
    standardise -> linear -> log-softmax graph: for 8 classes that graph gives exactly
    sklearn's probabilities, and the shrinkage is the validation choice."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from export.models import StatesHead
    from export.train import LDA_SHRINKAGE_GRID, fit_lda, scores

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 300)) * 0.3
    ty, vy = np.arange(400) % 8, np.arange(160) % 8
    xt = (centres[ty] + rng.standard_normal((400, 300))).astype(np.float32) * 5 + 2  # not standardised
    xv = (centres[vy] + rng.standard_normal((160, 300))).astype(np.float32) * 5 + 2
    head = StatesHead(300, 8)
    info = fit_lda(xt, ty, xv, vy, head)
    assert info["shrinkage"] in LDA_SHRINKAGE_GRID and info["n_train"] == 400
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    best = max(LDA_SHRINKAGE_GRID, key=lambda s: scores(vy, LinearDiscriminantAnalysis(solver="lsqr", shrinkage=s)
                                                         .fit((xt - mu) / sd, ty).predict_proba((xv - mu) / sd))["macro_f1"])  # fmt: skip
    assert info["shrinkage"] == best
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=best).fit((xt - mu) / sd, ty)
    with torch.no_grad():
        p = torch.exp(head(torch.from_numpy(xv))).numpy()
    np.testing.assert_allclose(p, lda.predict_proba((xv - mu) / sd), atol=1e-5)
    assert info["val_macro_f1"] == round(scores(vy, p)["macro_f1"], 4) and scores(vy, p)["accuracy"] > 0.5
