"""export/voice_session.py: the session-relative inputs and how min_windows is chosen
(no training here; the trained head is checked in test_encoders / test_export_quick)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from edge_app.encoders.features import audio_features_and_levels
from export.audio_data import Session
from export.voice_session import (
    MIN_WINDOWS_GRID,
    choose_min_windows,
    mean_levels,
    relative,
    runtime_answers,
)


def _tone(f0: float, gain: float) -> np.ndarray:
    t = np.arange(32000) / 16000
    return (gain * np.sin(2 * np.pi * f0 * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t)))).astype(np.float32)


def test_mean_levels_skips_unmeasured_entries() -> None:
    lv = np.array([[1.0, np.nan, np.nan], [3.0, 2.0, np.nan]], np.float32)
    m = mean_levels(lv)
    assert m[0] == 2.0 and m[1] == 2.0 and np.isnan(m[2])


def test_causal_reference_is_what_the_device_has_heard_so_far() -> None:
    pairs = [audio_features_and_levels(_tone(f0, g)) for f0, g in ((140, 0.1), (220, 0.3), (180, 0.2))]
    s = Session(1, 0, [f for f, _ in pairs], np.stack([lv for _, lv in pairs]), np.array([0, 4, 2]), ["a", "b", "c"],
                np.zeros((3, 8), np.float32))
    causal, full = relative(s, causal=True), relative(s, causal=False)
    assert np.array_equal(causal[0], pairs[0][0])  # the first window: only itself to compare with
    assert not np.allclose(causal[1], pairs[1][0])  # the second: relative to the mean of the two
    np.testing.assert_allclose(causal[2], full[2], atol=1e-6)  # the last one has heard everything


def test_min_windows_chosen_by_macro_f1_ties_to_larger() -> None:
    pos = np.tile(np.arange(10), 4)
    y = np.repeat(np.arange(4), 10)
    right, wrong = np.eye(8)[y], np.eye(8)[(y + 1) % 8]
    # the head errs while the average is young (positions 0-1), the window encoder after
    head = np.where((pos < 2)[:, None], wrong, right)
    window = np.where((pos < 2)[:, None], right, wrong)
    k, grid = choose_min_windows(y, window, head, pos)
    assert k == 3 and grid["3"] == 1.0 and set(grid) == {str(v) for v in MIN_WINDOWS_GRID}
    assert np.array_equal(runtime_answers(window, head, pos, 3).argmax(1), y)
    k, _ = choose_min_windows(y, right, right, pos)  # no difference: wait the longest
    assert k == max(MIN_WINDOWS_GRID)
