"""benchmarks/audio_training_data.py's seed-ensemble scoring and its report row, on hand-made
probabilities (the benchmark itself trains for half an hour)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("audio_training_data", ROOT / "benchmarks/audio_training_data.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["audio_training_data"] = mod
    spec.loader.exec_module(mod)
    return mod


def _save(mod, probs_dir: Path, seed: int, p: np.ndarray, y: np.ndarray) -> None:
    np.savez(probs_dir / f"{mod.run_key('mix+head', seed)}.npz",
             **{f"p_{k}": p for k in mod.PARTS}, **{f"y_{k}": y for k in mod.PARTS})  # fmt: skip


def test_ensemble_averages_saved_runs_clip_by_clip(tmp_path: Path) -> None:
    atd = _load()
    y = np.array([0, 2, 3, 4])  # neutral, happy, sad, angry: in the 4-class subset too
    one_hot = np.eye(8)[y]
    # seed 0 is right on clips 0 and 1, sure of its mistakes on neither; seed 1 the other way round
    p0, p1 = 0.4 * one_hot + 0.6 * np.eye(8)[[7, 7, 7, 7]], 0.4 * one_hot + 0.6 * np.eye(8)[[1, 1, 1, 1]]
    p0[[0, 1]], p1[[2, 3]] = one_hot[[0, 1]], one_hot[[2, 3]]
    _save(atd, tmp_path, 0, p0, y)
    _save(atd, tmp_path, 1, p1, y)
    members = [atd.score_probs(dict.fromkeys(atd.PARTS, p), dict.fromkeys(atd.PARTS, y)) for p in (p0, p1)]
    assert all(m["val_clip"]["8class"]["accuracy"] == 0.5 for m in members)
    r = atd.ensemble("mix+head", [0, 1], tmp_path)
    # the mean: the true class gets (1 + 0.4) / 2 = 0.7 on every clip, the wrong ones 0.3
    assert r["seeds"] == [0, 1] and all(r[k]["8class"]["accuracy"] == 1.0 for k in atd.PARTS)
    assert r["test_session"]["4class"]["accuracy"] == 1.0
    atd.write_report(tmp_path, [r], ["a command"])
    table = (tmp_path / "audio_training_data.md").read_text()
    assert "| **mix+head, ensemble** | 0 1 | 100.0 % / 1.000 / 100.0 % |" in table


def test_ensemble_refuses_runs_scored_on_different_clips(tmp_path: Path) -> None:
    atd = _load()
    p = np.full((2, 8), 1 / 8)
    _save(atd, tmp_path, 0, p, np.array([0, 1]))
    _save(atd, tmp_path, 1, p, np.array([1, 0]))
    with pytest.raises(ValueError, match="different clips"):
        atd.ensemble("mix+head", [0, 1], tmp_path)


def test_babble_talkers_are_other_training_actors_only() -> None:
    from conftest import ravdess_path

    from export import audio_data

    src = str(ravdess_path("audio_16k_flac/Actor_05/03-01-05-02-01-01-05.flac"))
    pool = audio_data.babble_talkers(src)
    actors = {int(Path(p).parent.name.split("_")[1]) for p in pool}
    assert actors == set(audio_data.TRAIN_ACTORS) - {5}  # never the speaker, never val/test actors
    assert len(pool) == 17 * 60


def test_babble_is_mixed_at_the_drawn_snr_and_a_session_can_vary_it_by_clip() -> None:
    from conftest import ravdess_path

    from export import audio_data

    src = str(ravdess_path("audio_16k_flac/Actor_05/03-01-05-02-01-01-05.flac"))
    x = audio_data.read_clip(src).astype(np.float64)
    pool = audio_data.babble_talkers(src)
    y = audio_data.babble(x, np.random.default_rng(0), pool, 4, 10.0)
    snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert abs(snr - 10.0) < 1e-6
    # the augmentation with talkers: deterministic per generator; a session's clips share the
    # condition (same rng seed) but hear different talkers (babble_rng)
    draws = [audio_data.augment(x, np.random.default_rng(s), pool, np.random.default_rng([s, i]))
             for s, i in ((3, 0), (3, 0), (3, 1))]
    assert np.array_equal(draws[0], draws[1])
    with_babble = [s for s in range(40) if np.random.default_rng(s).random() < audio_data.BABBLE_P]
    s = with_babble[0]
    a, b = (audio_data.augment(x, np.random.default_rng(s), pool, np.random.default_rng([s, i])) for i in (0, 1))
    assert not np.allclose(a, b)  # other talkers
    assert 5 < len(with_babble) < 25  # about BABBLE_P of the copies
