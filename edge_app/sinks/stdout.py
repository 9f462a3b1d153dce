"""Results as JSON Lines on standard output (under systemd: into the journal)."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from edge_app.sinks.base import encode_result


class StdoutSink:
    """One JSON object per line, flushed after each line so readers see it at once."""

    def __init__(self, stream: TextIO | None = None):
        # None: look up sys.stdout at each write, so redirection after start-up
        # (and pytest's capture) is honoured.
        self._stream = stream
        self._lock = threading.Lock()

    def publish(self, result: dict) -> None:
        line = encode_result(result) + "\n"
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()

    def close(self) -> None:
        # Standard output belongs to the process, not to the sink: flush, never close.
        (self._stream or sys.stdout).flush()
