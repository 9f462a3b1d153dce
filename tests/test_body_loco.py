"""benchmarks/body_loco.py's seed-ensemble scoring and its markdown table, on hand-made
probabilities (the benchmark itself trains for an hour)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("body_loco", ROOT / "benchmarks/body_loco.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["body_loco"] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_ensemble_averages_saved_runs_window_by_window(tmp_path: Path) -> None:
    loco = _load()
    y = np.array([0, 0, 1, 1])  # two clips of two windows each
    ids = np.array([0, 0, 1, 1])
    # run a: right on windows 0 and 2 only; run b: right on windows 1 and 3 only, less sure
    pa = np.array([[0.9, 0.1, 0, 0], [0.4, 0.6, 0, 0], [0.1, 0.9, 0, 0], [0.6, 0.4, 0, 0]])
    pb = np.array([[0.45, 0.55, 0, 0], [0.7, 0.3, 0, 0], [0.55, 0.45, 0, 0], [0.3, 0.7, 0, 0]])
    for key, p in (("a", pa), ("b", pb)):
        np.savez(tmp_path / f"{key}.npz", contents=np.array(["bow"]), p_bow=p, y_bow=y, id_bow=ids)
    r = loco.ensemble(["a", "b"], tmp_path)
    assert r["members"]["a"]["mean_window_acc"] == 0.5 and r["members"]["b"]["mean_window_acc"] == 0.5
    # the mean: [0.675 0.325], [0.55 0.45], [0.325 0.675], [0.45 0.55] -> all four right
    assert r["mean_window_acc"] == 1.0 and r["mean_clip_acc"] == 1.0
    assert r["command"].endswith("--ensemble a,b")
    table = loco.markdown({"a+b": r, "command": "not a run"})
    assert "| a+b | 1.000 | 1.000 | 1.000 |" in table and "| bow |" in table


def test_ensemble_refuses_runs_of_different_folds(tmp_path: Path) -> None:
    loco = _load()
    p, y = np.full((2, 4), 0.25), np.zeros(2, int)
    np.savez(tmp_path / "a.npz", contents=np.array(["bow"]), p_bow=p, y_bow=y, id_bow=y)
    np.savez(tmp_path / "b.npz", contents=np.array(["dash"]), p_dash=p, y_dash=y, id_dash=y)
    with pytest.raises(ValueError, match="different folds"):
        loco.ensemble(["a", "b"], tmp_path)
