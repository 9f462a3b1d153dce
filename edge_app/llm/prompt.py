"""Prompt text: a fixed prefix (evaluated once, KV-cached) and the per-window part.

The window part is a list of segments: text, or a block of injected vectors wrapped
in a text tag (`<body>` ... `</body>`), ending with the answer cue "Emotion:" so the
next token is the label.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge_app.records import LABELS


@dataclass(frozen=True)
class PromptFormat:
    """Chat markup of one model family."""

    name: str
    system_open: str
    system_close: str
    user_open: str
    turn_close: str
    assistant_open: str


CHATML = PromptFormat(
    "chatml",
    "<|im_start|>system\n",
    "<|im_end|>\n",
    "<|im_start|>user\n",
    "<|im_end|>\n",
    "<|im_start|>assistant\n",
)
# Gemma has no system role: the instructions go in a first user turn that the model acknowledges.
GEMMA = PromptFormat(
    "gemma",
    "<start_of_turn>user\n",
    "<end_of_turn>\n<start_of_turn>model\nUnderstood.<end_of_turn>\n",
    "<start_of_turn>user\n",
    "<end_of_turn>\n",
    "<start_of_turn>model\n",
)
PLAIN = PromptFormat("plain", "", "\n\n", "User: ", "\n", "Assistant: ")
FORMATS = {f.name: f for f in (CHATML, GEMMA, PLAIN)}


def pick_format(requested: str, architecture: str, chat_template: str | None) -> PromptFormat:
    if requested != "auto":
        return FORMATS[requested]
    if architecture.startswith("gemma"):
        return GEMMA
    if chat_template and "<|im_start|>" in chat_template:
        return CHATML
    return PLAIN


SYSTEM_PROMPT = (
    "You recognise emotions on a privacy-preserving device. You never see faces and never "
    "hear words: you only receive de-identified body-movement and voice-prosody cues, as "
    "learned signal vectors and as measured cue lines. Answer with one emotion from this "
    "list: " + ", ".join(LABELS) + ". Then give one short reasoning sentence that names "
    "only the cues you were given."
)

# Worked examples in the cached prefix cost nothing per window and teach a small model
# the answer format. Two different labels so neither becomes the default.
EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "Cues: arms crossed 0.4-2.8 s; loud voice; fast speech rate",
        "angry",
        "The arms are crossed and the voice is loud and fast.",
    ),
    (
        "Cues: slumped posture; low pitch; long pauses",
        "sad",
        "The posture is slumped and the voice has low pitch and long pauses.",
    ),
)

ANSWER_CUE = "Emotion:"
REASONING_CUE = ". Reasoning:"

Embeddings = np.ndarray | Mapping[str, np.ndarray] | None
Segment = str | np.ndarray


def prefix_text(fmt: PromptFormat) -> str:
    """Everything before the first per-window token; ends inside an open user turn."""
    parts = [fmt.system_open, SYSTEM_PROMPT, fmt.system_close]
    for cues, label, why in EXAMPLES:
        parts += [
            fmt.user_open,
            cues,
            fmt.turn_close,
            fmt.assistant_open,
            f"{ANSWER_CUE} {label}{REASONING_CUE} {why}",
            fmt.turn_close,
        ]
    parts.append(fmt.user_open)
    return "".join(parts)


# Tag-like markup ("<|im_end|>", "<body>") inside a cue would be parsed as chat or block
# markup, since the window text is tokenized with special tokens enabled.
_MARKUP = re.compile(r"</?[A-Za-z_|][A-Za-z0-9_|]*>")


# Numeric detail of a cue phrase: "(+14.2 st range)", "(8.6)" and time ranges
# ("0.0-0.6 s, 1.0-2.1 s"). The tokenizer spends a token per digit and point, so a
# window's cue line shrank from 124 to ~50 tokens without them (prompt evaluation is
# most of the LLM's time per window); the JSON `clues` keep the numbers for people.
_NUMBER_DETAIL = re.compile(r"\s*\([^()]*\d[^()]*\)|\s*\d+(?:\.\d+)?\s*-\s*\d+(?:\.\d+)?\s*s\b,?")
_MODALITY = re.compile(r"^(body|voice):\s*", re.IGNORECASE)


def compact_cue(cue: str) -> str:
    """A cue phrase as the LLM reads it: words only, no markup, one line."""
    text = _NUMBER_DETAIL.sub("", _MARKUP.sub(" ", cue))
    return " ".join(text.split()).strip(" ,;")


def cue_line(cue_text: Sequence[str]) -> str:
    """"Cues: body: a; b; voice: c": compact phrases, each modality tag written once."""
    # One line per window: line breaks inside a cue would also end the reasoning early.
    parts: list[str] = []
    tag = None
    for cue in cue_text:
        text = compact_cue(cue or "")
        match = _MODALITY.match(text)
        this_tag = match.group(1).lower() if match else None
        text = text[match.end():] if match else text
        if not text:
            continue
        parts.append(f"{this_tag}: {text}" if this_tag and this_tag != tag else text)
        tag = this_tag
    return "Cues: " + ("; ".join(parts) if parts else "none measured")


def window_segments(
    fmt: PromptFormat, embeddings: Embeddings, cue_text: Sequence[str]
) -> list[Segment]:
    """Per-window prompt: tagged vector blocks, the cue line, then the answer cue."""
    segments: list[Segment] = []
    blocks: list[tuple[str, np.ndarray]]
    if embeddings is None:
        blocks = []
    elif isinstance(embeddings, Mapping):
        blocks = [(str(k), v) for k, v in embeddings.items()]
    else:
        blocks = [("signals", embeddings)]
    text = ""
    for name, vectors in blocks:
        if len(vectors) == 0:
            continue
        segments += [text + f"<{name}>", vectors]
        text = f"</{name}>\n"
    text += cue_line(cue_text) + fmt.turn_close + fmt.assistant_open + ANSWER_CUE
    segments.append(text)
    return segments
