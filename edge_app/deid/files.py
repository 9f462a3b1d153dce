"""Open a media file inside the privacy boundary and hand out only de-identified media.

The rest of the program calls these two functions; it never imports
`edge_app.sources`, so raw frames and raw audio cannot reach it.
"""

from __future__ import annotations

from collections.abc import Iterator

from edge_app.deid.video import VideoDeidentifier
from edge_app.deid.voice import VoiceDeidentifier
from edge_app.records import DeidAudio, DeidFrame
from edge_app.sources.media import DecodeReport, MediaInfo, iter_video_frames, probe, read_audio

__all__ = ["DecodeReport", "MediaInfo", "deidentified_audio", "deidentified_frames", "probe_media", "voice_gain_db"]


def probe_media(path: str) -> MediaInfo:
    """Container metadata only (streams, duration, rate): no media content."""
    return probe(path)


def deidentified_frames(
    path: str,
    deid: VideoDeidentifier,
    max_side: int = 1280,
    report: DecodeReport | None = None,
) -> Iterator[DeidFrame]:
    """Decode `path` and yield each frame after face removal; dropped frames are skipped."""
    for frame in iter_video_frames(path, max_side=max_side, report=report):
        out = deid.process(frame)
        del frame  # the raw frame dies here, inside the boundary
        if out is not None:
            yield out


def deidentified_audio(path: str, deid: VoiceDeidentifier) -> DeidAudio | None:
    """The whole audio track, de-identified; None when the file has no audio."""
    chunk = read_audio(path)
    if chunk is None or len(chunk.samples) == 0:
        return None
    return deid.process(chunk)


def voice_gain_db(deid: VoiceDeidentifier) -> float:
    """How far the de-identifier's output level control raises its session's voice now, dB
    (0: a normal level, or the control is off), for the `privacy.voice_gain_db` report."""
    o = deid.options
    if o.output_level_dbfs is None:
        return 0.0
    return deid.speaker.level.gain_db(o.output_level_dbfs, o.max_output_gain_db)
