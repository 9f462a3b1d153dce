"""Fine-tune the Whisper encoder on de-identified emotional speech with LoRA (an experiment).

(Measured on Whisper tiny.en, the encoder until 2026-12-01; the runtime reads Whisper base now
and this tool adapts whichever edge_app.encoders.whisper loads.)

Why: the frozen encoder's pooled states (edge_app/encoders/whisper.py) carry emotion, but
de-identification costs them about ten points (benchmarks/results/pretrained_audio.md):
Whisper never heard a McAdams-warped, pitch-normalised voice. Low-rank adapters on every
attention and feed-forward matrix, trained on the training actors' de-identified copies
(the same audio as the feature cache: log-mels cached by export/audio_data.build_mel_cache),
should let the encoder adapt to that voice while what it learnt stays in the frozen weights.

Measured (benchmarks/results/whisper_lora.md): it does not. On validation actors 19-20 the
product's states head refitted on the adapted states is worse on clips than on the frozen
states; 18 training speakers saying two sentences are too few to adapt even 0.7 M weights
without losing what the pretrained encoder generalises with. So the runtime keeps the frozen
encoder and nothing here is in the build chain; the tool stays to measure new recipes
(rank, learning rate, epochs) the same way, and `edge_app.encoders.whisper.load_encoder`
can merge adapters (W + B A) once a recipe wins on validation.

The classifier trained here only guides the adapters; it starts as the logistic regression
on the frozen states. What is scored is what the product would use: export/states_head's
logistic regression refitted on the adapted states.

    python -m export.whisper_tune                       # 3 epochs, rank 8, lr 5e-4: appends to the report
    python -m export.whisper_tune --lr 1e-4 --epochs 2  # another recipe
    python -m export.whisper_tune --quick               # two train actors, one epoch (checks the chain)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/whisper_tune.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_app.encoders import whisper
from edge_app.records import LABELS
from export.models import StatesHead
from export.train import copy_logistic, fit_logistic, scores

ROOT = Path(__file__).resolve().parents[1]
FILE = "whisper_lora.npz"
# the encoder's matrices that get an adapter, per layer (CTranslate2 names)
TARGETS = ("self_attention/linear_0", "self_attention/linear_1", "ffn/linear_0", "ffn/linear_1")


class LoRALinear(nn.Module):
    """A frozen linear map plus a trainable low-rank update, scaled by alpha / rank."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, rank: int, alpha: float) -> None:
        super().__init__()
        self.register_buffer("weight", torch.from_numpy(weight))
        self.register_buffer("bias", torch.from_numpy(bias))
        self.a = nn.Parameter(torch.randn(rank, weight.shape[1]) / math.sqrt(weight.shape[1]))
        self.b = nn.Parameter(torch.zeros(weight.shape[0], rank))  # starts as the pretrained map
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.a), self.b) * self.scale


