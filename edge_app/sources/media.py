"""Decode media files with PyAV (FFmpeg): video frames and the audio track.

Only `edge_app.deid` may call into this module: what it yields is raw media.
Every failure a user can cause becomes an `InputError` with a one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from edge_app.errors import InputError
from edge_app.records import AudioChunk, Frame

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus"}
DEFAULT_SR = 16_000


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, read from its container without decoding it all."""

    path: str
    duration_s: float
    has_video: bool
    has_audio: bool
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    frame_count: int | None = None
    time_base: Fraction | None = None


def _open(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a media file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    try:
        return av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise InputError(f"{path}: not a readable media file ({_short(err)})") from None


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


def probe(path: str) -> MediaInfo:
    """Read the container header: streams, duration, frame rate."""
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise InputError(f"{path}: has neither a video nor an audio stream")
        duration = _duration(container, video, audio)
        if video is None:
            return MediaInfo(path, duration, False, True)
        rate = video.average_rate or video.guessed_rate or video.base_rate
        fps = float(rate) if rate else None
        return MediaInfo(
            path,
            duration,
            True,
            audio is not None,
            fps=fps,
            width=video.codec_context.width,
            height=video.codec_context.height,
            frame_count=video.frames or None,
            time_base=video.time_base,
        )


def _duration(container, video, audio) -> float:
    for stream in (video, audio):
        if stream is not None and stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is at most `max_side` (huge inputs)."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(2, int(round(w * scale)) // 2 * 2), max(2, int(round(h * scale)) // 2 * 2))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@dataclass
class DecodeReport:
    """Filled in while decoding: what went wrong part-way, if anything."""

    frames: int = 0
    truncated: str | None = None


def iter_video_frames(
    path: str, max_side: int = 1280, report: DecodeReport | None = None
) -> Iterator[Frame]:
    """Yield every decodable frame as BGR with its presentation time in seconds.

    Timestamps come from the stream (pts), so variable-frame-rate files keep
    their real timing. A file that breaks after some frames decoded stops the
    iteration: with a `report` the reason is recorded there (the frames so far
    are kept, nothing is lost), without one an `InputError` is raised.
    """
    with _open(path) as container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        last_t = -1.0
        try:
            for packet in container.demux(stream):
                for vframe in packet.decode():
                    t = float(vframe.time) if vframe.time is not None else last_t + 1 / 30
                    last_t = t
                    image = fit_within(vframe.to_ndarray(format="bgr24"), max_side)
                    yield Frame(index=index, t=t, image=image)
                    index += 1
                    if report is not None:
                        report.frames = index
        except av.error.FFmpegError as err:
            if index == 0:
                raise InputError(f"{path}: video stream cannot be decoded ({_short(err)})") from None
            message = f"video is corrupt or truncated after frame {index} ({_short(err)})"
            if report is None:
                raise InputError(f"{path}: {message}") from None
            report.truncated = message


def read_audio(path: str, sr: int = DEFAULT_SR) -> AudioChunk | None:
    """Decode the first audio track to mono float32 at `sr`; None if there is none."""
    with _open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        parts: list[np.ndarray] = []
        start: float | None = None
        try:
            for packet in container.demux(stream):
                for aframe in packet.decode():
                    if start is None and aframe.time is not None:
                        start = float(aframe.time)
                    for out in resampler.resample(aframe):
                        parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as err:
            if not parts:
                raise InputError(f"{path}: audio stream cannot be decoded ({_short(err)})") from None
            # A truncated tail still leaves usable audio; keep what decoded.
        samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        return AudioChunk(t0=max(0.0, start or 0.0), samples=samples, sr=sr)


def is_audio_only_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in AUDIO_EXTENSIONS
