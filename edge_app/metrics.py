"""Per-stage timing statistics for long-running loops, in bounded memory.

A device runs for months, so a stage keeps its count and total for ever but
only the most recent `keep` durations for percentiles.

    deid = StageStats("deid")
    with deid.time():
        ...
    deid.summary()  # {"count": 812, "mean_s": 0.041, "p50_s": 0.039, "p95_s": 0.061, "max_s": 0.2}
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class StageStats:
    """Durations (or latencies) of one stage; safe to add to from one thread, read from any."""

    def __init__(self, name: str, keep: int = 2000) -> None:
        self.name = name
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self._recent: deque[float] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
            self.total += seconds
            self.max = max(self.max, seconds)
            self._recent.append(seconds)

    @contextmanager
    def time(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(time.perf_counter() - start)

    def percentile(self, q: float) -> float | None:
        with self._lock:
            values = list(self._recent)
        return float(np.percentile(values, q)) if values else None

    def summary(self, ndigits: int = 4) -> dict[str, float | int | None]:
        """count, mean, p50 and p95 (of the recent values) and max, in seconds."""
        with self._lock:
            values = np.array(self._recent)
            count, total, biggest = self.count, self.total, self.max
        if not count:
            return {"count": 0, "mean_s": None, "p50_s": None, "p95_s": None, "max_s": None}
        return {
            "count": count,
            "mean_s": round(total / count, ndigits),
            "p50_s": round(float(np.percentile(values, 50)), ndigits),
            "p95_s": round(float(np.percentile(values, 95)), ndigits),
            "max_s": round(biggest, ndigits),
        }
