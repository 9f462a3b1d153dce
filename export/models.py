"""The cue encoder (one class for audio and body) and its projector into the LLM space.

frames (B, T, F) -> strided/dilated temporal convs -> attention pooling into K tokens
(B, K, D) -> class logits; the projector (MLP) maps each token to the LLM's
embedding width (576 for SmolLM2-135M). No padding masks: training uses equal-length
crops and the runtime runs one window at a time, so the ONNX graph needs only a
dynamic time axis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class EncoderConfig:
    in_dim: int
    n_classes: int
    d: int = 96
    k_tokens: int = 4
    n_aux: int = 0  # auxiliary classes (body: the 15 motion styles), 0 = none
    downsample: int = 2  # number of stride-2 stages (audio 100 fps -> 25 fps)
    dilations: tuple[int, ...] = (1, 2, 4)
    dropout: float = 0.2
    llm_dim: int = 576

    def to_dict(self) -> dict:
        return asdict(self)


class ConvBlock(nn.Module):
    def __init__(self, d: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d, d, 5, padding=2 * dilation, dilation=dilation)
        self.norm = nn.BatchNorm1d(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(F.gelu(self.norm(self.conv(x))))


class CueEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d
        # the first conv already strides when downsampling: full-rate frames are the costliest
        k, s = (4, 2) if cfg.downsample else (3, 1)
        stem: list[nn.Module] = [nn.Conv1d(cfg.in_dim, d, k, stride=s, padding=1), nn.BatchNorm1d(d), nn.GELU()]
        for _ in range(max(0, cfg.downsample - 1)):
            stem += [nn.Conv1d(d, d, 4, stride=2, padding=1), nn.BatchNorm1d(d), nn.GELU()]
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.Sequential(*[ConvBlock(d, r, cfg.dropout) for r in cfg.dilations])
        self.score = nn.Conv1d(d, cfg.k_tokens, 1)  # one attention map per token
        self.value = nn.Conv1d(d, d, 1)
        self.tok_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.k_tokens * d, cfg.n_classes)
        self.aux = nn.Linear(cfg.k_tokens * d, cfg.n_aux) if cfg.n_aux else None

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) frames -> (B, K, D) pooled tokens."""
        h = self.blocks(self.stem(x.transpose(1, 2)))  # (B, D, T')
        att = torch.softmax(self.score(h), dim=-1)  # (B, K, T')
        tok = torch.einsum("bkt,bdt->bkd", att, self.value(h))
        return self.tok_norm(tok)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        tok = self.tokens(x)
        flat = self.drop(tok.flatten(1))
        return tok, self.head(flat), (self.aux(flat) if self.aux is not None else None)


class Projector(nn.Module):
    """Token (D) -> LLM input embedding (llm_dim); scale matches the LLM's embedding rows."""

    def __init__(self, d: int, llm_dim: int = 576) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim))

    def forward(self, tok: torch.Tensor) -> torch.Tensor:
        return self.net(tok)


class ExportWrapper(nn.Module):
    """What goes to ONNX: frames (1, T, F) -> tokens (K, llm_dim), probs (n_classes,)."""

    def __init__(self, enc: CueEncoder, proj: Projector) -> None:
        super().__init__()
        self.enc, self.proj = enc, proj

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tok, logits, _ = self.enc(frames)
        return self.proj(tok)[0], torch.softmax(logits, dim=-1)[0]
