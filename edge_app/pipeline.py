"""source -> deid -> cues -> (encoders -> projector -> llm) -> results, for one file.

The `Analyzer` loads its models once and analyses any number of files. It only
ever sees de-identified media: frames and audio come through
`edge_app.deid.files`, which is the single door to the raw decoder.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from edge_app.answer import Answer, Answerer, overall_answer
from edge_app.config import Config
from edge_app.cues import Cues, extract_cues
from edge_app.cues.pose import PoseEstimator, PoseSample, RateLimiter
from edge_app.deid.files import (
    DecodeReport,
    deidentified_audio,
    deidentified_frames,
    probe_media,
    voice_gain_db,
)
from edge_app.deid.video import VideoDeidentifier
from edge_app.deid.voice import VoiceDeidentifier
from edge_app.errors import InputError
from edge_app.records import DeidAudio
from edge_app.sinks.anonymized import AnonymizedVideoWriter, write_wav

log = logging.getLogger("deemo_edge.pipeline")

MIN_WINDOW_S = 0.5  # a trailing window shorter than this is merged into the previous one


@dataclass
class WindowResult:
    start: float
    end: float
    cues: Cues
    answer: Answer | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": round(self.start, 3), "end": round(self.end, 3)}
        if self.answer is not None:
            out.update(self.answer.to_dict())
        out["clues"] = self.cues.describe()
        out["cues"] = self.cues.to_dict()
        return out


@dataclass
class FileResult:
    """What `deemo-edge file` reports for one input."""

    input: str
    duration_s: float
    media: dict[str, Any]
    windows: list[WindowResult]
    privacy: dict[str, Any]
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    anonymized: str | None = None

    def overall(self) -> dict[str, Any] | None:
        answered = [(w.end - w.start, w.answer) for w in self.windows if w.answer is not None]
        return overall_answer(answered)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input": self.input,
            "duration_s": round(self.duration_s, 3),
            **(self.overall() or {}),
            "media": self.media,
            "windows": [w.to_dict() for w in self.windows],
            "privacy": self.privacy,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }
        if self.anonymized:
            out["anonymized"] = self.anonymized
        if self.warnings:
            out["warnings"] = self.warnings
        return out


class StageTimer:
    """Accumulates wall time per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


def window_bounds(duration: float, window: float, step: float) -> list[tuple[float, float]]:
    """[(start, end)] covering [0, duration]; a short tail joins the last window."""
    if duration <= 0:
        return []
    bounds = []
    start = 0.0
    while start < duration - 1e-6:
        bounds.append((start, min(start + window, duration)))
        if start + window >= duration:
            break
        start += step
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < MIN_WINDOW_S:
        last_start = bounds[-2][0]
        bounds = bounds[:-2] + [(last_start, duration)]
    return bounds


