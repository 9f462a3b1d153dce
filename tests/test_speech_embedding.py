"""The pretrained speech embedding (openwakeword 0.4.0's ONNX files) as audio-feature channels."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest

from edge_app.encoders import speech_embedding as se
from edge_app.encoders.features import AUDIO_DIM, PROSODY_DIM, audio_features
from edge_app.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEEMO_DATA", ROOT / "../shared/data"))
needs_data = pytest.mark.skipif(not (DATA / "ravdess_speech").exists(), reason=f"RAVDESS not found under {DATA}")


def _deidentified_clip(name: str) -> np.ndarray:
    import soundfile as sf

    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
    from edge_app.records import AudioChunk

    x, sr = sf.read(DATA / "ravdess_speech" / "audio_16k_flac" / name, dtype="float32")
    assert sr == se.SR
    return VoiceDeidentifier(VoiceDeidOptions(seed=0)).process(AudioChunk(0.0, x, sr)).samples


@needs_data
def test_embedding_of_deidentified_speech() -> None:
    x = _deidentified_clip("Actor_19/03-01-05-02-01-01-19.flac")
    e = se.embed(x)
    # one embedding per 80 ms step of 775 ms windows (mel frames: 25 ms every 10 ms, not centred)
    n_mel = 1 + (len(x) - 400) // 160
    assert e.shape == (1 + (n_mel - se.WINDOW_FRAMES) // se.STEP_FRAMES, se.EMBEDDING_DIM)
    assert np.isfinite(e).all() and e.std() > 1.0
    assert np.array_equal(e, se.embed(x))  # deterministic
    # speech differs from silence, and two different utterances differ
    other = se.embed(_deidentified_clip("Actor_20/03-01-01-01-02-01-20.flac"))
    silence = se.embed(np.zeros_like(x))
    assert np.linalg.norm(e.mean(0) - silence.mean(0)) > np.linalg.norm(e.mean(0) - other.mean(0)) * 0.5
    f = audio_features(x)
    assert f.shape[1] == AUDIO_DIM == PROSODY_DIM + se.EMBEDDING_DIM
    assert 0.3 < f[:, PROSODY_DIM:].std() < 3.0  # scaled near unit size, like the other channels


def test_on_grid_takes_the_nearest_window() -> None:
    emb = np.arange(5, dtype=np.float32)[:, None].repeat(se.EMBEDDING_DIM, 1) * se.SCALE
    g = se.on_grid(emb, 120)
    assert g.shape == (120, se.EMBEDDING_DIM)
    # window i is centred on frame 8 i + 38; frames before the first centre take window 0
    assert g[0, 0] == 0 and g[38, 0] == 0 and g[46, 0] == 1 and g[49, 0] == 1 and g[51, 0] == 2
    assert g[119, 0] == 4  # after the last centre: the last window


def test_short_audio_is_padded_to_one_window() -> None:
    assert se.embed(np.zeros(100, np.float32)).shape == (1, se.EMBEDDING_DIM)
    assert audio_features(np.zeros(100, np.float32)).shape[1] == AUDIO_DIM


def test_missing_package_is_a_one_line_model_error(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=re.escape("pip install --no-deps openwakeword==0.4.0")):
        se.model_dir()
