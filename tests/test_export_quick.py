"""`python -m export.build_engines --quick`: the whole training/export chain on a tiny subset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

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
    t0 = time.time()
    cmd = [sys.executable, "-m", "export.build_engines", "--quick", "--out", str(out), "--data", str(DATA),
           "--cache", str(tmp_path / "cache"), "--workers", "2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=390)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.time() - t0 < 240 + 120  # budget 4 min on 2 idle cores (+ slack for a busy CI box)
    # TensorRT: either engines were built or the skip is said plainly
    assert "TensorRT not available: skipped fp16/INT8 engine build" in proc.stdout or list(out.glob("*.engine"))

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

    # the ONNX model runs with a time axis it was never exported with
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / manifest["models"]["audio"]["onnx"]), providers=["CPUExecutionProvider"])
    tokens, probs = sess.run(None, {"frames": np.zeros((1, 333, 67), np.float32)})
    assert tokens.shape == (4, 576) and probs.shape == (8,)

    with np.load(out / "calibration/audio_features.npz") as z:
        assert all(z[k].ndim == 2 and z[k].shape[1] == 67 for k in z.files)
