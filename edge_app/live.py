"""Live camera + microphone loop: capture -> de-identify -> pose -> windows -> cues -> sinks.

    camera thread   raw frame -> face removal ----> frames ring (DeidFrame)    } edge_app.deid.live:
    mic thread      raw chunk -> voice anonymiser -> audio ring (DeidAudio)    } raw media ends here
    pose thread     frames ring -> pose at the cue rate -> pose samples
    main thread     clock -> due windows -> pending queue (oldest dropped when full); preview
    worker thread   window -> extract_cues (+ optional `answer` hook) -> JSON result -> sinks

Windows are [start, start + window_s) on the session clock, one every hop_s. A
window is analysed once its last frames and audio have been through the
de-identifiers and pose (or `settle_s` after it ended, whichever comes first).
When the device cannot keep up, the pending queue drops its OLDEST windows, so
results stay recent; every drop is counted and reported in each result.

    session = LiveSession(config)          # opens devices (InputError if missing), loads models
    with stop_on_signals() as stop:
        summary = session.run(stop)         # until duration, end of a replayed file, or signal
    session.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_app.cues import CueOptions, Cues, extract_cues
from edge_app.cues.pose import PoseEstimator, PoseSample, RateLimiter
from edge_app.deid.live import (
    NONE,
    DeidentifiedCamera,
    DeidentifiedMicrophone,
    RingBuffer,
    SessionClock,
)
from edge_app.errors import UsageError
from edge_app.metrics import StageStats
from edge_app.priority import build_niced, nice_current_thread
from edge_app.records import DeidAudio, DeidFrame
from edge_app.sinks import ResultSink, publish_all

if TYPE_CHECKING:  # config imports this module for LiveOptions
    from edge_app.config import Config

log = logging.getLogger("deemo_edge.live")


@dataclass
class LiveOptions:
    """The [live] section: live capture and analysis (`deemo-edge live` / `serve`)."""

    # Camera: an index ("0" = /dev/video0), a device path, an RTSP/HTTP URL, a video
    # file (replayed at its own frame rate, in real time) or "none" (audio only). Default "0".
    camera: str = "0"
    # Microphone: "default", a PortAudio device index or part of its name, an audio
    # file (replayed in real time) or "none" (video only). Default "default".
    mic: str = "default"
    # Window length and step in seconds (defaults 4.0 / 2.0). Analysing a window
    # (cues) costs ~40 ms at 4 s, so the step is set by how fresh results must be;
    # 4 s gives prosody enough speech (pitch range, speaking rate).
    window_s: float = 4.0
    hop_s: float = 2.0
    # Show the de-identified frames with the latest result in a window (needs a
    # display; without one a warning is logged once and the loop goes on). Default False.
    preview: bool = False
    # Stop after this many seconds; None (default) = until Ctrl-C / SIGTERM.
    duration_s: float | None = None
    # Windows waiting for analysis; beyond this the OLDEST are dropped and counted. Default 2.
    max_pending_windows: int = 2
    # Pose samples per second; None (default) = cues.pose_fps.
    pose_fps: float | None = None
    # When the LLM writes reasoning text: "on_change" (default: only when the label
    # differs from the previous window's; otherwise the reasoning is built from the
    # measured cues, which keeps the 2-core latency budget), "always" or "never".
    reasoning: str = "on_change"
    # Latency budget for LLM-written reasoning, seconds after the window's end: the LLM
    # writes it only when it is expected to finish in time (and stops if not), else the
    # template from the measured cues goes out (`reasoning_late: true`). Keeps results
    # on time on a busy CPU. 0 = no limit. Default 1.8 (the p95 target is 2.0 s).
    reasoning_budget_s: float = 1.8
    # Nice-value increment of the camera (face removal) and pose threads, so the
    # analysis worker (encoders + LLM) gets the CPU first and results stay timely;
    # those stages discard or skip frames when they fall behind. 0 = same priority.
    # Default 5 (Linux; ignored elsewhere).
    capture_nice: int = 5
    # Face removal runs on at most this many camera frames per second; the others
    # are discarded raw (pose samples at a lower rate anyway). Default 10.
    max_video_fps: float = 10.0
    # De-identified frames waiting for pose; beyond this the oldest are dropped. Default 16.
    frame_buffer: int = 16
    # Pose skips a waiting frame captured more than this many seconds before the
    # newest camera frame, so a loaded CPU costs pose samples, not result latency
    # (skips are counted). Default 0.5.
    max_pose_lag_s: float = 0.5
    # Longest wait after a window ends for its last frames and audio to come
    # through de-identification and pose before it is analysed anyway. Default 1.0.
    settle_s: float = 1.0
    # Replay camera / mic files endlessly instead of stopping at their end
    # (benchmarks, demos). Default False.
    loop_files: bool = False
    # Seconds between status lines (stderr log, and systemd STATUS under serve). Default 30.
    status_every_s: float = 30.0

    def __post_init__(self) -> None:
        checks = {
            "window_s": self.window_s > 0,
            "hop_s": self.hop_s > 0,
            "max_pending_windows": self.max_pending_windows >= 1,
            "max_video_fps": self.max_video_fps > 0,
            "frame_buffer": self.frame_buffer >= 1,
            "settle_s": self.settle_s >= 0,
            "max_pose_lag_s": self.max_pose_lag_s > 0,
            "status_every_s": self.status_every_s > 0,
            "capture_nice": 0 <= self.capture_nice <= 19,
            "reasoning_budget_s": self.reasoning_budget_s >= 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise UsageError(f"config: 'live.{key}' = {getattr(self, key)!r} is out of range")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError(f"config: 'live.duration_s' must be > 0, got {self.duration_s!r}")
        if self.pose_fps is not None and self.pose_fps <= 0:
            raise UsageError(f"config: 'live.pose_fps' must be > 0, got {self.pose_fps!r}")
        if not self.camera.strip() or not self.mic.strip():
            raise UsageError("config: 'live.camera' and 'live.mic' must not be empty (use \"none\")")
        if self.camera.lower() == NONE and self.mic.lower() == NONE:
            raise UsageError("config: 'live.camera' and 'live.mic' are both \"none\": nothing to analyse")


@dataclass(frozen=True)
class LiveWindow:
    """One window's de-identified material, handed to the cue stage and the `answer` hook."""

    start: float
    end: float
    # Pose samples in [start, end) and how many frames pose ran on (found or not).
    poses: tuple[PoseSample, ...]
    pose_attempts: int
    # De-identified audio of [start, end); None without a microphone.
    audio: DeidAudio | None
    has_video: bool
    scheduled: float  # session time the window was queued
    # time.perf_counter() by which LLM reasoning must be done (live.reasoning_budget_s)
    deadline: float | None = None


