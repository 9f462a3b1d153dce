"""Inputs for the live tests: a file-backed camera clip and real RAVDESS speech for the mic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import SAMPLE, ravdess_path

# Three utterances of one actor (neutral, calm, angry): ~10 s with pauses.
SPEECH_CLIPS = (
    "audio_16k_flac/Actor_01/03-01-01-01-01-01-01.flac",
    "audio_16k_flac/Actor_01/03-01-02-01-01-01-01.flac",
    "audio_16k_flac/Actor_01/03-01-05-02-01-01-01.flac",
)

MEDIA_EXTENSIONS = {
    ".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts", ".h264", ".y4m", ".yuv", ".raw",
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".npy", ".npz",
    ".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".pcm",
}


def make_speech(path: Path) -> Path:
    """RAVDESS utterances joined with 0.3 s pauses, 16 kHz mono (skips without the data)."""
    from edge_app.synth import read_mono

    parts: list[np.ndarray] = []
    for rel in SPEECH_CLIPS:
        parts += [read_mono(str(ravdess_path(rel))), np.zeros(4800, np.float32)]
    sf.write(str(path), np.concatenate(parts), 16_000)
    return path


def make_camera_clip(path: Path, seconds: float = 12.0) -> Path:
    """The bundled sample when present and long enough, else a synthetic clip with faces."""
    if SAMPLE.exists() and _duration(SAMPLE) >= seconds:
        return SAMPLE
    from edge_app.synth import make_clip

    make_clip(str(path), size=(480, 270), seconds=seconds, fps=25, scene="sample", crf=30)
    return path


def _duration(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        return (container.duration or 0) / av.time_base


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def media_files(*roots: Path) -> list[str]:
    """Every file under `roots` that is an image, video or audio file by name or by content."""
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.splitext(name)[1].lower() in MEDIA_EXTENSIONS or _media_magic(path):
                    found.append(path)
    return found


def _media_magic(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return (
        head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"fLaC", b"OggS", b"ID3",
                         b"\x1aE\xdf\xa3", b"\x93NUMPY", b"RIFF", b"BM", b"YUV4MPEG"))
        or head[4:8] == b"ftyp"
        or head[:2] in (b"\xff\xf1", b"\xff\xf9", b"\xff\xfb")  # ADTS AAC, MPEG audio
    )
