"""Speaker verification with Resemblyzer: the attacker model of the voice benchmark.

Resemblyzer's GE2E d-vector encoder (weights ship in its wheel) stands in for an
attacker's speaker-verification system: speakers are enrolled with the mean
embedding of a few utterances and each trial is the cosine similarity between a
test utterance and an enrolled speaker.
"""

from __future__ import annotations

import importlib.metadata
import sys
import types
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve


def _ensure_pkg_resources() -> None:
    """webrtcvad 2.0.10 (a Resemblyzer dependency) imports `pkg_resources` for its
    version string only; setuptools >= 81 no longer ships that module. A two-line
    stand-in backed by importlib.metadata is enough for that one call."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
            version=importlib.metadata.version(name)
        )
        sys.modules["pkg_resources"] = shim


def load_encoder(threads: int = 1) -> Any:
    """Resemblyzer `VoiceEncoder` on CPU, limited to `threads` torch threads."""
    _ensure_pkg_resources()
    import torch
    from resemblyzer import VoiceEncoder

    torch.set_num_threads(threads)
    return VoiceEncoder(device="cpu", verbose=False)


def embed(encoder: Any, samples: np.ndarray, sr: int = 16_000) -> np.ndarray:
    """Unit-norm utterance embedding (Resemblyzer preprocessing: VAD trim, level norm)."""
    _ensure_pkg_resources()
    from resemblyzer import preprocess_wav

    wav = preprocess_wav(np.asarray(samples, dtype=np.float32), source_sr=sr)
    if len(wav) < sr // 4:  # VAD removed nearly everything: embed the raw clip
        wav = np.asarray(samples, dtype=np.float32)
    return encoder.embed_utterance(wav)


def enrol(embeddings: np.ndarray) -> np.ndarray:
    """Speaker model: the re-normalised mean of its enrolment embeddings."""
    mean = embeddings.mean(axis=0)
    return mean / (np.linalg.norm(mean) + 1e-12)


def trial_scores(
    test_emb: np.ndarray, test_spk: np.ndarray, models: dict[Any, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Every test utterance against every enrolled speaker: (scores, is_target)."""
    speakers = list(models)
    mat = np.stack([models[s] for s in speakers])  # (S, D)
    scores = test_emb @ mat.T  # (N, S) cosine: embeddings are unit norm
    target = test_spk[:, None] == np.asarray(speakers)[None, :]
    return scores.reshape(-1), target.reshape(-1)


def eer(scores: np.ndarray, is_target: np.ndarray) -> float:
    """Equal error rate: where false-accept and false-reject rates cross (0..1)."""
    fpr, tpr, _ = roc_curve(is_target.astype(int), scores)
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    # linear interpolation between the two ROC points around the crossing
    j = min(i + 1, len(fpr) - 1)
    d_i, d_j = fnr[i] - fpr[i], fnr[j] - fpr[j]
    if d_i != d_j and np.sign(d_i) != np.sign(d_j):
        t = d_i / (d_i - d_j)
        return float(fpr[i] + t * (fpr[j] - fpr[i]))
    return float((fpr[i] + fnr[i]) / 2)


def det_curve(scores: np.ndarray, is_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-accept rate, false-reject rate) over all thresholds, for plots."""
    fpr, tpr, _ = roc_curve(is_target.astype(int), scores)
    return fpr, 1.0 - tpr
