"""Stage-3 items with body tokens (export/body_items.py): real motion capture, the shipped body
encoder, cue lines measured on that motion, and the formed voice + body pairs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edge_app.answer import AnswerOptions
from edge_app.encoders import BodyEncoder, EncoderOptions
from edge_app.records import LABELS
from export import body_data, body_items, default_data
from export.judge import judge
from export.llm_lora import item_embeddings, item_lines, reasoning_target


def test_no_cue_sentence_names_the_blocks_the_window_had() -> None:
    assert reasoning_target("sad", [], "k", ("body",)).startswith("No body cue stood out")
    assert reasoning_target("sad", [], "k", ("body", "voice")).startswith("No body or voice cue stood out")
    assert reasoning_target("sad", [], "k").startswith("No voice cue stood out")


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    data = default_data()
    if not (data / "bandai_motion/labels.csv").exists():
        pytest.skip(f"Bandai-Namco motion capture not found under {data} (set DEEMO_DATA)")
    clips, _ = body_data.load_clips(data, tmp_path_factory.mktemp("fk"), ("walk", "guide"))
    enc = BodyEncoder(EncoderOptions(backend="cpu"))
    n = AnswerOptions.max_cues_per_modality
    return clips, enc, n


def test_body_windows_are_measured_on_their_own_motion(motion) -> None:
    clips, enc, n = motion
    items = body_items.body_items(clips, "train", enc, 2, n, seed=3)
    takes = [c for c in clips if c.split == "train" and c.emotion >= 0]
    assert takes and len(items) == 2 * len(takes)
    assert {it["y"] for it in items} <= {LABELS.index(e) for e in body_data.EMOTIONS4}
    assert body_items.body_items(clips, "train", enc, 2, n, seed=3)[0]["body"] == items[0]["body"]  # seeded
    held_out = {Path(c.file).stem for c in clips if c.split == "test"}
    assert held_out  # walk take 002 is loaded, and never drawn:
    assert not any(it["stem"].rsplit("-w", 1)[0] in held_out for it in items)
    for it in items:
        assert it["body_tokens"].ndim == 2 and it["body_tokens"].shape[1] == enc.token_width
        assert list(item_embeddings(it)) == ["body"] and item_lines(it) == it["body"]
        assert len(it["body"]) <= n and all(c.startswith("body: ") for c in it["body"])
        label = LABELS[it["y"]]
        target = reasoning_target(label, item_lines(it), it["stem"], tuple(item_embeddings(it)))
        assert "voice" not in target and "speaker" not in target and label in target
        if not it["body"]:  # nothing salient in this window
            assert target.startswith("No body cue stood out")
            continue
        j = judge(target, item_lines(it), label, label)
        assert not j.hallucinated and j.clue == pytest.approx(10.0), (target, it["body"])
        assert not re.search(r"\d", target)  # cue names without their time spans
    assert sum(bool(it["body"]) for it in items) >= len(items) // 2


def test_formed_pairs_agree_on_the_label(motion) -> None:
    clips, enc, n = motion
    bodies = body_items.by_label(body_items.body_items(clips, "train", enc, 1, n, seed=4))
    rng = np.random.default_rng(0)
    voice = {"stem": "03-01-05-01-01-01-01", "tokens": np.zeros((4, enc.token_width), np.float32),
             "cues": ["flat pitch (2.3 st range)"]}  # fmt: skip
    for label in LABELS:
        pair = body_items.pair_with_body({**voice, "y": LABELS.index(label)}, bodies, rng)
        body_label = label if label in body_data.EMOTIONS4 else "neutral"
        assert pair["y"] == LABELS.index(label) and pair["body"] in [b["body"] for b in bodies[LABELS.index(body_label)]]
        assert list(item_embeddings(pair)) == ["body", "voice"]
        assert item_lines(pair)[: len(pair["body"])] == pair["body"] and item_lines(pair)[-1].startswith("voice: ")
        target = reasoning_target(label, item_lines(pair), pair["stem"], tuple(item_embeddings(pair)))
        assert "body" in target and "flat pitch" in target and label in target
    assert body_items.pair_with_body({**voice, "y": 1}, {}, rng) is None