class AdaptedEncoder(nn.Module):
    """edge_app.encoders.whisper.WhisperEncoder in PyTorch, batched (zero-padded mels with
    their lengths), with LoRA on every layer's TARGETS, and a linear classifier on the
    pooled states. Padding is masked so each clip's states equal the unpadded encoder's."""

    def __init__(self, w: dict[str, np.ndarray], rank: int = 8, alpha: float = 16.0) -> None:
        super().__init__()
        self.w = {k: torch.from_numpy(v) for k, v in w.items() if not k.startswith("layer_")}
        self.n_layers = whisper.DEPTH  # the layers the states head reads (the rest never run)
        self.normed_last = whisper.DEPTH == whisper.WhisperEncoder(w).n_layers
        self.lora = nn.ModuleDict({
            _key(i, t): LoRALinear(w[f"layer_{i}/{t}/weight"], w[f"layer_{i}/{t}/bias"], rank, alpha)
            for i in range(self.n_layers) for t in TARGETS
        })  # fmt: skip
        self.norms = {k: torch.from_numpy(v) for k, v in w.items() if "layer_norm" in k}
        self.guide = StatesHead(whisper.POOLED_DIM, len(LABELS))  # the classifier that guides the adapters
        self.drop = nn.Dropout(0.1)

    def pooled(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, 80, T) zero-padded log-mels, (B,) frame counts -> (B, POOLED_DIM)."""
        w = self.w
        t_mask = (torch.arange(mel.shape[2])[None] < lengths[:, None]).float()  # (B, T)
        x = F.gelu(F.conv1d(mel, w["conv1/weight"], w["conv1/bias"], padding=1)) * t_mask[:, None]
        x = F.gelu(F.conv1d(x, w["conv2/weight"], w["conv2/bias"], stride=2, padding=1)).transpose(1, 2)
        n = (lengths - 1) // 2 + 1
        mask = torch.arange(x.shape[1])[None] < n[:, None]  # (B, T')
        x = x + w["position_encodings/encodings"][: x.shape[1]]
        states = []
        for i in range(self.n_layers):
            a, f = f"layer_{i}/self_attention/", f"layer_{i}/ffn/"
            h = F.layer_norm(x, (whisper.WIDTH,), self.norms[a + "layer_norm/gamma"], self.norms[a + "layer_norm/beta"])
            q, k, v = self.lora[_key(i, "self_attention/linear_0")](h).unflatten(-1, (3, whisper.N_HEADS, -1)).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
            x = x + self.lora[_key(i, "self_attention/linear_1")](o.transpose(1, 2).flatten(2))
            h = F.layer_norm(x, (whisper.WIDTH,), self.norms[f + "layer_norm/gamma"], self.norms[f + "layer_norm/beta"])
            x = x + self.lora[_key(i, "ffn/linear_1")](self.drop(F.gelu(self.lora[_key(i, "ffn/linear_0")](h))))
            states.append(x if i < self.n_layers - 1 or not self.normed_last else
                          F.layer_norm(x, (whisper.WIDTH,), self.norms["layer_norm/gamma"], self.norms["layer_norm/beta"]))
        m = mask[..., None].float()
        cnt = m.sum(1)
        out = []
        for s in states:
            mu = (s * m).sum(1) / cnt
            out += [mu, (((s - mu[:, None]) ** 2 * m).sum(1) / cnt).sqrt()]
        return torch.cat(out, dim=1)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits of the standardised pooled states (their spread differs by orders
        of magnitude between layers; `init_head` sets the statistics)."""
        return self.logits(self.drop(self.standard(self.pooled(mel, lengths))))

    def standard(self, pooled: torch.Tensor) -> torch.Tensor:
        return (pooled - self.guide.mean) / self.guide.std

    def logits(self, standardised: torch.Tensor) -> torch.Tensor:
        return self.guide.linear(standardised)

    def init_head(self, pooled: np.ndarray, y: np.ndarray, C: float = 0.003) -> None:
        """Standardise with the pretrained encoder's pooled states (fixed while training) and
        start the classifier as the logistic regression on them (C as export/states_head
        chose for the frozen encoder), so the adapters start from a sensible loss."""
        from sklearn.linear_model import LogisticRegression

        mu, sd = pooled.mean(0), pooled.std(0) + 1e-3
        copy_logistic(LogisticRegression(C=C, max_iter=2000).fit((pooled - mu) / sd, y), mu, sd, self.guide)


def _key(layer: int, target: str) -> str:
    return f"layer_{layer}/{target}".replace("/", "|")  # ModuleDict keys may not hold dots or slashes


