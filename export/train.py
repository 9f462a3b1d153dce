"""Minimal trainer for `CueEncoder` (nanoGPT-style: one loop, early stopping on validation).

Batches are equal-length random crops (short sequences edge-padded), so the model
never needs a padding mask; evaluation runs each full sequence on its own, exactly
as the runtime does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from tqdm import tqdm

from edge_app.encoders.features import AUDIO_DIM, N_MELS, PROSODY_DIM
from edge_app.records import LABELS
from export.models import CueEncoder, EmbeddingHead, EncoderConfig, FusedEncoder


def crop_batch(xs: Sequence[np.ndarray], idx: np.ndarray, L: int, rng: np.random.Generator) -> torch.Tensor:
    out = np.empty((len(idx), L, xs[0].shape[1]), np.float32)
    for j, i in enumerate(idx):
        x = xs[i]
        if len(x) >= L:
            s = int(rng.integers(0, len(x) - L + 1))
            out[j] = x[s : s + L]
        else:
            out[j] = np.pad(x, ((0, L - len(x)), (0, 0)), mode="edge")
    return torch.from_numpy(out)


def spec_augment(x: torch.Tensor, rng: np.random.Generator, n_mel: int) -> torch.Tensor:
    """Frequency (mel bands only) and time masks, a la SpecAugment."""
    x = x.clone()
    B, T, _ = x.shape
    for b in range(B):
        f = int(rng.integers(0, 10))
        f0 = int(rng.integers(0, n_mel - f + 1))
        x[b, :, f0 : f0 + f] = 0.0
        for _ in range(2):
            t = int(rng.integers(0, max(1, T // 10)))
            t0 = int(rng.integers(0, T - t + 1))
            x[b, t0 : t0 + t, :n_mel] = 0.0
    return x


@torch.no_grad()
def predict(model: CueEncoder, xs: Sequence[np.ndarray]) -> np.ndarray:
    """(N, n_classes) probabilities, one full sequence at a time."""
    model.eval()
    return np.stack([torch.softmax(model(torch.from_numpy(x)[None])[1], -1)[0].numpy() for x in xs])


# the 4-class task: the labels that both RAVDESS and the motion capture have
FOUR = [LABELS.index(x) for x in ("neutral", "happy", "sad", "angry")]


def scores(y: np.ndarray, p: np.ndarray, subset: Sequence[int] | None = None) -> dict[str, float]:
    """Accuracy and macro-F1; with `subset`, only those classes, predicted among them."""
    if subset is not None:
        keep = np.isin(y, subset)
        y, p = y[keep], p[keep][:, subset]
        pred = np.asarray(subset)[p.argmax(1)]
    else:
        pred = p.argmax(1)
    return {"accuracy": float(accuracy_score(y, pred)), "macro_f1": float(f1_score(y, pred, average="macro")), "n": len(y)}


def train_encoder(
    cfg: EncoderConfig,
    train_x: Sequence[np.ndarray],
    train_y: np.ndarray,
    val_x: Sequence[np.ndarray],
    val_y: np.ndarray,
    *,
    crop: int,
    epochs: int,
    batch: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    aux_y: np.ndarray | None = None,
    aux_weight: float = 0.3,
    augment: Callable[[torch.Tensor, np.random.Generator], torch.Tensor] | None = None,
    patience: int = 8,
    keep_best: bool = True,
    desc: str = "train",
) -> tuple[CueEncoder, list[dict]]:
    """Train; keep the weights of the best validation macro-F1 (ties: later is not better),
    or with keep_best=False the last epoch's (when validation is too small to select on)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CueEncoder(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    labelled = train_y >= 0
    counts = np.bincount(train_y[labelled], minlength=cfg.n_classes).astype(np.float32)
    weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / cfg.n_classes)
    steps = epochs * math.ceil(len(train_x) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    best, best_state, history, bad = -1.0, None, [], 0
    bar = tqdm(range(epochs), desc=desc)
    for ep in bar:
        model.train()
        order = rng.permutation(len(train_x))
        tot = 0.0
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            xb = crop_batch(train_x, idx, crop, rng)
            if augment is not None:
                xb = augment(xb, rng)
            yb = torch.from_numpy(train_y[idx]).long()
            _, logits, aux = model(xb)
            loss = F.cross_entropy(logits, yb, weight=weight, ignore_index=-1, label_smoothing=0.1)
            if aux is not None and aux_y is not None:
                loss = loss + aux_weight * F.cross_entropy(aux, torch.from_numpy(aux_y[idx]).long())
            if not torch.isfinite(loss):  # a batch with no emotion label at all
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(idx)
        v = scores(val_y, predict(model, val_x))
        history.append({"epoch": ep, "loss": tot / len(train_x), **{f"val_{k}": x for k, x in v.items()}})
        bar.set_postfix(loss=f"{tot / len(train_x):.3f}", val_acc=f"{v['accuracy']:.3f}", val_f1=f"{v['macro_f1']:.3f}")
        if v["macro_f1"] > best:
            best, best_state, bad = v["macro_f1"], copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    if keep_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, history


def train_audio_encoder(
    train_x: Sequence[np.ndarray], train_y: np.ndarray, val_x: Sequence[np.ndarray], val_y: np.ndarray,
    *, epochs: int, seed: int, desc: str, in_dim: int | None = None,
) -> tuple[CueEncoder, list[dict]]:
    """The audio encoders' recipe, one place for the window encoder, the voice session head
    (same architecture on session-relative windows) and the benchmarks that retrain them.
    `in_dim`: the feature channels the convolutions read (default: log-mel + prosody,
    PROSODY_DIM; the speech-embedding channels go to `fuse_embedding_head` instead: fed to
    the convolutions they gained little on validation, benchmarks/results/audio_training_data.md)."""
    cfg = EncoderConfig(in_dim=in_dim or PROSODY_DIM, n_classes=len(LABELS), d=96, k_tokens=4, downsample=2, dropout=0.3)
    return train_encoder(
        cfg, train_x, train_y, val_x, val_y, crop=200, epochs=epochs, batch=32, lr=2e-3, seed=seed,
        augment=lambda x, rng: spec_augment(x, rng, N_MELS), patience=8, desc=desc,
    )  # fmt: skip


FUSION_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
HEAD_C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)


