"""Results appended to a JSON Lines file that rotates by size.

    results.jsonl     the file being written
    results.jsonl.1   the previous one ... results.jsonl.N the oldest kept

A line is never split across files: rotation happens before a line that
would not fit. A device runs for months, so the total is bounded by
(backups + 1) * max_bytes (plus at most one line).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from edge_app.errors import UsageError
from edge_app.sinks.base import encode_result

log = logging.getLogger("deemo_edge.sinks")


@dataclass
class JsonlOptions:
    """Where the JSON Lines file lives and how much of it is kept."""

    # File to append to; "~" is expanded and missing folders are created.
    path: str
    # Rotate before the file would grow past this many bytes (default 10 MiB).
    max_bytes: int = 10 * 1024 * 1024
    # Rotated files kept (path.1 .. path.N); 0 keeps none: a full file is
    # started afresh. Default 5.
    backups: int = 5
    # fsync after every line (default False). Each line is always flushed to
    # the OS; fsync also survives a power cut, at one disk sync per result.
    fsync: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise UsageError("output.jsonl_path must be a file path")
        if self.max_bytes < 1024:
            raise UsageError(f"output.jsonl_max_bytes must be >= 1024, got {self.max_bytes}")
        if self.backups < 0:
            raise UsageError(f"output.jsonl_backups must be >= 0, got {self.backups}")


class JsonlSink:
    """Appends one JSON object per line; safe to call from several threads."""

    def __init__(self, options: JsonlOptions):
        self.options = options
        self.path = os.path.expanduser(options.path)
        self._lock = threading.Lock()
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self._file = self._open()

    def publish(self, result: dict) -> None:
        data = (encode_result(result) + "\n").encode("utf-8")
        with self._lock:
            if self._file is None:
                raise ValueError(f"{self.path}: sink is closed")
            size = self._file.tell()
            if size > 0 and size + len(data) > self.options.max_bytes:
                self._rotate()
            self._file.write(data)
            self._file.flush()
            if self.options.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self):
        # Binary append: tell() is the byte size, also after a restart.
        return open(self.path, "ab")

    def _rotate(self) -> None:
        self._file.close()
        backups = self.options.backups
        if backups == 0:
            os.remove(self.path)
        else:
            # Shift path.(N-1) -> path.N ... path -> path.1; path.N falls off.
            for i in range(backups - 1, 0, -1):
                older = f"{self.path}.{i}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        log.debug("rotated %s (%d backups kept)", self.path, backups)
        self._file = self._open()