# The LLM stage plugs in here: it gets the window's cues and material and returns
# keys to add to the result (e.g. label, scores, reasoning).
AnswerHook = Callable[[Cues, LiveWindow], "dict[str, Any] | None"]


@dataclass
class LiveSummary:
    """How a live run went; logged at the end, returned to callers (CLI, benchmark)."""

    reason: str  # "duration", "end of input", "signal SIGTERM", "interrupted"
    windows_published: int
    windows_dropped: int
    stages: dict[str, dict[str, Any]]
    privacy: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LiveSession:
    """Devices and models for one live run. Open = devices and models ready (then notify READY)."""

    def __init__(
        self,
        config: Config,
        sinks: list[ResultSink],
        *,
        answer: AnswerHook | None = None,
        on_status: Callable[[str], None] | None = None,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.options: LiveOptions = config.live
        self.sinks = sinks
        self.answer = answer
        self.on_status = on_status
        self.on_result = on_result
        o = self.options
        pose_fps = o.pose_fps or config.cues.pose_fps
        self.cue_options: CueOptions = dataclasses.replace(config.cues, pose_fps=pose_fps)
        self.clock = SessionClock()
        self.camera: DeidentifiedCamera | None = None
        self.mic: DeidentifiedMicrophone | None = None
        self._pose: PoseStage | None = None
        try:
            self._open(config, pose_fps)
        except BaseException:
            self.close()
            raise
        self.pending: RingBuffer[LiveWindow] = RingBuffer(o.max_pending_windows)
        self.stuck_threads: list[str] = []  # threads still running after shutdown
        self.stages = {name: StageStats(name) for name in ("cues", "answer", "latency")}
        self.published = 0
        self.latest_result: dict[str, Any] | None = None
        self._publish_lock = threading.Lock()
        self._sinks_open = True

    def _open(self, config: Config, pose_fps: float) -> None:
        o = self.options
        keep_s = o.window_s + o.hop_s * (o.max_pending_windows + 2) + o.settle_s + 5.0
        # Microphone first: it is cheap, so a missing device fails before models load.
        if o.mic.lower() != NONE:
            self.mic = DeidentifiedMicrophone(o.mic, self.clock, config.voice, keep_s=keep_s,
                                              loop=o.loop_files)
        if o.camera.lower() != NONE:
            self.camera = DeidentifiedCamera(
                o.camera, self.clock, config.video, max_fps=o.max_video_fps,
                max_side=config.analysis.max_side, capacity=o.frame_buffer, loop=o.loop_files,
                nice=o.capture_nice,
            )
            pose = build_niced(PoseEstimator, o.capture_nice)  # MediaPipe's threads inherit it
            self._pose = PoseStage(self.camera, pose, pose_fps, keep_s, nice=o.capture_nice,
                                   max_lag_s=o.max_pose_lag_s)

    @property
    def description(self) -> str:
        parts = [self.camera.description if self.camera else "no camera",
                 self.mic.description if self.mic else "no microphone"]
        return "; ".join(parts)

    # --- the loop ------------------------------------------------------------------

    def run(self, stop: threading.Event) -> LiveSummary:
        """Capture and analyse until `stop`, `duration_s` or the end of a replayed file."""
        o = self.options
        worker = _Worker(self)
        preview = Preview(o.preview)
        threads = [t for t in (self.camera, self.mic, self._pose) if t is not None]
        self.clock.restart()  # session time 0 = capture starts, not when models began loading
        log.info("live: %s; %g s windows every %g s", self.description, o.window_s, o.hop_s)
        for thread in threads + [worker]:
            thread.start()
        scheduler = _Scheduler(self)
        next_status = o.status_every_s
        reason = "stopped"
        try:
            while True:
                if stop.wait(0.05):
                    reason = getattr(stop, "reason", "stopped")
                    break
                now = self.clock()
                self._raise_capture_errors()
                scheduler.tick(now)
                preview.show(self.camera.latest if self.camera else None, self.latest_result)
                if preview.closed:
                    reason = "preview closed"
                    break
                ended = self._input_ended(now)
                if ended:
                    reason = ended
                    self._finish(scheduler, worker, stop, final_t=min(now, o.duration_s or now))
                    break
                if now >= next_status:
                    self._status()
                    next_status += o.status_every_s
        finally:
            self._shutdown(threads, worker)
            preview.close()
        self._raise_capture_errors()
        return self._summary(reason)

    def _input_ended(self, now: float) -> str | None:
        if self.options.duration_s is not None and now >= self.options.duration_s:
            return "duration"
        for thread in (self.camera, self.mic):
            if thread is not None and thread.ended.is_set():
                return "end of input"
        return None

    def _finish(self, scheduler: _Scheduler, worker: _Worker, stop: threading.Event, final_t: float) -> None:
        """End of input: analyse every complete window up to `final_t` (a signal cuts it short)."""
        for thread in (self.camera, self.mic):
            if thread is not None:
                thread.stop()
        deadline = time.monotonic() + self.options.settle_s + 2.0
        while time.monotonic() < deadline and not scheduler.done(final_t) and not stop.wait(0.02):
            scheduler.tick(self.clock(), final_t=final_t)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not stop.is_set() and not worker.drain(timeout=0.1):
            pass

    def _shutdown(self, threads: list[threading.Thread], worker: _Worker) -> None:
        """Stop every thread within ~1.5 s in total; then no result reaches the sinks."""
        for thread in threads:
            thread.stop()  # type: ignore[attr-defined]
        worker.stop()
        cancel = getattr(self.answer, "cancel", None)
        if cancel is not None:
            cancel()  # the LLM stops at its next token instead of finishing a sentence
        deadline = time.monotonic() + 1.5
        for thread in threads + [worker]:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self.stuck_threads.append(thread.name)
                log.warning("%s did not stop in time; leaving it", thread.name)
        with self._publish_lock:
            self._sinks_open = False
        discarded = len(self.pending)
        if discarded:
            log.info("live: %d pending window(s) discarded at shutdown", discarded)

    def _raise_capture_errors(self) -> None:
        for thread in (self.camera, self.mic, self._pose):
            if thread is not None and thread.error is not None:
                raise thread.error

    # --- results -------------------------------------------------------------------

    def analyse(self, window: LiveWindow) -> dict[str, Any]:
        """Cues (and the answer hook's keys) of one window, as the published JSON object."""
        started = self.clock()
        options = self.cue_options
        if window.pose_attempts:  # visible ratio against the frames pose really saw
            options = dataclasses.replace(options, pose_fps=window.pose_attempts / (window.end - window.start))
        t0 = time.perf_counter()
        cues = extract_cues(window.start, window.end, list(window.poses) if window.has_video else None,
                            window.audio, options)
        cues_s = time.perf_counter() - t0
        self.stages["cues"].add(cues_s)
        result: dict[str, Any] = {
            "start": round(window.start, 3),
            "end": round(window.end, 3),
            "clues": cues.describe(),
            "cues": cues.to_dict(options.ndigits),
        }
        answer_s = 0.0
        parts: dict[str, float] = {}
        if self.answer is not None:
            t0 = time.perf_counter()
            result.update(self._call_answer(cues, window))
            answer_s = time.perf_counter() - t0
            self.stages["answer"].add(answer_s)
            parts = result.pop("stage_timings", None) or {}
        result["timings"] = {
            "settle_s": round(window.scheduled - window.end, 3),
            "queue_s": round(started - window.scheduled, 3),
            "cues_s": round(cues_s, 4),
            "answer_s": round(answer_s, 4),
            # the answer's own parts, e.g. encoders_s, llm_s, llm_window_s, llm_reasoning_s
            **{f"{k}_s": round(float(v), 4) for k, v in parts.items()},
        }
        return result

    def _call_answer(self, cues: Cues, window: LiveWindow) -> dict[str, Any]:
        try:
            extra = self.answer(cues, window) or {}  # type: ignore[misc]
        except Exception as err:  # noqa: BLE001 - a failing answer stage must not stop capture
            log.warning("answer stage failed on window %.1f-%.1f s: %s: %s",
                        window.start, window.end, type(err).__name__, err)
            return {"answer_error": f"{type(err).__name__}: {err}"[:200]}
        reserved = {"start", "end", "clues", "cues", "wall_time", "latency_s", "dropped_windows"}
        return {k: v for k, v in extra.items() if k not in reserved}

    def publish(self, result: dict[str, Any], window: LiveWindow) -> None:
        """Stamp wall time, latency and drops, then send to every sink."""
        with self._publish_lock:
            if not self._sinks_open:
                return
            now = self.clock()
            result["wall_time"] = _iso(self.clock.wall(window.end))
            result["latency_s"] = round(now - window.end, 3)
            result["dropped_windows"] = self.pending.dropped
            try:
                publish_all(self.sinks, result)
            except (TypeError, ValueError, OSError) as err:
                log.error("result of window %.1f-%.1f s not published: %s", window.start, window.end, err)
                return
            self.stages["latency"].add(now - window.end)
            self.published += 1
            self.latest_result = result
        if self.on_result is not None:
            self.on_result(result)

    # --- reporting -------------------------------------------------------------------

    def metrics(self) -> dict[str, dict[str, Any]]:
        stages = {name: s.summary() for name, s in self.stages.items()}
        if self.camera is not None:
            stages["deid_video"] = self.camera.timing.summary()
        if self.mic is not None:
            stages["deid_voice"] = self.mic.timing.summary()
        if self._pose is not None:
            stages["pose"] = self._pose.timing.summary()
        return stages

    def status_line(self) -> str:
        p95 = self.stages["latency"].percentile(95)
        latency = f"{p95:.2f} s" if p95 is not None else "-"
        text = (f"{self.published} windows, {self.pending.dropped} dropped, latency p95 {latency}")
        if self.camera is not None:
            text += f", {self.camera.privacy.frames_out} frames de-identified"
        return text

    def _status(self) -> None:
        line = self.status_line()
        log.info("live: %s", line)
        if self.on_status is not None:
            self.on_status(line)

    def _summary(self, reason: str) -> LiveSummary:
        privacy: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        if self.camera is not None:
            privacy.update(self.camera.privacy.to_dict())
            extra["frames_rate_capped"] = self.camera.skipped
            extra["frames_stale"] = self.camera.frames_stale
            extra["frames_dropped_before_pose"] = self.camera.frames.dropped
        if self._pose is not None:
            extra["frames_skipped_by_pose"] = self._pose.skipped
        if self.mic is not None:
            privacy["voice_method"] = self.mic.method
            privacy["voice_gain_db"] = round(self.mic.output_gain_db, 1)
        summary = LiveSummary(reason, self.published, self.pending.dropped, self.metrics(), privacy, extra)
        log.info("live: stopped (%s): %s", reason, self.status_line())
        return summary

    def close(self) -> None:
        for thread in (self.camera, self.mic):
            if thread is not None:
                thread.close()
        if self._pose is not None and not self._pose.is_alive():
            self._pose.close()


class PoseStage(threading.Thread):
    """De-identified frames -> pose samples at the cue rate, kept for `keep_s` seconds."""

    def __init__(self, camera: DeidentifiedCamera, pose: PoseEstimator, fps: float, keep_s: float,
                 *, nice: int = 0, max_lag_s: float = math.inf) -> None:
        super().__init__(name="deemo-edge-pose", daemon=True)
        self.nice = nice
        self.max_lag_s = max_lag_s
        self.skipped = 0  # frames passed over because pose fell behind the camera
        self.camera = camera
        self.pose = pose
        self.limiter = RateLimiter(fps)
        self.keep_s = keep_s
        self.timing = StageStats("pose")
        self.done_t = -math.inf  # every frame before this time has been through pose
        self.error: BaseException | None = None
        self._samples: deque[PoseSample] = deque()
        self._attempts: deque[float] = deque()
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        nice_current_thread(self.nice)
        try:
            while not self._halt.is_set():
                frame = self.camera.frames.get(timeout=0.1)
                if frame is None:
                    if self.camera.ended.is_set():
                        self.done_t = math.inf  # nothing more will come
                    continue
                if self._behind(frame):
                    self.skipped += 1
                    self.done_t = frame.t
                else:
                    self._process(frame)
                self.camera.frames.task_done()
        except Exception as err:  # reported to the session, which stops
            log.exception("pose stage failed")
            self.error = err
        finally:
            self.close()

    def _behind(self, frame: DeidFrame) -> bool:
        """A newer frame is waiting and this one is too old to be worth the CPU."""
        return len(self.camera.frames) > 0 and frame.t < self.camera.read_t - self.max_lag_s

    def _process(self, frame: DeidFrame) -> None:
        if self.limiter.should_sample(frame.t):
            with self.timing.time():
                sample = self.pose.estimate(frame)
            with self._lock:
                self._attempts.append(frame.t)
                if sample is not None:
                    self._samples.append(sample)
                self._trim(frame.t)
        self.done_t = frame.t

    def _trim(self, now: float) -> None:
        while self._attempts and self._attempts[0] < now - self.keep_s:
            self._attempts.popleft()
        while self._samples and self._samples[0].t < now - self.keep_s:
            self._samples.popleft()

    def snapshot(self, start: float, end: float) -> tuple[tuple[PoseSample, ...], int]:
        with self._lock:
            poses = tuple(s for s in self._samples if start <= s.t < end)
            attempts = sum(1 for t in self._attempts if start <= t < end)
        return poses, attempts

    def stop(self) -> None:
        self._halt.set()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing twice or after a crash is harmless
            self.pose.close()


class _Scheduler:
    """Cuts the session clock into windows and queues each once its data is in."""

    def __init__(self, session: LiveSession) -> None:
        self.s = session
        self.next_start = 0.0

    def tick(self, now: float, final_t: float | None = None) -> None:
        o = self.s.options
        while True:
            start, end = self.next_start, self.next_start + o.window_s
            if final_t is not None and end > final_t + 1e-6:
                return
            if not (self._data_in(end) or now >= end + o.settle_s):
                return
            self.s.pending.put(self._window(start, end, now))
            self.next_start += o.hop_s

    def done(self, final_t: float) -> bool:
        return self.next_start + self.s.options.window_s > final_t + 1e-6

    def _data_in(self, end: float) -> bool:
        s = self.s
        video = s._pose is None or s._pose.done_t >= end or (
            # every frame before `end` was read and has been through pose
            s.camera.read_t >= end and s._pose.done_t >= s.camera.last_put_before(end))
        audio = s.mic is None or (s.mic.audio.end_t or -math.inf) >= end or s.mic.ended.is_set()
        return video and audio

    def _window(self, start: float, end: float, now: float) -> LiveWindow:
        s = self.s
        poses, attempts = s._pose.snapshot(start, end) if s._pose is not None else ((), 0)
        audio = s.mic.audio.slice(start, end) if s.mic is not None else None
        budget = s.options.reasoning_budget_s
        deadline = time.perf_counter() + (end + budget - now) if budget > 0 else None
        return LiveWindow(start, end, poses, attempts, audio, s.camera is not None, now, deadline)


class _Worker(threading.Thread):
    """Analyses queued windows in order and publishes each result."""

    def __init__(self, session: LiveSession) -> None:
        super().__init__(name="deemo-edge-analysis", daemon=True)
        self.s = session
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        pending = self.s.pending
        while not self._halt.is_set():
            window = pending.get(timeout=0.1)
            if window is None:
                continue
            try:
                self.s.publish(self.s.analyse(window), window)
            except Exception:  # one bad window must not end a months-long run
                log.exception("window %.1f-%.1f s failed", window.start, window.end)
            finally:
                pending.task_done()

    def drain(self, timeout: float) -> bool:
        """Wait until every queued window is published (end of input); False on timeout."""
        return self.s.pending.wait_done(timeout)

    def stop(self) -> None:
        self._halt.set()


# --- preview -------------------------------------------------------------------------


class Preview:
    """cv2.imshow of de-identified frames with the latest result; off without a display."""

    WINDOW = "deemo-edge (de-identified)"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.closed = False
        self._last_index: int | None = None
        if enabled:
            why = _no_display_reason()
            if why:
                log.warning("preview off: %s", why)
                self.enabled = False

    def show(self, frame: DeidFrame | None, result: dict[str, Any] | None) -> None:
        if not self.enabled or frame is None or frame.index == self._last_index:
            return
        self._last_index = frame.index
        import cv2

        try:
            cv2.imshow(self.WINDOW, _overlay(frame, result))
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27):
                self.closed = True
        except cv2.error as err:
            log.warning("preview off: OpenCV cannot show windows here (%s)", str(err).strip()[:120])
            self.enabled = False

    def close(self) -> None:
        if self.enabled:
            import cv2

            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.WINDOW)
                cv2.waitKey(1)


