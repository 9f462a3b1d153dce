"""The cue encoder (one class for audio and body) and its projector into the LLM space.

frames (B, T, F) -> [skeleton graph convs (body) ->] strided/dilated temporal convs
[-> self-attention blocks] -> attention pooling into K tokens
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

from edge_app.encoders.features import BODY_JOINTS

# MediaPipe-33 bones between the joints the body features hold (landmarks 11-32: shoulders,
# arms, hands, hips, legs, feet), for the skeleton graph convolutions
BODY_BONES = ((11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18),
              (16, 20), (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (25, 27), (27, 29), (27, 31),
              (29, 31), (24, 26), (26, 28), (28, 30), (28, 32), (30, 32))  # fmt: skip
PER_JOINT = 5  # x, y, dx, dy, visibility (edge_app.encoders.features.body_features_from_landmarks)


@dataclass
class EncoderConfig:
    in_dim: int
    n_classes: int
    d: int = 96
    k_tokens: int = 4
    n_aux: int = 0  # auxiliary classes (body: the 15 motion styles), 0 = none
    downsample: int = 2  # number of stride-2 stages (audio 100 fps -> 25 fps)
    dilations: tuple[int, ...] = (1, 2, 4)
    attention_layers: int = 0  # pre-norm self-attention blocks after the convs (a small transformer), 0 = none
    heads: int = 4
    graph_layers: int = 0  # body only: skeleton graph conv blocks (ST-GCN) in place of the first conv, 0 = none
    graph_channels: int = 16  # channels per joint in those blocks
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


def skeleton_adjacency() -> torch.Tensor:
    """(J, J) symmetric-normalised adjacency of BODY_JOINTS with self-loops, D^-1/2 (A + I) D^-1/2."""
    index = {j: i for i, j in enumerate(BODY_JOINTS)}
    a = torch.eye(len(BODY_JOINTS))
    for u, v in BODY_BONES:
        a[index[u], index[v]] = a[index[v], index[u]] = 1.0
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


class GraphBlock(nn.Module):
    """An ST-GCN unit (Yan et al., AAAI 2018) on (B, C, T, J): each joint mixes with its skeleton
    neighbours (the normalised adjacency times a learned importance per edge), then a temporal
    conv runs along each joint's own track; residual. The weights are shared by every joint, so
    what is learned about an elbow's swing carries over to a knee's."""

    def __init__(self, c: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("adjacency", skeleton_adjacency())
        self.importance = nn.Parameter(torch.ones(len(BODY_JOINTS), len(BODY_JOINTS)))
        self.spatial = nn.Conv2d(c, c, 1)
        self.temporal = nn.Conv2d(c, c, (5, 1), padding=(2, 0))
        self.norm1, self.norm2 = nn.BatchNorm2d(c), nn.BatchNorm2d(c)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("bctj,jk->bctk", self.spatial(x), self.adjacency * self.importance)
        h = self.norm2(self.temporal(F.relu(self.norm1(h))))
        return F.relu(x + self.drop(h))


class GraphStem(nn.Module):
    """Body features (B, F, T) -> (B, D, T) through skeleton graph convs: each joint's five
    channels lifted to `graph_channels`, `graph_layers` GraphBlocks, then the joints flattened
    (each keeps its identity) together with the hips' velocity into D channels."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.joints, c = len(BODY_JOINTS), cfg.graph_channels
        self.extra = cfg.in_dim - self.joints * PER_JOINT  # the hips' velocity
        if self.extra < 0 or cfg.downsample:
            raise ValueError(f"the graph stem reads body features ({self.joints} joints x {PER_JOINT} "
                             f"channels first) at their own rate; got in_dim {cfg.in_dim}, downsample {cfg.downsample}")
        # ReLU as in ST-GCN, not GELU: on J times as many activations its backward pass was
        # a quarter of the training time
        self.lift = nn.Sequential(nn.Conv2d(PER_JOINT, c, 1), nn.BatchNorm2d(c), nn.ReLU())
        self.graph = nn.Sequential(*[GraphBlock(c, cfg.dropout) for _ in range(cfg.graph_layers)])
        self.out = nn.Sequential(nn.Conv1d(c * self.joints + self.extra, cfg.d, 1), nn.BatchNorm1d(cfg.d), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[0], self.joints * PER_JOINT
        pose = x[:, :n].reshape(b, self.joints, PER_JOINT, -1).permute(0, 2, 3, 1)  # (B, 5, T, J)
        h = self.graph(self.lift(pose)).permute(0, 1, 3, 2).flatten(1, 2)  # (B, C * J, T)
        return self.out(torch.cat([h, x[:, n:]], dim=1))


class AttentionBlock(nn.Module):
    """A pre-norm transformer layer over time, (B, D, T) -> (B, D, T): every frame attends to
    the whole window. No positional encoding: the convs before it already mix each frame with
    its neighbours, and an emotion does not depend on where in the window a movement falls.
    Written out (not nn.TransformerEncoderLayer) so tracing to ONNX never meets its fused path."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)  # (B, T, D)
        b, _, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(b, -1, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        att = torch.softmax(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5, dim=-1)  # (B, H, T, T)
        h = h + self.drop(self.out((att @ v).transpose(1, 2).reshape(b, -1, d)))
        h = h + self.drop(self.ff(self.norm2(h)))
        return h.transpose(1, 2)


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
        self.stem = GraphStem(cfg) if cfg.graph_layers else nn.Sequential(*stem)
        self.blocks = nn.Sequential(*[ConvBlock(d, r, cfg.dropout) for r in cfg.dilations],
                                    *[AttentionBlock(d, cfg.heads, cfg.dropout) for _ in range(cfg.attention_layers)])
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