def batch(mels: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, 80, T) float32 mels and their lengths."""
    lengths = torch.tensor([m.shape[1] for m in mels])
    out = torch.zeros(len(mels), whisper.N_MELS, int(lengths.max()))
    for i, m in enumerate(mels):
        out[i, :, : m.shape[1]] = torch.from_numpy(m.astype(np.float32))
    return out, lengths


@torch.no_grad()
def pooled_all(model: AdaptedEncoder, mels: Sequence[np.ndarray], bs: int = 32) -> np.ndarray:
    """Pooled states of every mel, batched by similar length (less padding)."""
    model.eval()
    order = np.argsort([m.shape[1] for m in mels])
    out = np.zeros((len(mels), whisper.POOLED_DIM), np.float32)
    for i in range(0, len(order), bs):
        idx = order[i : i + bs]
        out[idx] = model.pooled(*batch([mels[j] for j in idx])).numpy()
    return out


def train(model: AdaptedEncoder, tm: Sequence[np.ndarray], ty: np.ndarray, vm: Sequence[np.ndarray], vy: np.ndarray,
          epochs: int, seed: int, bs: int = 16, lr: float = 5e-4, progress: bool = True,
          frozen_pooled: np.ndarray | None = None) -> dict:
    """AdamW on the adapters and the classifier, cosine schedule; random crops of 1-4 s
    (runtime windows are 4 s, speech in them often shorter). Returns the history and keeps
    the adapters of the epoch with the best validation accuracy. `frozen_pooled`: the
    untrained model's `pooled_all(tm)` when the caller has it (computed here otherwise)."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.init_head(pooled_all(model, tm) if frozen_pooled is None else frozen_pooled, ty)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(tm) / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    hist, best = [], (-1.0, None)
    for ep in range(epochs):
        model.train()
        perm = rng.permutation(len(tm))
        losses = []
        for i in tqdm(range(0, len(perm), bs), desc=f"Whisper LoRA epoch {ep + 1}/{epochs}", disable=not progress):
            idx = perm[i : i + bs]
            mel, lengths = batch([_crop(tm[j], rng) for j in idx])
            loss = F.cross_entropy(model(mel, lengths), torch.from_numpy(ty[idx]), label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            vp = model.logits(model.standard(torch.from_numpy(pooled_all(model, vm)))).argmax(1).numpy()
        acc = float((vp == vy).mean())
        hist.append({"epoch": ep + 1, "train_loss": float(np.mean(losses)), "val_acc": acc})
        if acc > best[0]:
            best = (acc, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    return {"history": hist, "best_val_acc": best[0], "steps": steps}


def _crop(mel: np.ndarray, rng: np.random.Generator, lo: int = 100, hi: int = 400) -> np.ndarray:
    n = mel.shape[1]
    if n <= lo:
        return mel
    L = int(rng.integers(lo, min(hi, n) + 1))
    a = int(rng.integers(0, n - L + 1))
    return mel[:, a : a + L]


def load_mels(utts: Sequence, cache: Path, split: str, copies: range, session: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    from export import audio_data

    items = [(u, c) for u in utts if audio_data.split_of(u.actor) == split for c in copies
             if audio_data.mel_path(cache, u, c, session).exists()]  # fmt: skip
    return [np.load(audio_data.mel_path(cache, u, c, session)) for u, c in items], np.array([u.label for u, _ in items])


def save_adapters(model: AdaptedEncoder, path: Path, meta: dict) -> Path:
    """The adapters' factors (A, B, scale per matrix), float32: about 0.7 MB at rank 8."""
    arrays = {}
    for k, m in model.lora.items():
        name = k.replace("|", "/")
        arrays[name + "/lora_a"] = m.a.detach().numpy().astype(np.float32)
        arrays[name + "/lora_b"] = (m.b.detach() * m.scale).numpy().astype(np.float32)
    np.savez(path, **arrays, meta=np.array(json.dumps(meta)))
    return path


def refit_scores(model: AdaptedEncoder, train_pooled: np.ndarray, ty: np.ndarray, val: tuple, val_sessions: tuple) -> dict:
    """What the product would see: export/states_head's logistic regression (C chosen on
    validation) refitted on this encoder's pooled training states (`pooled_all`), scored on
    validation clips (de-identified one by one) and validation sessions (one de-identifier
    per speaker)."""
    vs, ss = (pooled_all(model, m) for m, _ in (val, val_sessions))
    head = StatesHead(whisper.POOLED_DIM, len(LABELS))
    info = fit_logistic(train_pooled, ty, vs, val[1], head)
    with torch.no_grad():
        pv, ps = (head(torch.from_numpy(x)).exp().numpy() for x in (vs, ss))
    return {"C": info["C"], "val_clips": scores(val[1], pv), "val_sessions": scores(val_sessions[1], ps)}


def main(argv: Sequence[str] | None = None) -> None:
    from export import audio_data, default_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="shared data (default: $DEEMO_DATA, else ../shared/data)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="feature cache (default: .cache/features)")
    ap.add_argument("--out", type=Path, default=ROOT / ".cache/whisper_lora",
                    help="where the adapters go (default: .cache/whisper_lora; not yet used by the runtime, see README)")
    ap.add_argument("--report", type=Path, default=ROOT / "benchmarks/results/whisper_lora.json",
                    help="results, appended per run (default: benchmarks/results/whisper_lora.json; --quick: none)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs (default: 3)")
    ap.add_argument("--rank", type=int, default=8, help="adapter rank (default: 8)")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak learning rate, one-cycle (default: 5e-4)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the log-mel cache and torch threads (default: 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    ap.add_argument("--quick", action="store_true", help="two train actors, one epoch, 4 emotions: checks the chain")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, a.workers))
    t0 = time.time()
    utts = audio_data.load_ravdess(a.data)
    if a.quick:
        utts = [u for u in utts if u.actor in (1, 2, 19, 21) and u.label in (0, 2, 3, 4)]
    copies = 0 if a.quick else 2
    audio_data.build_mel_cache(utts, utts, a.cache, copies, workers=a.workers, seed=a.seed)
    train_set = load_mels(utts, a.cache, "train", range(copies + 1))
    val_set = load_mels(utts, a.cache, "val", range(1))
    sessions = load_mels(utts, a.cache, "val", range(1), session=True)
    model = AdaptedEncoder(whisper.read_weights(whisper.model_files()), rank=a.rank)
    frozen_train = pooled_all(model, train_set[0])  # once: the frozen refit and the guide's start
    frozen = refit_scores(model, frozen_train, train_set[1], val_set, sessions)
    info = train(model, *train_set, *val_set, epochs=1 if a.quick else a.epochs, seed=a.seed, lr=a.lr,
                 frozen_pooled=frozen_train)
    tuned = refit_scores(model, pooled_all(model, train_set[0]), train_set[1], val_set, sessions)
    run = {"rank": a.rank, "lr": a.lr, "epochs": a.epochs, "seed": a.seed, "train_items": len(train_set[0]),
           "frozen": frozen, "tuned": tuned, **info, "seconds": round(time.time() - t0)}
    path = save_adapters(model, a.out / FILE, run)
    print(json.dumps(run, indent=1))
    print(f"adapters: {path}")
    if not a.quick:
        runs = json.loads(a.report.read_text()) if a.report.exists() else []
        runs.append({k: v for k, v in run.items() if k != "history"} | {"history": run["history"]})
        a.report.write_text(json.dumps(runs, indent=1) + "\n")
        a.report.with_suffix(".md").write_text(report_md(runs))


def report_md(runs: list[dict]) -> str:
    """The runs as a table: validation accuracy / macro-F1 of the refitted states head."""
    rows = []
    for r in runs:
        f, t = r["frozen"], r["tuned"]
        cells = [f"{x[k]['accuracy']:.1%} / {x[k]['macro_f1']:.3f}" for x in (f, t) for k in ("val_clips", "val_sessions")]
        rows.append(f"| rank {r['rank']}, lr {r['lr']:g}, {r['epochs']} epochs (best epoch by guide head: "
                    f"{max(r['history'], key=lambda h: h['val_acc'])['epoch']}) | " + " | ".join(cells) + f" | {r['seconds'] / 60:.0f} min |")
    return "\n".join([
        "# Whisper encoder LoRA fine-tuning on de-identified speech (an experiment)",
        "",
        "Written by `python -m export.whisper_tune` (see its docstring). Training: actors 1-18, per-clip",
        "de-identified copies 0-2 (clean + 2 augmented, 3240 clips); scored on validation actors 19-20 only,",
        "de-identified clip by clip (`clips`, 120) and as one session per speaker (`sessions`, 120). Each cell:",
        "accuracy / macro-F1, 8-class, of export/states_head's logistic regression (C chosen on validation clips)",
        "refitted on the pooled states of the frozen encoder and of the adapted one. Test actors never used.",
        "",
        "| recipe | frozen, clips | frozen, sessions | adapted, clips | adapted, sessions | time (2 cores) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])


if __name__ == "__main__":
    main()
