"""The encoder prior's weight in the label fusion is chosen on validation (export/prior_weight.py)."""

from __future__ import annotations

import numpy as np

from export.prior_weight import GRID, TIE, choose


def _items(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 8, n), rng


def _probs(y: np.ndarray, rng: np.random.Generator, signal: float) -> np.ndarray:
    """Noisy class probabilities that favour the true class by `signal` (log units)."""
    z = rng.normal(0.0, 1.0, (len(y), 8))
    z[np.arange(len(y)), y] += signal
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_an_informative_head_gets_a_large_weight():
    y, rng = _items()
    head = _probs(y, rng, 2.5)
    llm = np.log(_probs(y, rng, 0.0))  # an LLM that knows nothing
    res = choose(llm, head, y)
    assert res["value"] >= 4.0
    chosen = next(r for r in res["grid"] if r["w"] == res["value"])
    assert chosen["macro_f1"] >= res["head_alone"]["macro_f1"] - TIE  # no worse than the head on validation


def test_an_informative_llm_keeps_a_small_weight():
    y, rng = _items(seed=1)
    head = _probs(y, rng, 0.0)  # a head that knows nothing
    llm = np.log(_probs(y, rng, 2.5))
    assert choose(llm, head, y)["value"] <= 1.0


def test_an_llm_that_adds_nothing_leaves_the_label_to_the_head():
    y, rng = _items(seed=3)
    head = _probs(y, rng, 2.5)
    llm = np.log(_probs(y, rng, 0.3))  # a little signal, far less than the head's
    res = choose(llm, head, y)
    best = max(r["macro_f1"] for r in res["grid"])
    assert best <= res["head_alone"]["macro_f1"] + TIE  # no weight clearly beats the head ...
    assert res["value"] == max(GRID)  # ... so the head decides


def test_ties_go_to_the_old_fixed_weight():
    y, rng = _items(seed=2)
    same = np.log(_probs(y, rng, 3.0))
    flat = np.full((len(y), 8), 1 / 8)  # a uniform prior changes nothing: every w ties
    res = choose(same, flat, y)
    assert res["value"] == 1.0 and len(res["grid"]) == len(GRID)