def pooled_embedding(xs: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 192): mean and std over time of each sequence's speech-embedding channels
    (what `EmbeddingHead` computes inside the graph)."""
    e = [x[:, PROSODY_DIM:AUDIO_DIM].astype(np.float64) for x in xs]
    return np.stack([np.concatenate([a.mean(0), a.std(0)]) for a in e]).astype(np.float32)


def fit_logistic(xt: np.ndarray, ty: np.ndarray, xv: np.ndarray, vy: np.ndarray, head: torch.nn.Module) -> dict:
    """Logistic regression on standardised `xt`, its C chosen on validation macro-F1
    (HEAD_C_GRID), copied into `head` (buffers `mean`, `std` and a `linear` layer, so
    the ONNX graph standardises as training did)."""
    from sklearn.linear_model import LogisticRegression

    return _fit_linear(lambda C: LogisticRegression(C=C, max_iter=3000), HEAD_C_GRID, "C", xt, ty, xv, vy, head)


# shrinkage of LDA's shared covariance towards its diagonal ("auto": Ledoit-Wolf's estimate)
LDA_SHRINKAGE_GRID = ("auto", 0.3, 0.5, 0.7, 0.9)


def fit_lda(xt: np.ndarray, ty: np.ndarray, xv: np.ndarray, vy: np.ndarray, head: torch.nn.Module) -> dict:
    """Shrinkage linear discriminant analysis on standardised `xt` (one covariance shared by
    the classes, shrunk towards its diagonal: many more inputs than independent examples),
    its shrinkage chosen on validation macro-F1 (LDA_SHRINKAGE_GRID), copied into `head` as
    `fit_logistic` does: with more than two classes its probabilities are the softmax of a
    linear function, so the same graph computes them."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    return _fit_linear(lambda s: LinearDiscriminantAnalysis(solver="lsqr", shrinkage=s), LDA_SHRINKAGE_GRID, "shrinkage",
                       xt, ty, xv, vy, head)  # fmt: skip


