"""Google's pretrained speech embedding, as shipped in the `openwakeword==0.4.0` wheel.

Why: the audio encoder is trained from scratch on 18 RAVDESS speakers. This small
convolutional model (Apache-2.0, about 1.3 MB; pre-trained by Google on a large speech
corpus for keyword spotting, arXiv 2002.01322) describes 775 ms of speech as 96 numbers
every 80 ms. On de-identified RAVDESS its utterance statistics carry emotion that the
scratch encoder misses (benchmarks/results/pretrained_audio.md), so its frames become
extra channels of the audio features (edge_app.encoders.features).

Only the two ONNX files are used (melspectrogram.onnx -> embedding_model.onnx), loaded
from the installed package without importing it (its import pulls in tflite and friends):
`make install` installs it with --no-deps. They run on the CPU with ONNX Runtime, one
thread: about 80 ms per 4 s window (most of the audio encoder's time per window in
benchmarks/results/live.md). Input is always de-identified audio; the
frames never leave the audio encoder.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge_app.errors import ModelError

PACKAGE = "openwakeword"
PACKAGE_PIN = "openwakeword==0.4.0"
EMBEDDING_DIM = 96
SR = 16_000
WINDOW_FRAMES = 76  # mel frames per embedding (775 ms at 10 ms)
STEP_FRAMES = 8  # one embedding every 80 ms
MIN_SAMPLES = SR * 8 // 10  # 0.8 s: shorter audio is zero-padded to one embedding window
SCALE = 16.0  # about the embedding's standard deviation on speech: brings it near unit scale


def model_dir() -> Path:
    """The package's bundled ONNX models; a one-line ModelError if it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        d = Path(root) / "resources" / "models"
        if (d / "embedding_model.onnx").exists() and (d / "melspectrogram.onnx").exists():
            return d
    raise ModelError(f"speech embedding model not found: install it with `pip install --no-deps {PACKAGE_PIN}` "
                     "(make install does)")


@lru_cache(maxsize=1)
def _sessions() -> tuple[object, object]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    d = model_dir()
    cpu = ["CPUExecutionProvider"]
    return (ort.InferenceSession(str(d / "melspectrogram.onnx"), so, providers=cpu),
            ort.InferenceSession(str(d / "embedding_model.onnx"), so, providers=cpu))  # fmt: skip


def embed(samples: np.ndarray) -> np.ndarray:
    """(n, 96) float32 embeddings of 16 kHz mono audio, one per 80 ms step; embedding i
    covers mel frames [8i, 8i + 76) (about samples [1280 i, 1280 i + 12160))."""
    x = np.asarray(samples, np.float32).reshape(-1)
    if len(x) < MIN_SAMPLES:
        x = np.pad(x, (0, MIN_SAMPLES - len(x)))
    mel_model, emb_model = _sessions()
    # the models were trained on 16-bit PCM values; the /10 + 2 matches openwakeword's own
    # transform (brings its ONNX mel close to the original TensorFlow front end)
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.float32)[None]
    mel = np.squeeze(mel_model.run(None, {"input": pcm})[0], axis=(0, 1)) / 10.0 + 2.0
    starts = range(0, mel.shape[0] - WINDOW_FRAMES + 1, STEP_FRAMES)
    windows = np.stack([mel[s : s + WINDOW_FRAMES] for s in starts])[..., None].astype(np.float32)
    return emb_model.run(None, {"input_1": windows})[0].reshape(len(windows), EMBEDDING_DIM)


def on_grid(emb: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, 96) embeddings on the features' 10 ms grid: each frame takes the
    embedding whose 775 ms window is centred nearest to it, scaled to about unit size."""
    centre = np.arange(len(emb)) * STEP_FRAMES + WINDOW_FRAMES // 2
    idx = np.clip(np.round((np.arange(n_frames) - centre[0]) / STEP_FRAMES), 0, len(emb) - 1).astype(int)
    return (emb[idx] / SCALE).astype(np.float32)


def speech_embedding_frames(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """`embed` then `on_grid`: the audio features' extra channels."""
    return on_grid(embed(samples), n_frames)
