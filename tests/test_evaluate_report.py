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
