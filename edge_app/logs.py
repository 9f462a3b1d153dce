"""Keep stderr readable: MediaPipe/TFLite write C++ log lines straight to fd 2.

Those lines ("W0000 ... inference_feedback_manager.cc", "INFO: Created TensorFlow
Lite XNNPACK delegate") bypass Python logging, so they cannot be filtered there.
`filter_native_stderr()` puts a pipe behind fd 2 and forwards every line except
the known-noise patterns to the original stderr. Python's own `sys.stderr`
(logs, progress bars, error messages) keeps writing to the original stream, so
nothing of ours is delayed or lost.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NOISE = re.compile(
    rb"^(?:[WI]\d{4} [\d:. ]+\d+ \S+\.cc:\d+\]"  # absl/glog prefix: W0000 00:00:... file.cc:114]
    rb"|INFO: Created TensorFlow Lite"
    rb"|WARNING: All log messages before absl::InitializeLog"
    rb"|WARNING: Logging before InitGoogleLogging)"
)

_installed = False


def filter_native_stderr() -> None:
    """Route fd 2 through a filter thread (idempotent; no-op if fd 2 is not usable)."""
    global _installed
    if _installed:
        return
    try:
        original = os.dup(2)
    except OSError:
        return
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    # Python-level writes go straight to the original stream, unfiltered.
    sys.stderr = os.fdopen(os.dup(original), "w", buffering=1, encoding="utf-8",
                           errors="replace")
    thread = threading.Thread(target=_pump, args=(read_fd, original), daemon=True,
                              name="stderr-filter")
    thread.start()
    _installed = True

    def _flush() -> None:
        # Close our end of fd 2 so the pump sees EOF, then let it drain.
        try:
            os.dup2(original, 2)
        except OSError:
            return
        thread.join(timeout=0.5)

    atexit.register(_flush)


def _pump(read_fd: int, out_fd: int) -> None:
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        pending = b""
        while True:
            chunk = pipe.read(4096)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not NOISE.match(line):
                    os.write(out_fd, line + b"\n")
        if pending and not NOISE.match(pending):
            os.write(out_fd, pending)
