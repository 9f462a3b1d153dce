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
import torch.nn.functional as F
from torch import nn


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
        """(B, T, F) frames -> (B, K, D) pooled tokens, from the first `in_dim` channels
        (frames may carry more: the audio features' speech-embedding channels feed
        `EmbeddingHead`, not this encoder)."""
        h = self.blocks(self.stem(x[..., : self.cfg.in_dim].transpose(1, 2)))  # (B, D, T')
        att = torch.softmax(self.score(h), dim=-1)  # (B, K, T')
        tok = torch.einsum("bkt,bdt->bkd", att, self.value(h))
        return self.tok_norm(tok)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        tok = self.tokens(x)
        flat = self.drop(tok.flatten(1))
        return tok, self.head(flat), (self.aux(flat) if self.aux is not None else None)


class EmbeddingHead(nn.Module):
    """Pooled speech-embedding channels -> class log-probabilities: a logistic regression
    on the mean and standard deviation over time of channels [first, first + dim) of (1, T, F) frames,
    standardised with the training set's statistics (kept as buffers, so ONNX has them)."""

    def __init__(self, first: int, dim: int, n_classes: int) -> None:
        super().__init__()
        self.first, self.dim = first, dim
        self.register_buffer("mean", torch.zeros(2 * dim))
        self.register_buffer("std", torch.ones(2 * dim))
        self.linear = nn.Linear(2 * dim, n_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        e = frames[:, :, self.first : self.first + self.dim]
        pooled = torch.cat([e.mean(dim=1), e.std(dim=1, unbiased=False)], dim=-1)
        return torch.log_softmax(self.linear((pooled - self.mean) / self.std), dim=-1)


class StatesHead(nn.Module):
    """Pooled Whisper encoder states (edge_app.encoders.whisper.pooled_states, (B, dim))
    -> class log-probabilities: a linear classifier on the standardised vector (the
    training set's statistics kept as buffers, so ONNX has them); fitted as shrinkage LDA
    (export.train.fit_lda), whose 8-class probabilities are the softmax of a linear map."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.linear((states - self.mean) / self.std), dim=-1)


class FusedEncoder(nn.Module):
    """A trained `CueEncoder` whose class scores are fused with an `EmbeddingHead`'s:
    logits = log_softmax(encoder logits) + weight * head log-probs (a weighted product of
    the two classifiers, weight chosen on validation; 0 = the encoder alone). Tokens stay
    the encoder's. Same interface as CueEncoder (cfg, tokens, forward), with cfg.in_dim =
    all the channels it reads."""

    def __init__(self, enc: CueEncoder, head: EmbeddingHead, weight: float) -> None:
        super().__init__()
        self.enc, self.head, self.weight = enc, head, float(weight)
        self.cfg = EncoderConfig(**{**enc.cfg.to_dict(), "in_dim": head.first + head.dim})

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc.tokens(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        tok, logits, aux = self.enc(x)
        return tok, torch.log_softmax(logits, dim=-1) + self.weight * self.head(x), aux


class EnsembleEncoder(nn.Module):
    """CueEncoders trained alike from different seeds (and camera views): class probabilities
    averaged (logits = log of the mean softmax, so a softmax downstream gives the mean), tokens
    the first member's (the members' token spaces are unrelated; the projector is fit on the
    first's). Same interface as CueEncoder (cfg, tokens, forward)."""

    def __init__(self, members: list[CueEncoder]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.members[0].tokens(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        outs = [m(x) for m in self.members]
        probs = torch.stack([torch.softmax(o[1], dim=-1) for o in outs]).mean(0)
        return outs[0][0], torch.log(probs), outs[0][2]


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


def checkpoint(model: CueEncoder | FusedEncoder | EnsembleEncoder) -> dict:
    """What `from_checkpoint` rebuilds the model from (the encoder's config and weights,
    plus the embedding head and its weight for a FusedEncoder; each member's for an ensemble)."""
    if isinstance(model, EnsembleEncoder):
        return {"members": [checkpoint(m) for m in model.members]}
    if isinstance(model, FusedEncoder):
        head = {"state": model.head.state_dict(), "first": model.head.first, "dim": model.head.dim, "weight": model.weight}
        return {"encoder": model.enc.state_dict(), "config": model.enc.cfg.to_dict(), "embedding_head": head}
    return {"encoder": model.state_dict(), "config": model.cfg.to_dict()}


def from_checkpoint(ckpt: dict) -> CueEncoder | FusedEncoder | EnsembleEncoder:
    if "members" in ckpt:
        return EnsembleEncoder([from_checkpoint(m) for m in ckpt["members"]]).eval()
    enc = CueEncoder(EncoderConfig(**{**ckpt["config"], "dilations": tuple(ckpt["config"]["dilations"])}))
    enc.load_state_dict(ckpt["encoder"])
    enc.eval()
    h = ckpt.get("embedding_head")
    if not h:
        return enc
    head = EmbeddingHead(h["first"], h["dim"], enc.cfg.n_classes)
    head.load_state_dict(h["state"])
    return FusedEncoder(enc, head, h["weight"]).eval()