def _fit_linear(make, grid, name: str, xt: np.ndarray, ty: np.ndarray, xv: np.ndarray, vy: np.ndarray,
                head: torch.nn.Module) -> dict:
    """`make(h)` for each h of `grid` fitted on standardised `xt`; the best on validation
    macro-F1 goes into `head`; returns {name: h, val_macro_f1, n_train}."""
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    best = None
    for h in grid:
        model = make(h).fit((xt - mu) / sd, ty)
        f1 = scores(vy, model.predict_proba((xv - mu) / sd))["macro_f1"]
        if best is None or f1 > best[0]:
            best = (f1, h, model)
    f1, h, model = best
    copy_logistic(model, mu, sd, head)
    head.eval()
    return {name: h, "val_macro_f1": round(float(f1), 4), "n_train": len(xt)}


def copy_logistic(lr: object, mu: np.ndarray, sd: np.ndarray, head: torch.nn.Module) -> None:
    """A fitted multiclass sklearn linear classifier whose probabilities are the softmax of
    its decision function (LogisticRegression, LinearDiscriminantAnalysis), fitted on
    (x - mu) / sd, into `head`: buffers `mean`,
    `std` and a `linear` layer; a class missing from training gets bias -30 (never predicted)."""
    n_classes = head.linear.out_features
    coef = np.zeros((n_classes, len(mu)), np.float32)
    bias = np.full(n_classes, -30.0, np.float32)
    coef[lr.classes_], bias[lr.classes_] = lr.coef_, lr.intercept_
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(mu.astype(np.float32)))
        head.std.copy_(torch.from_numpy(sd.astype(np.float32)))
        head.linear.weight.copy_(torch.from_numpy(coef))
        head.linear.bias.copy_(torch.from_numpy(bias))


def fit_embedding_head(tx: Sequence[np.ndarray], ty: np.ndarray, vx: Sequence[np.ndarray], vy: np.ndarray,
                       n_classes: int) -> tuple[EmbeddingHead, dict]:
    """Logistic regression on `pooled_embedding`, its C chosen on validation macro-F1."""
    head = EmbeddingHead(PROSODY_DIM, AUDIO_DIM - PROSODY_DIM, n_classes)
    return head, fit_logistic(pooled_embedding(tx), ty, pooled_embedding(vx), vy, head)


def choose_fusion_weight(base_logp: np.ndarray, head_logp: np.ndarray, vy: np.ndarray) -> tuple[float, dict]:
    """The weight w of a head's log-probs added to a model's, chosen on validation by
    macro-F1 (FUSION_GRID; within 0.005 of the best, the smaller weight: 0 keeps the model
    alone, so the fusion is never worse than it on validation); and the grid's scores."""
    grid = {w: scores(vy, base_logp + w * head_logp) for w in FUSION_GRID}
    top = max(r["macro_f1"] for r in grid.values())
    w = min(w for w, r in grid.items() if r["macro_f1"] >= top - 0.005)
    return w, {str(k): {m: round(v[m], 4) for m in ("accuracy", "macro_f1")} for k, v in grid.items()}


@torch.no_grad()
def fuse_embedding_head(model: CueEncoder, tx: Sequence[np.ndarray], ty: np.ndarray, vx: Sequence[np.ndarray],
                        vy: np.ndarray) -> tuple[FusedEncoder, dict]:
    """Fit the speech-embedding head on the training windows and choose its fusion weight
    on validation (`choose_fusion_weight`)."""
    head, info = fit_embedding_head(tx, ty, vx, vy, model.cfg.n_classes)
    enc_logp = np.log(predict(model, vx) + 1e-9)
    head_logp = np.stack([head(torch.from_numpy(x)[None])[0].numpy() for x in vx])
    w, grid = choose_fusion_weight(enc_logp, head_logp, vy)
    info.update({"weight": w, "grid_val": grid})
    return FusedEncoder(model, head, w).eval(), info
