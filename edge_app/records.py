"""Small typed records that flow one way through the pipeline.

Raw media (`Frame`, `AudioChunk`) exists only between `edge_app.sources` and
`edge_app.deid`. Everything after the privacy boundary receives `DeidFrame` /
`DeidAudio`, whose constructors are only called by the de-identifiers, so a test
(and a reader) can check that nothing downstream ever holds raw media.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LABELS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixel coordinates of the frame it belongs to."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)


# --- raw media: only sources/ and deid/ may hold these -------------------------


@dataclass(frozen=True)
class Frame:
    """A raw decoded video frame (BGR uint8). Never leaves `edge_app.deid`."""

    index: int
    t: float
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class AudioChunk:
    """Raw mono float32 audio in [-1, 1]. Never leaves `edge_app.deid`."""

    t0: float
    samples: np.ndarray = field(repr=False)
    sr: int


# --- de-identified media: what the rest of the program sees --------------------


@dataclass(frozen=True)
class DeidFrame:
    """A frame after face/head removal.

    `masked_boxes` are the regions that were masked; `mask_sources` says for each
    box which signal asked for it: "face" (a face detector), "pose" (head region
    from pose landmarks only) or "persist" (kept from an earlier frame).
    """

    index: int
    t: float
    image: np.ndarray = field(repr=False)
    masked_boxes: tuple[Box, ...] = ()
    mask_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeidAudio:
    """Mono float32 audio after voice de-identification."""

    t0: float
    samples: np.ndarray = field(repr=False)
    sr: int
    method: str

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sr)

    def slice(self, start: float, end: float) -> DeidAudio:
        """The part between absolute times `start` and `end` (seconds)."""
        i0 = max(0, int(round((start - self.t0) * self.sr)))
        i1 = max(i0, int(round((end - self.t0) * self.sr)))
        return DeidAudio(t0=start, samples=self.samples[i0:i1], sr=self.sr, method=self.method)


@dataclass
class PrivacyStats:
    """Counters the video de-identifier keeps; reported under `privacy` in JSON."""

    frames_seen: int = 0
    frames_out: int = 0
    frames_dropped: int = 0
    frames_with_face: int = 0
    faces_masked: int = 0
    heads_masked_from_pose_only: int = 0
    heads_masked_from_persistence: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
