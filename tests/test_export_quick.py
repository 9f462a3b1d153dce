"""`python export/build_engines.py --quick` (the documented command, run as a script, not with -m):
the whole training/export chain on a tiny subset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_app.encoders import whisper
from edge_app.encoders.features import AUDIO_DIM

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEEMO_DATA", ROOT / "../shared/data"))

needs_data = pytest.mark.skipif(
    not (DATA / "ravdess_speech/labels.csv").exists() or not (DATA / "bandai_motion/labels.csv").exists(),
    reason=f"training data not found under {DATA} (set DEEMO_DATA)",
)


@needs_data
@pytest.mark.timeout(400)
def test_build_engines_quick(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("gguf")
    out = tmp_path / "models"
    # the committed artefacts a --quick run must never touch
    committed = sorted((ROOT / "calibration").glob("*")) + sorted((ROOT / "models").glob("*"))
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in committed if p.is_file()}
    t0 = time.time()
    cmd = [sys.executable, "export/build_engines.py", "--quick", "--out", str(out), "--data", str(DATA),
           "--cache", str(tmp_path / "cache"), "--workers", "2", "--body-members", "2"]  # fmt: skip
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=390)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.time() - t0 < 240 + 120  # budget 4 min on 2 idle cores (+ slack for a busy CI box)
    # TensorRT: either engines were built or the skip is said plainly
    assert "TensorRT not available: skipped fp16/INT8 engine build" in proc.stdout or list(out.glob("*.engine"))

    assert stamps == {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in stamps}, "quick run touched models/ or calibration/"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quick"] is True and manifest["seed"] == 0
    for name, n_classes in (("audio", 8), ("body", 4)):
        entry = manifest["models"][name]
        for key in ("onnx", "onnx_int8"):
            assert (out / entry[key]).stat().st_size > 10_000
            assert entry[key] in manifest["files"]
        assert entry["opset"] >= 17
        assert entry["parity"]["tokens_max_abs_diff"] < 1e-4 and entry["parity"]["probs_max_abs_diff"] < 1e-5
        assert entry["outputs"] == {"tokens": [4, 576], "probs": [n_classes]}
        assert 0.0 <= entry["int8_vs_fp32"]["top1_agreement"] <= 1.0
        assert (out / "calibration" / f"{name}_features.npz").exists()  # cue tensors, not media
    assert manifest["models"]["audio"]["split"]["test_actors"] == [21]
    # --body-members 2: the body encoder is a seed ensemble, exported and quantised as one graph
    body = manifest["models"]["body"]
    assert body["metrics"]["ensemble_members"] == 2 and "2 encoders" in body["split"]["ensemble"]
    assert body["metrics"]["val_in_training"] is False  # a quick run keeps validation out
    # both audio models read every feature channel and fuse the speech-embedding head
    # with a weight from the validation grid
    for name in ("audio", "audio_session"):
        entry = manifest["models"][name]
        assert entry["input"]["shape"][2] == AUDIO_DIM
        fusion = entry["metrics"]["speech_embedding_head"]
        assert fusion["weight"] in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0) and str(fusion["weight"]) in fusion["grid_val"]
    # the voice session head: classification only, min_windows chosen on validation
    head = manifest["models"]["audio_session"]
    assert (out / head["onnx"]).exists() and head["onnx"] in manifest["files"]
    assert head["min_windows"] in (1, 2, 3, 5, 8, 12, 20) and head["split"]["val_actors"] == [19]
    assert head["parity"]["probs_max_abs_diff"] < 1e-5
    for key in ("test_window_encoder_8class", "test_runtime_8class", "test_head_full_session_8class"):
        assert head["metrics"][key]["n"] == head["split"]["n_test"] > 0

    import onnxruntime as ort

    # the Whisper-states head: exported, its weights chosen from the validation grid for both audio models,
    # and kept in the audio entry after stage 2 re-exported the encoder
    sh = manifest["models"]["audio"]["states_head"]
    assert (out / sh["onnx"]).exists() and sh["onnx"] in manifest["files"] and sh["package"] == whisper.PACKAGE_PIN
    assert sh["weight"] in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0) and str(sh["weight"]) in sh["grid_val"]
    assert head["states_weight"] == sh["session_head"]["weight"] and sh["fit"]["n_train"] > 0
    assert sh["metrics"]["test_clips_fused_8class"]["n"] > 0 and sh["metrics"]["test_sessions_fused_8class"]["n"] > 0
    logp = ort.InferenceSession(str(out / sh["onnx"]), providers=["CPUExecutionProvider"]).run(
        None, {"states": np.zeros((1, sh["input"]["shape"][1]), np.float32)})[0]
    assert logp.shape == (1, 8) and np.isclose(np.exp(logp).sum(), 1.0, atol=1e-5)

    # the ONNX model runs with a time axis it was never exported with
    sess = ort.InferenceSession(str(out / manifest["models"]["audio"]["onnx"]), providers=["CPUExecutionProvider"])
    tokens, probs = sess.run(None, {"frames": np.zeros((1, 333, AUDIO_DIM), np.float32)})
    assert tokens.shape == (4, 576) and probs.shape == (8,)

    with np.load(out / "calibration/audio_features.npz") as z:
        assert all(z[k].ndim == 2 and z[k].shape[1] == AUDIO_DIM for k in z.files)

    import importlib.util

    # stage 2: the audio projector was trained through the frozen LLM and the audio model re-exported
    if importlib.util.find_spec("transformers"):
        proj = manifest["models"]["audio"]["projector"]
        assert proj["method"].startswith("stage 2: projector trained through frozen SmolLM2"), proj
        assert "initialised from label-anchor alignment" in proj["method"]
        assert proj["stage1"]["method"].startswith("label-anchor alignment")  # what stage 1 left, kept
        assert 1 <= proj["steps"] <= 2 and len(proj["loss"]) == proj["steps"] and np.all(np.isfinite(proj["loss"]))
        assert 1 <= proj["val_items"] <= 8 and proj["val_after"]["8class"]["n"] == proj["val_items"]
        assert proj["val_after"]["8class"]["macro_f1"] >= proj["val_before"]["8class"]["macro_f1"]  # best kept
        assert "[align] val before" in proc.stdout and "[align] val after" in proc.stdout
        assert "audio_encoder.onnx" in manifest["files"]
    else:
        assert "stage 2 (projector alignment): skipped" in proc.stdout

    # stage 3: a LoRA adapter GGUF in llama.cpp's layout, loaded by llama.cpp in the parity check
    if importlib.util.find_spec("peft") and importlib.util.find_spec("transformers"):
        assert "lora" in manifest["llm"], proc.stdout[-2000:]
        from gguf import GGUFReader

        lora = manifest["llm"]["lora"]
        assert "[lora] val before" in proc.stdout
        if "[align] val after" in proc.stdout:  # stage 2 ran first: stage 3 reads the ONNX it re-exported
            assert proc.stdout.index("[align] val after") < proc.stdout.index("[lora] val before")
        r = GGUFReader(str(out / lora["file"]))
        assert bytes(r.fields["general.type"].parts[-1]).decode() == "adapter"
        assert bytes(r.fields["adapter.type"].parts[-1]).decode() == "lora"
        names = {t.name for t in r.tensors}
        assert {"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b", "blk.29.attn_v.weight.lora_b"} <= names
        assert lora["file"] in manifest["files"] and lora["steps"] <= 2
        assert lora["parity"]["max_abs_diff_lora"] < 1.0  # Q4_1 base in llama.cpp vs fp32 dequantised
        assert lora["parity"]["lora_change_llama_cpp"] > 0.0  # the adapter does change llama.cpp's output
        assert lora["parity"]["lora_change_torch"] > 0.0
        # stage 3 trained on the audio ONNX that stage 2 exported (same bytes as shipped)
        assert lora["audio_tokens_from"]["sha256"] == manifest["files"]["audio_encoder.onnx"]["sha256"]
        assert lora["audio_tokens_from"]["projector"] == "stage 2"
        # the encoder prior's weight for this adapter, chosen on validation answers (llama.cpp)
        from export.prior_weight import GRID

        assert lora["prior_weight"]["value"] in GRID and len(lora["prior_weight"]["grid"]) == len(GRID)
        assert "[lora] prior weight" in proc.stdout
        # and the session head's own weight, on the validation session's windows it answers
        session_weight = manifest["models"]["audio_session"]["prior_weight"]
        assert session_weight["value"] in GRID and "actors 19-20 as sessions" in session_weight["val"]
        assert "[lora] session prior weight" in proc.stdout
    else:
        assert "stage 3 (LoRA): skipped" in proc.stdout


def test_only_body_keeps_the_audio_models_and_the_llm_entries(tmp_path: Path) -> None:
    """`build_engines --only body` runs no LLM stage: what the audio run wrote (its models,
    the stage-3 adapter's manifest entry that makes it the runtime default) stays."""
    pytest.importorskip("torch")
    from export.build_engines import _merge_write, parse_args

    disk = {"llm": {"gguf": "g", "n_embd": 576, "lora": {"file": "a.gguf", "default": True}},
            "models": {"audio": {"onnx": "audio.onnx"}, "audio_session": {"onnx": "s.onnx"}, "body": {"onnx": "old.onnx"}}}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(disk))
    a = parse_args(["--only", "body", "--out", str(tmp_path)])
    _merge_write(a, {"llm": {"gguf": "g", "n_embd": 576}, "models": {"body": {"onnx": "new.onnx"}}})
    got = json.loads((tmp_path / "manifest.json").read_text())
    assert got["llm"]["lora"] == {"file": "a.gguf", "default": True}
    assert got["models"]["body"] == {"onnx": "new.onnx"}
    assert got["models"]["audio"] == {"onnx": "audio.onnx"} and "audio_session" in got["models"]
    # an audio run's fresh stage-3 entry replaces the one on disk
    a = parse_args(["--only", "audio", "--out", str(tmp_path)])
    _merge_write(a, {"llm": {"gguf": "g", "n_embd": 576, "lora": {"file": "b.gguf"}}, "models": {"audio": {"onnx": "a2.onnx"}}})
    got = json.loads((tmp_path / "manifest.json").read_text())
    assert got["llm"]["lora"] == {"file": "b.gguf"} and got["models"]["body"] == {"onnx": "new.onnx"}
