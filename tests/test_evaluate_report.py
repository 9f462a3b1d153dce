"""`python -m export.evaluate` on the shipped body model: scores and the per-clip table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from export import body_data, default_data
from export.evaluate import eval_body, markdown

ROOT = Path(__file__).resolve().parents[1]


def test_body_evaluation_lists_every_test_clip(tmp_path: Path) -> None:
    data = default_data()
    if not (data / "bandai_motion" / "labels.csv").exists():
        pytest.skip(f"Bandai motion data not found under {data} (set DEEMO_DATA)")

    entry = json.loads((ROOT / "models" / "manifest.json").read_text())["models"]["body"]
    a = argparse.Namespace(data=data, cache=tmp_path, models=ROOT / "models", seed=0)
    scores, clips, y, p = eval_body(a, entry)
    assert len(clips) == scores["onnx"]["clips"]["n"] == 16 and len(y) == len(p) == scores["onnx"]["windows"]["n"]
    got = sum(c["answer"] == c["truth"] for c in clips) / len(clips)
    assert got == pytest.approx(scores["onnx"]["clips"]["accuracy"])  # the table and the score agree
    assert {c["content"] for c in clips} == set(body_data.TEST_CONTENTS) | {t[0] for t in body_data.TEST_TAKES}
    text = markdown({"body": scores, "body_clips": clips})
    assert "| content | take | truth | answer |" in text and text.count("\n| bye | 001 |") == 4


def test_paired_comparison_counts_disagreements_and_tests_them() -> None:
    import numpy as np

    from export.evaluate import paired_comparison

    y = np.zeros(20, int)
    head = np.tile([0.9, 0.1], (20, 1))  # right on every item
    answer = head.copy()
    answer[:2] = [0.1, 0.9]  # the answer misses two of them
    c = paired_comparison(y, head, answer)
    assert (c["only_head_right"], c["only_answer_right"], c["both_right"]) == (2, 0, 18)
    assert c["mcnemar_p"] == 0.5  # two discordant items: 2 x 0.5**2, no evidence of a difference
    answer[:] = [0.1, 0.9]
    assert paired_comparison(y, head, answer)["mcnemar_p"] < 1e-5  # 20 of 20 discordant one way
    assert paired_comparison(y, head, head)["mcnemar_p"] == 1.0
