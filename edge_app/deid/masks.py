"""Turn a face box into a head box and paint over it.

Modes: "solid" (default: black fill, nothing recoverable), "pixelate" (a few
big blocks), "blur" (a very strong blur). Shapes: "ellipse" (default, follows
the head) or "rect" (covers the corners too). All functions work in place on a
BGR uint8 image and clip to its borders.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_app.errors import UsageError
from edge_app.records import Box

MASK_MODES = ("solid", "pixelate", "blur")
MASK_SHAPES = ("ellipse", "rect")

# Fraction of the face-box height the head box is moved up: detectors box the
# face from the brows down, and hair sits above that.
HAIR_SHIFT = 0.12
# Pixelate: blocks across the box; blur: the box is shrunk to this many pixels
# across before being blown up again (far stronger than a Gaussian of any
# practical size, and cheaper).
PIXEL_BLOCKS = 6
BLUR_PIXELS = 4


def check_mask(mode: str, shape: str) -> None:
    if mode not in MASK_MODES:
        raise UsageError(f"mask must be one of {', '.join(MASK_MODES)}, not {mode!r}")
    if shape not in MASK_SHAPES:
        raise UsageError(f"mask shape must be one of {', '.join(MASK_SHAPES)}, not {shape!r}")


def head_box(
    x0: float, y0: float, x1: float, y1: float, scale: float, shift: float = HAIR_SHIFT
) -> tuple[float, float, float, float]:
    """Grow a face box by `scale` (on width and height) around a centre moved up for hair."""
    w, h = x1 - x0, y1 - y0
    side = max(w, h)  # faces turned sideways give narrow boxes; the head is not narrow
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - shift * h
    hw, hh = side * scale / 2, side * scale * 1.1 / 2  # heads are taller than wide
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def to_box(coords: tuple[float, float, float, float] | np.ndarray, width: int, height: int) -> Box:
    """Clip float coords to the image and round outwards (never lose a pixel row)."""
    x0, y0, x1, y1 = (float(v) for v in coords)
    return Box(
        max(0, int(np.floor(x0))),
        max(0, int(np.floor(y0))),
        min(width, int(np.ceil(x1))),
        min(height, int(np.ceil(y1))),
    )


def apply_mask(image: np.ndarray, box: Box, mode: str = "solid", shape: str = "ellipse") -> None:
    """Paint over `box` of `image` in place."""
    if box.area == 0:
        return
    roi = image[box.y0 : box.y1, box.x0 : box.x1]
    if mode == "solid":
        # Paint black straight into the frame: the same pixels as `region`
        # (same rasteriser, same ellipse), without building a mask.
        h, w = roi.shape[:2]
        if shape == "rect" or _at_edge(box, image.shape[0], image.shape[1]):
            roi[:] = 0
        else:
            cv2.ellipse(roi, _ellipse_rect(h, w), (0, 0, 0), -1)
        return
    if mode == "pixelate":
        cover = _pixelate(roi, PIXEL_BLOCKS)
    elif mode == "blur":
        cover = _heavy_blur(roi, BLUR_PIXELS)
    else:
        raise UsageError(f"mask must be one of {', '.join(MASK_MODES)}, not {mode!r}")
    inside = region(box, shape, image.shape[0], image.shape[1])
    roi[inside] = cover[inside]


def region(box: Box, shape: str, height: int, width: int) -> np.ndarray:
    """Boolean mask (box-sized) of the pixels `apply_mask` paints for `box`.

    A box cut by the frame edge is filled as a rectangle: the ellipse
    inscribed in a cut box would leave the corner of a half-visible head bare.
    """
    h, w = box.y1 - box.y0, box.x1 - box.x0
    if shape == "rect" or _at_edge(box, height, width):
        return np.ones((h, w), bool)
    return _ellipse(h, w)


def covered(boxes: list[Box], shape: str, height: int, width: int) -> np.ndarray:
    """Boolean image of everything the masks of `boxes` paint (tests and benchmarks)."""
    out = np.zeros((height, width), bool)
    for box in boxes:
        if box.area:
            out[box.y0 : box.y1, box.x0 : box.x1] |= region(box, shape, height, width)
    return out


def _at_edge(box: Box, height: int, width: int) -> bool:
    return box.x0 <= 0 or box.y0 <= 0 or box.x1 >= width or box.y1 >= height


def _ellipse_rect(h: int, w: int) -> tuple:
    return (((w - 1) / 2, (h - 1) / 2), (w, h), 0)


def _ellipse(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, _ellipse_rect(h, w), 255, -1)
    return mask.astype(bool)


def _pixelate(roi: np.ndarray, blocks: int) -> np.ndarray:
    h, w = roi.shape[:2]
    bw = max(1, min(blocks, w))
    bh = max(1, min(int(round(blocks * h / max(w, 1))), h))
    small = cv2.resize(roi, (bw, bh), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _heavy_blur(roi: np.ndarray, pixels: int) -> np.ndarray:
    h, w = roi.shape[:2]
    small = cv2.resize(roi, (max(1, min(pixels, w)), max(1, min(pixels, h))), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    k = max(3, (min(h, w) // 4) | 1)  # odd kernel; removes the blocky edges of the upscale
    return cv2.GaussianBlur(big, (k, k), 0)
