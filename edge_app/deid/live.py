"""Live capture inside the privacy boundary: each thread owns a raw source AND its de-identifier.

    clock = SessionClock()
    camera = DeidentifiedCamera("0", clock, VideoDeidOptions())       # opens the device now
    mic = DeidentifiedMicrophone("default", clock, VoiceDeidOptions())
    camera.start(); mic.start()
    frame = camera.frames.get(timeout=0.1)   # DeidFrame (faces already covered) or None
    audio = mic.audio.slice(2.0, 6.0)        # DeidAudio (voice already anonymised) or None
    camera.stop(); mic.stop()

A raw `Frame` / `AudioChunk` lives for one loop iteration in one of these
threads: it is read, de-identified, and dropped. Nothing raw is queued, kept,
logged or written; the buffers the rest of the program reads hold de-identified
records only, and are bounded (a slow reader loses the oldest entries, which are
counted).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

from edge_app.deid.files import voice_gain_db
from edge_app.deid.video import VideoDeidentifier, VideoDeidOptions
from edge_app.deid.voice import SR, VoiceDeidentifier, VoiceDeidOptions
from edge_app.errors import DeemoError
from edge_app.metrics import StageStats
from edge_app.priority import build_niced, nice_current_thread
from edge_app.records import DeidAudio, DeidFrame, PrivacyStats
from edge_app.sources.camera import open_camera
from edge_app.sources.microphone import open_microphone

log = logging.getLogger("deemo_edge.live")

T = TypeVar("T")

NONE = "none"  # camera / mic spec that turns the stream off


class SessionClock:
    """Seconds since the live session started; shared by every stream so windows line up."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """Time 0 = now. Call before the capture threads start (sources stamp lazily)."""
        self.start_monotonic = time.monotonic()
        self.start_wall = time.time()

    def __call__(self) -> float:
        return time.monotonic() - self.start_monotonic

    def wall(self, t: float) -> float:
        """Unix time of session time `t`."""
        return self.start_wall + t


class RingBuffer(Generic[T]):
    """Bounded FIFO between two threads: a full buffer drops its oldest item (counted).

    Like `queue.Queue`, a consumer may call `task_done()` after each item it got,
    and `wait_done()` waits until every item put was either done or dropped.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._items: deque[T] = deque()
        self.capacity = capacity
        self.dropped = 0
        self._unfinished = 0
        self._cond = threading.Condition()

    def put(self, item: T) -> None:
        with self._cond:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
                self._unfinished -= 1
            self._items.append(item)
            self._unfinished += 1
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, waiting up to `timeout` s; None when there is none."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def task_done(self) -> None:
        with self._cond:
            self._unfinished = max(0, self._unfinished - 1)
            self._cond.notify_all()

    def wait_done(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._unfinished == 0, timeout)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class AudioRing:
    """The last `keep_s` seconds of de-identified audio, as contiguous pieces."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._pieces: deque[DeidAudio] = deque()
        self._lock = threading.Lock()
        self.end_t: float | None = None  # session time just after the newest sample
        self.method: str | None = None

    def append(self, audio: DeidAudio) -> None:
        if not len(audio.samples):
            return
        with self._lock:
            self._pieces.append(audio)
            self.end_t = audio.t0 + audio.duration
            self.method = audio.method
            while self._pieces and self._pieces[0].t0 + self._pieces[0].duration < self.end_t - self.keep_s:
                self._pieces.popleft()

    def slice(self, start: float, end: float) -> DeidAudio | None:
        """Audio of [start, end); silence where nothing was captured; None if nothing overlaps."""
        with self._lock:
            pieces = [p for p in self._pieces if p.t0 < end and p.t0 + p.duration > start]
        if not pieces:
            return None
        first = pieces[0]
        samples = np.concatenate([p.samples for p in pieces])
        lead = int(round((first.t0 - start) * SR))
        if lead > 0:  # the stream began inside the window: keep times aligned
            samples = np.concatenate([np.zeros(lead, np.float32), samples])
        joined = DeidAudio(t0=min(first.t0, start), samples=samples, sr=first.sr, method=first.method)
        return joined.slice(start, end)


class _CaptureThread(threading.Thread):
    """Runs `_loop` until the stream ends or `stop()`; keeps the error that ended it."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)  # daemon: a wedged driver cannot block exit
        self.stop_event = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self.last_data = time.monotonic()

    def run(self) -> None:
        try:
            self._loop()
        except DeemoError as err:
            self.error = err
        except Exception as err:  # reported to the owner, who stops the session
            log.exception("%s failed", self.name)
            self.error = err
        finally:
            self._release()
            self.ended.set()

    def stop(self) -> None:
        self.stop_event.set()

    def _loop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class DeidentifiedCamera(_CaptureThread):
    """Camera -> face removal -> `frames` (a ring of `DeidFrame`s). Raw frames never leave.

    `max_fps` caps how many frames per second are de-identified; the camera's
    other frames are discarded raw (they would only cost CPU: pose samples at a
    lower rate). `loop` replays a file endlessly (benchmarks).
    """

    def __init__(
        self,
        spec: str,
        clock: SessionClock,
        options: VideoDeidOptions,
        *,
        max_fps: float = 10.0,
        max_side: int = 1280,
        capacity: int = 16,
        loop: bool = False,
        deidentifier: Callable[[], VideoDeidentifier] | None = None,
        nice: int = 0,
    ) -> None:
        super().__init__(name="deemo-edge-camera")
        self.nice = nice  # priority below the analysis worker's (edge_app/priority.py)
        self.period = 1.0 / max_fps if max_fps > 0 else 0.0
        # The device first: a missing camera fails in a second, before models load.
        self._source = open_camera(spec, clock, loop=loop, max_side=max_side, stop=self.stop_event)
        try:
            make = deidentifier or (lambda: VideoDeidentifier(options))
            self._deid = build_niced(make, nice)  # its detector threads inherit the priority
        except BaseException:
            self._source.close()
            raise
        self.description = self._source.description
        self.frames: RingBuffer[DeidFrame] = RingBuffer(capacity)
        self.latest: DeidFrame | None = None  # for the preview
        self.timing = StageStats("deid_video")
        self.skipped = 0  # raw frames discarded by the rate cap
        self.read_t = -math.inf  # capture time of the newest frame read from the device
        self._next_t: float | None = None
        self._put_times: deque[float] = deque(maxlen=256)  # of frames handed on, oldest first
        self._put_lock = threading.Lock()

    @property
    def privacy(self) -> PrivacyStats:
        return self._deid.stats

    @property
    def frames_stale(self) -> int:
        """File frames passed over because de-identification fell behind real time."""
        return self._source.frames_skipped

    def _loop(self) -> None:
        nice_current_thread(self.nice)
        while not self.stop_event.is_set():
            frame = self._source.read()
            if frame is None:
                return
            self.last_data = time.monotonic()
            self.read_t = frame.t
            if not self._due(frame.t):
                self.skipped += 1
                continue
            with self.timing.time():
                out = self._deid.process(frame)
            del frame  # the raw frame dies here
            if out is not None:
                with self._put_lock:
                    self._put_times.append(out.t)
                self.frames.put(out)
                self.latest = out

    def last_put_before(self, t: float) -> float:
        """Capture time of the newest frame handed on with time < t (-inf if none is known).

        Once `read_t >= t`, frames are read and handed on in order, so no later frame
        with time < t can still come: a consumer that has processed this one is done with
        everything before t, without waiting for a frame after t to come through.
        """
        with self._put_lock:
            return next((x for x in reversed(self._put_times) if x < t), -math.inf)

    def _due(self, t: float) -> bool:
        """Rate cap on a drift-free schedule (a 30 fps camera at 10 keeps every third frame)."""
        if self.period <= 0:
            return True
        tol = 1e-3  # container timestamp rounding
        if self._next_t is None or t < self._next_t - 2 * self.period - tol:  # start, or time jumped back
            self._next_t = t + self.period
            return True
        if t + tol < self._next_t:
            return False
        while self._next_t <= t + tol:
            self._next_t += self.period
        return True

    def _release(self) -> None:
        self._source.close()
        self._deid.close()

    def close(self) -> None:
        """Release the device and models when the thread was never started."""
        if not self.is_alive() and not self.ended.is_set():
            self._release()


