"""Raw video capture with OpenCV: a camera, a network stream, or a file replayed live.

Only `edge_app.deid` may use this module: it yields raw `Frame`s.

    source = open_camera("0", clock)        # /dev/video0 (V4L2)
    source = open_camera("clip.mp4", clock) # replayed at its own frame rate, in real time
    frame = source.read()                   # Frame, or None at the end of a file

Every frame carries its time on the session clock (`clock()`, seconds since the
live session started), so video and audio windows line up. A file is replayed
as if a camera were filming it: a reader that falls behind gets the frame that
is due *now*, the stale ones are skipped (decoded, never returned), exactly as a
slow reader of a real camera only ever sees recent frames.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import cv2

from edge_app.errors import InputError
from edge_app.records import Frame
from edge_app.sources.media import fit_within

URL_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")
# A live device that delivers no frame for this long is treated as gone.
STALL_S = 5.0


class CameraSource:
    """One opened camera, stream or file. Not thread-safe: one reader thread."""

    def __init__(
        self,
        spec: str,
        clock: Callable[[], float],
        *,
        loop: bool = False,
        max_side: int = 1280,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.loop = loop
        self.max_side = max_side
        self.stop = stop or threading.Event()
        self.is_file = _is_file_spec(spec)
        self.frames_skipped = 0  # stale file frames passed over to keep real time
        self._cap = _open_capture(spec, self.is_file)
        self.fps = _fps(self._cap)
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._index = 0
        self._offset: float | None = None  # session time of the file's t = 0 (plus loops)
        self._loop_len = 0.0  # duration of one pass through a looped file
        self._last_ok = time.monotonic()

    @property
    def description(self) -> str:
        kind = "file" if self.is_file else "camera"
        return f"{kind} {self.spec} ({self.width}x{self.height} @ {self.fps:.1f} fps)"

    def read(self) -> Frame | None:
        """The next frame: blocks until one is due; None at the end of a file or on stop."""
        if self.is_file:
            return self._read_file()
        return self._read_device()

    def close(self) -> None:
        self._cap.release()

    # --- devices and streams: time = when the frame arrived ------------------------

    def _read_device(self) -> Frame | None:
        while not self.stop.is_set():
            ok, image = self._cap.read()
            if ok and image is not None:
                self._last_ok = time.monotonic()
                return self._frame(self.clock(), image)
            if time.monotonic() - self._last_ok > STALL_S:
                raise InputError(f"camera {self.spec}: no frame for {STALL_S:.0f} s (unplugged?)")
            self.stop.wait(0.05)
        return None

    # --- files: time = the frame's own timestamp, paced against the clock ------------

    def _read_file(self) -> Frame | None:
        while not self.stop.is_set():
            if not self._cap.grab():
                if not self.loop or not self._rewind():
                    return None
                continue
            t = self._file_time()
            period = 1.0 / self.fps
            if t + period < self.clock():  # already stale: a camera would have moved on
                self.frames_skipped += 1
                continue
            if self.stop.wait(max(0.0, t - self.clock())):
                return None
            ok, image = self._cap.retrieve()
            if not ok or image is None:
                return None
            return self._frame(t, image)
        return None

    def _file_time(self) -> float:
        pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        own = pos_ms / 1000.0 if pos_ms > 0 or self._index == 0 else self._index / self.fps
        if self._offset is None:
            self._offset = self.clock() - own  # the first frame is due now
        self._loop_len = max(self._loop_len, own + 1.0 / self.fps)
        self._index += 1
        return self._offset + own

    def _rewind(self) -> bool:
        if self._loop_len <= 0 or not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return False
        self._offset = (self._offset or 0.0) + self._loop_len
        self._index = 0
        return True

    def _frame(self, t: float, image) -> Frame:
        frame = Frame(index=self._index, t=t, image=fit_within(image, self.max_side))
        if not self.is_file:
            self._index += 1
        return frame


def open_camera(
    spec: str,
    clock: Callable[[], float],
    *,
    loop: bool = False,
    max_side: int = 1280,
    stop: threading.Event | None = None,
) -> CameraSource:
    """Open `spec`: an index ("0"), a device path, a stream URL or a video file."""
    return CameraSource(spec, clock, loop=loop, max_side=max_side, stop=stop)


def _is_file_spec(spec: str) -> bool:
    return not (spec.isdigit() or spec.startswith("/dev/") or spec.lower().startswith(URL_PREFIXES))


def _open_capture(spec: str, is_file: bool) -> cv2.VideoCapture:
    # OpenCV prints its own warnings for a missing device; the user gets ours instead.
    if hasattr(cv2, "setLogLevel"):
        cv2.setLogLevel(0)  # 0 = silent
    if is_file:
        if not os.path.exists(spec):
            raise InputError(f"camera {spec}: no such file or device")
        if os.path.isdir(spec):
            raise InputError(f"camera {spec}: is a folder, not a video file")
        cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
    elif spec.isdigit():
        cap = cv2.VideoCapture(int(spec), cv2.CAP_V4L2)
    elif spec.startswith("/dev/"):
        if not os.path.exists(spec):
            raise InputError(f"camera {spec}: no such device (use --camera none for audio only)")
        cap = cv2.VideoCapture(spec, cv2.CAP_V4L2)
    else:
        cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise InputError(f"camera {spec}: {_why_not_open(spec, is_file)}")
    if not is_file:
        # Keep only the newest frame in the driver: a slow reader must see "now",
        # not a queue of old frames.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


def _why_not_open(spec: str, is_file: bool) -> str:
    if is_file:
        return "not a readable video file"
    if spec.isdigit():
        device = f"/dev/video{spec}"
        if not os.path.exists(device):
            return f"no such camera ({device} does not exist; use --camera none for audio only)"
        return f"cannot open {device} (busy, or no permission: is the user in group 'video'?)"
    return "cannot open the device or stream"


def _fps(cap: cv2.VideoCapture) -> float:
    fps = cap.get(cv2.CAP_PROP_FPS)
    # Some drivers and streams report 0 or nonsense; 30 is the common camera rate.
    return float(fps) if 1.0 <= fps <= 240.0 else 30.0
