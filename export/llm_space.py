"""SmolLM2's input-embedding space, read straight from the shipped GGUF (no hub).

Stage-1 projector alignment ("label anchors"): the projector is fitted so that the
mean of a window's projected tokens lands on the probability-weighted embedding of
the emotion words (" happy", " sad", ...) and each token has the norm of a real
token embedding. This needs only the embedding table, so it runs in seconds; the
LLM-in-the-loop stage (export/llm_align.py) refines it when there is time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from export.models import Projector


def bundled_gguf() -> Path:
    from edge_app.llm.model import find_bundled_gguf

    return find_bundled_gguf()


def load_token_embeddings(gguf_path: Path) -> tuple[np.ndarray, list[str]]:
    """(n_vocab, n_embd) float32 dequantised token embeddings and the vocabulary."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    r = GGUFReader(str(gguf_path))
    t = next(t for t in r.tensors if t.name == "token_embd.weight")
    emb = dequantize(t.data, t.tensor_type).reshape(-1, int(t.shape[0])).astype(np.float32)
    f = r.fields["tokenizer.ggml.tokens"]
    vocab = [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]
    return emb, vocab


def word_vector(word: str, emb: np.ndarray, vocab: list[str]) -> np.ndarray:
    """Mean embedding of the BPE pieces of ' word' (greedy longest match; 'Ġ' = space)."""
    index = {v: i for i, v in enumerate(vocab)}
    s, ids = "Ġ" + word, []
    while s:
        for n in range(len(s), 0, -1):
            if s[:n] in index:
                ids.append(index[s[:n]])
                s = s[n:]
                break
        else:
            s = s[1:]
    return emb[ids].mean(axis=0)


def fit_projector_to_anchors(
    tokens: np.ndarray, probs: np.ndarray, anchors: np.ndarray, target_norm: float, d: int, llm_dim: int,
    steps: int = 400, seed: int = 0,
) -> Projector:
    """tokens (N, K, D), probs (N, C), anchors (C, llm_dim) -> fitted Projector."""
    torch.manual_seed(seed)
    proj = Projector(d, llm_dim)
    opt = torch.optim.Adam(proj.parameters(), lr=2e-3)
    x = torch.from_numpy(tokens.astype(np.float32))
    target = torch.from_numpy((probs @ anchors).astype(np.float32))
    for _ in range(steps):
        out = proj(x)  # (N, K, llm_dim)
        loss = F.mse_loss(out.mean(1), target) + 1e-3 * ((out.norm(dim=-1) - target_norm) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    proj.eval()
    return proj
