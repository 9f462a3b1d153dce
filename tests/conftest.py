"""Shared fixtures: where the data is, the bundled sample, small real media files."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sample.mp4"


def data_dir() -> Path:
    return Path(os.environ.get("DEEMO_DATA", ROOT.parent / "shared" / "data"))


def ravdess_path(relative: str) -> Path:
    """A RAVDESS clip, or skip the test when the shared data is not present."""
    path = data_dir() / "ravdess_speech" / relative
    if not path.exists():
        pytest.skip(f"RAVDESS data not found at {path.parent} (set DEEMO_DATA)")
    return path


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    if not SAMPLE.exists():
        pytest.fail(f"bundled sample missing: {SAMPLE}")
    return SAMPLE


@pytest.fixture(scope="session")
def angry_flac() -> Path:
    return ravdess_path("audio_16k_flac/Actor_01/03-01-05-02-01-01-01.flac")


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: float = 25.0,
    times: list[float] | None = None,
    audio: np.ndarray | None = None,
    sr: int = 16_000,
) -> Path:
    """Encode BGR frames (optionally with irregular `times` and a mono audio track)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        astream = container.add_stream("aac", rate=sr, layout="mono") if audio is not None else None
        for i, image in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(image, format="bgr24")
            if times is not None:
                vf.pts, vf.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if astream is not None:
            for start in range(0, len(audio), 1024):
                af = av.AudioFrame.from_ndarray(
                    audio[start : start + 1024].reshape(1, -1).astype(np.float32),
                    format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = sr, start, Fraction(1, sr)
                for packet in astream.encode(af):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)
    return path


def count_frames(path: Path) -> tuple[int, float, bool]:
    """(video frames, duration in s, has audio) of an encoded file."""
    with av.open(str(path)) as container:
        has_audio = bool(container.streams.audio)
        stream = container.streams.video[0]
        n = sum(1 for _ in container.decode(stream))
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
    return n, duration, has_audio


def label_colour_pixels(png: Path, label: str) -> int:
    """Pixels of a timeline picture drawn in `label`'s colour (the stacked answer bars)."""
    import cv2

    from edge_app.sinks.timeline import LABEL_COLOURS

    image = cv2.imread(str(png))
    assert image is not None, f"{png} is not a readable image"
    rgb = [int(LABEL_COLOURS[label][i : i + 2], 16) for i in (1, 3, 5)]
    return int((abs(image.astype(int) - rgb[::-1]).max(axis=2) <= 2).sum())