def _overlay(frame: DeidFrame, result: dict[str, Any] | None):
    """A copy of the de-identified frame with label, scores and top cues written on it."""
    import cv2

    image = frame.image.copy()
    lines: list[str] = []
    if result is not None:
        if "label" in result:
            lines.append(f"{result['label']}")
        scores = result.get("scores")
        if isinstance(scores, dict):
            top = sorted(scores.items(), key=lambda kv: -float(kv[1]))[:3]
            lines.append("  ".join(f"{k} {float(v):.2f}" for k, v in top))
        lines += [str(c) for c in result.get("clues", [])[:3]]
        lines.append(f"{result['start']:.0f}-{result['end']:.0f} s, latency {result['latency_s']:.2f} s")
    for i, text in enumerate(lines):
        y = 22 + 22 * i
        cv2.putText(image, text[:70], (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text[:70], (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def _no_display_reason() -> str | None:
    """Why no window can be opened, or None. Checked up front: Qt aborts the process
    (uncatchably) when $DISPLAY names an X server it cannot reach."""
    if os.environ.get("WAYLAND_DISPLAY"):
        return None
    display = os.environ.get("DISPLAY")
    if not display:
        return "no display ($DISPLAY is not set; headless)"
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return f"cannot parse DISPLAY={display!r}"
    if host in ("", "unix"):
        if os.path.exists(f"/tmp/.X11-unix/X{number}"):
            return None
        return f"no X server at DISPLAY={display}"
    try:
        with socket.create_connection((host, 6000 + int(number)), timeout=0.5):
            return None
    except OSError:
        return f"no X server reachable at DISPLAY={display}"


# --- signals -------------------------------------------------------------------------


class StopEvent(threading.Event):
    """A threading.Event that remembers why it was set."""

    reason = "stopped"

    def set_with(self, reason: str) -> None:
        self.reason = reason
        self.set()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopEvent]:
    """SIGTERM and SIGINT (Ctrl-C) set the event instead of killing the process.

    The loop checks it every 50 ms, so shutdown (threads joined, sinks closed)
    takes well under 2 s. Outside the main thread signals cannot be handled:
    the event is then only set by the caller.
    """
    stop = StopEvent()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: object) -> None:
        stop.set_with("interrupted" if signum == signal.SIGINT else f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _iso(unix_time: float) -> str:
    return dt.datetime.fromtimestamp(unix_time, dt.timezone.utc).isoformat(timespec="milliseconds")
