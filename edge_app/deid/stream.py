"""Absolute-index sample buffers for frame-based streaming DSP.

Every stage of the voice de-identifier works on a fixed frame grid counted from
the first sample of the stream. A stage processes a frame only once all the
samples it reads are final, so the output does not depend on how the input was
cut into chunks: feeding 0.5 s chunks gives the same samples as one whole file.
"""

from __future__ import annotations

import numpy as np


class Tape:
    """Append-only signal addressed by absolute sample index.

    Indices below zero read as silence (the stream's past before it started);
    samples before `start` may be dropped with `trim` to bound memory.
    """

    def __init__(self) -> None:
        self.buf = np.zeros(0)
        self.start = 0

    @property
    def end(self) -> int:
        """One past the last sample written."""
        return self.start + len(self.buf)

    def append(self, samples: np.ndarray) -> None:
        self.buf = np.concatenate([self.buf, np.asarray(samples, dtype=np.float64)])

    def get(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b); negative indices are zeros."""
        lo = max(a, 0)
        if b > self.end or (lo < b and lo < self.start):
            raise IndexError(f"tape read [{a}, {b}) outside [{self.start}, {self.end})")
        body = self.buf[lo - self.start : b - self.start] if lo < b else np.zeros(0)
        if a >= 0:
            return body
        return np.concatenate([np.zeros(min(-a, b - a)), body])

    def at(self, idx: np.ndarray) -> np.ndarray:
        """Values at absolute indices, each in [start, end)."""
        idx = np.asarray(idx, dtype=int)
        if len(idx) and (idx.min() < self.start or idx.max() >= self.end):
            raise IndexError(f"tape read at [{idx.min()}, {idx.max()}] outside [{self.start}, {self.end})")
        return self.buf[idx - self.start]

    def trim(self, keep_from: int) -> None:
        """Forget samples before `keep_from` (never needed again)."""
        drop = min(max(0, keep_from - self.start), len(self.buf))
        if drop:
            self.buf = self.buf[drop:]
            self.start += drop


class OlaTape:
    """Overlap-add accumulator; samples before `emitted` have been handed out."""

    def __init__(self) -> None:
        self.buf = np.zeros(0)
        self.start = 0  # absolute index of buf[0] == first sample not yet emitted

    def add(self, pos: int, frames: np.ndarray, hop: int) -> None:
        """Add rows of `frames` (n, L) at pos, pos + hop, ...; negative parts are dropped."""
        n, length = frames.shape
        segs = -(-length // hop)
        if segs * hop != length:  # pad rows to whole hops so they tile exactly
            frames = np.pad(frames, ((0, 0), (0, segs * hop - length)))
        end = pos + (n + segs - 1) * hop
        if end - self.start > len(self.buf):
            self.buf = np.concatenate([self.buf, np.zeros(end - self.start - len(self.buf))])
        # segment j of row i lands at pos + (i + j) * hop: one contiguous add per j
        for j in range(segs):
            seg = frames[:, j * hop : (j + 1) * hop].reshape(-1)
            a = pos + j * hop - self.start
            if a < 0:
                seg, a = seg[-a:], 0
            self.buf[a : a + len(seg)] += seg

    def pop(self, upto: int) -> np.ndarray:
        """Hand out the final samples [start, upto)."""
        count = max(0, upto - self.start)
        if count > len(self.buf):
            self.buf = np.concatenate([self.buf, np.zeros(count - len(self.buf))])
        out, self.buf = self.buf[:count], self.buf[count:]
        self.start += count
        return out