class DeidentifiedMicrophone(_CaptureThread):
    """Microphone -> voice anonymisation -> `audio` (the last `keep_s` s of `DeidAudio`)."""

    def __init__(
        self,
        spec: str,
        clock: SessionClock,
        options: VoiceDeidOptions,
        *,
        keep_s: float = 30.0,
        chunk_s: float = 0.1,
        loop: bool = False,
    ) -> None:
        super().__init__(name="deemo-edge-microphone")
        self._deid = VoiceDeidentifier(options)
        self._source = open_microphone(spec, clock, chunk_s=chunk_s, loop=loop, stop=self.stop_event)
        self.description = self._source.description
        self.method = self._deid.method
        self.latency_s = self._deid.latency_s + chunk_s
        self.audio = AudioRing(keep_s)
        self.timing = StageStats("deid_voice")

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            chunk = self._source.read()
            if chunk is None:
                break
            self.last_data = time.monotonic()
            with self.timing.time():
                out = self._deid.feed(chunk)
            del chunk  # the raw audio dies here
            self.audio.append(out)
        self.audio.append(self._deid.flush())

    @property
    def output_gain_db(self) -> float:
        """How far the output level control raises this microphone's voice now, dB."""
        return voice_gain_db(self._deid)

    def _release(self) -> None:
        self._source.close()

    def close(self) -> None:
        if not self.is_alive() and not self.ended.is_set():
            self._release()