class Analyzer:
    """Analyse media files: models are loaded once, state is fresh per file."""

    def __init__(self, config: Config):
        self.config = config
        # the models a user can get wrong (--model, models/) first: a bad one fails before
        # MediaPipe starts threads that would log to stderr after the one-line error
        self.answerer = Answerer(config.answer) if config.answer.enabled else None
        try:
            self.pose = PoseEstimator(config.cues.pose)
        except BaseException:
            if self.answerer is not None:
                self.answerer.close()
            raise

    def close(self) -> None:
        self.pose.close()
        if self.answerer is not None:
            self.answerer.close()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def analyse(
        self, path: str, save_anonymized: str | None = None, progress: bool = False
    ) -> FileResult:
        timer = StageTimer()
        t_start = time.perf_counter()
        info = probe_media(path)
        self.pose.reset()  # tracking state must not leak from one file to the next
        if self.answerer is not None:
            self.answerer.new_session()  # each file gets its own voice de-identification session
        warnings: list[str] = [self.answerer.notice] if self.answerer is not None and self.answerer.notice else []
        with timer("audio_deid"):
            audio, gain_db = self._audio(path) if info.has_audio else (None, 0.0)
        if info.has_audio and audio is None:
            warnings.append("audio track is empty")
        poses: list[PoseSample] = []
        privacy: dict[str, Any] = {}
        anonymized = None
        if info.has_video:
            poses, privacy, video_warnings, last_t = self._video(
                path, info, audio, save_anonymized, progress, timer
            )
            warnings += video_warnings
            anonymized = save_anonymized
        else:
            last_t = 0.0
            if save_anonymized and audio is not None:
                with timer("encode"):
                    write_wav(save_anonymized, audio)
                anonymized = save_anonymized
        if not info.has_video and audio is None:
            raise InputError(f"{path}: no decodable video frames and no audio")
        duration = info.duration_s or max(last_t, audio.duration if audio else 0.0)
        privacy["voice_method"] = audio.method if audio else None
        privacy["voice_gain_db"] = round(gain_db, 1) if audio else None
        windows = self._windows(duration, poses, audio, info.has_video, timer)
        timings = dict(timer.seconds)
        timings["total"] = time.perf_counter() - t_start
        return FileResult(
            input=path,
            duration_s=duration,
            media=_media_dict(info),
            windows=windows,
            privacy=privacy,
            timings=timings,
            warnings=warnings,
            anonymized=anonymized,
        )

    def _audio(self, path: str) -> tuple[DeidAudio | None, float]:
        """The de-identified audio track and how far the output level control raised it, dB."""
        deid = VoiceDeidentifier(self.config.voice)
        audio = deidentified_audio(path, deid)
        return audio, voice_gain_db(deid)

    def _video(self, path, info, audio, save_anonymized, progress, timer):
        """Frame loop: decode -> de-identify -> (write) -> pose at the cue rate."""
        deid = VideoDeidentifier(self.config.video)
        limiter = RateLimiter(self.config.cues.pose_fps)
        writer = None
        if save_anonymized:
            writer = AnonymizedVideoWriter(
                save_anonymized, fps=info.fps or 25.0, audio_sr=audio.sr if audio else None
            )
        poses: list[PoseSample] = []
        warnings: list[str] = []
        report = DecodeReport()
        total = info.frame_count or (int(info.duration_s * info.fps) if info.fps else None)
        bar = tqdm(total=total, unit="frame", desc=os.path.basename(path),
                   disable=None if progress else True,  # None: only on a terminal
                   leave=False)
        last_t = 0.0
        try:
            frames = deidentified_frames(path, deid, self.config.analysis.max_side, report)
            while True:
                with timer("decode_deid"):
                    frame = next(frames, None)
                if frame is None:
                    break
                last_t = frame.t
                bar.update(1)
                if writer is not None:
                    with timer("encode"):
                        writer.write(frame)
                if limiter.should_sample(frame.t):
                    with timer("pose"):
                        sample = self.pose.estimate(frame)
                    if sample is not None:
                        poses.append(sample)
            if writer is not None:
                with timer("encode"):
                    if audio is not None:
                        writer.write_audio(audio)
                    writer.close()
                writer = None
        finally:
            bar.close()
            if writer is not None:
                writer.abort()
            deid.close()
        stats = deid.stats
        if stats.frames_seen == 0:
            if audio is None:
                raise InputError(f"{path}: no decodable video frames and no audio")
            warnings.append("video stream has no decodable frames; audio only")
        if report.truncated:
            warnings.append(report.truncated)
        if info.width and max(info.width, info.height or 0) > self.config.analysis.max_side:
            warnings.append(
                f"frames downscaled from {info.width}x{info.height} to fit "
                f"{self.config.analysis.max_side} px"
            )
        privacy = stats.to_dict()
        privacy["mask"] = self.config.video.mask
        return poses, privacy, warnings, last_t

    def _windows(
        self,
        duration: float,
        poses: list[PoseSample],
        audio: DeidAudio | None,
        video: bool,
        timer: StageTimer,
    ) -> list[WindowResult]:
        opts = self.config.analysis
        times = np.array([p.t for p in poses])
        results = []
        for start, end in window_bounds(duration, opts.window_s, opts.step_s):
            in_window = [poses[i] for i in np.flatnonzero((times >= start) & (times < end))]
            clip = audio.slice(start, end) if audio is not None else None
            with timer("cues"):
                cues = extract_cues(
                    start, end, in_window if video else None, clip, self.config.cues
                )
            answer = None
            if self.answerer is not None:
                answer = self.answerer.answer(cues, in_window if video else None, clip)
                for stage, seconds in answer.timings.items():
                    timer.seconds[stage] += seconds
            results.append(WindowResult(start, end, cues, answer))
        return results


def _media_dict(info) -> dict[str, Any]:
    return {
        "has_video": info.has_video,
        "has_audio": info.has_audio,
        "fps": round(info.fps, 3) if info.fps else None,
        "width": info.width,
        "height": info.height,
    }
