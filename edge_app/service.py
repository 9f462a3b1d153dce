"""systemd integration without extra dependencies: sd_notify and the watchdog.

Under a `Type=notify` unit systemd passes $NOTIFY_SOCKET (a unix datagram
socket; a leading '@' means the abstract namespace) and, with `WatchdogSec=`,
$WATCHDOG_USEC. Outside systemd every function here is a no-op returning False,
so `deemo-edge serve` behaves the same in a terminal.

    notify_ready("camera 0, mic default")       # after models are loaded
    beat = Heartbeat(max_age_s=20)              # the pipeline calls beat() per window
    with Watchdog(healthy=beat):                # pings only while the pipeline moves
        run()
    notify_stopping()

systemd starts counting the watchdog when the process starts, not at READY=1,
so start the `Watchdog` before loading models.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger("deemo_edge.service")


def notify(*assignments: str) -> bool:
    """Send "KEY=value" lines to systemd; False when not under systemd or on error."""
    address = _notify_address()
    if address is None:
        return False
    message = "\n".join(assignments).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
    except OSError as err:
        # Telling systemd is best effort: a lost notification must not stop the
        # pipeline (a missing READY or WATCHDOG makes systemd act by itself).
        log.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), err)
        return False
    return True


def notify_ready(status: str | None = None) -> bool:
    """Start-up finished (models loaded, devices open): systemd marks the unit active."""
    return notify("READY=1", *([_status_line(status)] if status else []))


def notify_status(text: str) -> bool:
    """One line shown by `systemctl status deemo-edge`."""
    return notify(_status_line(text))


def notify_stopping() -> bool:
    return notify("STOPPING=1")


def notify_watchdog() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between pings (half of WatchdogSec), or None when no watchdog is asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were started by the service's main process)
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 2e6 if value > 0 else None


class Heartbeat:
    """`healthy` for `Watchdog`: true while `beat()` was called within `max_age_s`."""

    def __init__(self, max_age_s: float):
        self.max_age_s = max_age_s
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def __call__(self) -> bool:
        return time.monotonic() - self._last <= self.max_age_s


class Watchdog:
    """Background thread sending WATCHDOG=1 every `interval` s while `healthy()` is true.

    When `healthy()` turns false the pings stop, so systemd kills and restarts
    a pipeline that hangs (e.g. a camera read that never returns). Without a
    watchdog (no $WATCHDOG_USEC) `start` does nothing.
    """

    def __init__(self, healthy: Callable[[], bool] | None = None, interval: float | None = None):
        self.healthy = healthy or (lambda: True)
        self.interval = interval if interval is not None else watchdog_interval()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pings = 0

    def start(self) -> Watchdog:
        if self.interval is None or self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="deemo-edge-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        warned = False
        while True:
            if self.healthy():
                if notify_watchdog():
                    self.pings += 1
                warned = False
            elif not warned:
                log.error(
                    "pipeline made no progress; withholding watchdog pings so systemd restarts it"
                )
                warned = True
            if self._stop.wait(self.interval):
                return


def _status_line(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line: a newline would start a new assignment


def _notify_address() -> str | bytes | None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    if path.startswith("@"):
        return b"\0" + path[1:].encode("utf-8")  # abstract namespace
    if path.startswith("/"):
        return path
    log.debug("NOTIFY_SOCKET=%s: unsupported address kind, not notifying", path)
    return None
