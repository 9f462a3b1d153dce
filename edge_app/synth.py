"""Moving test clips built from free photos that ship inside installed packages.

The privacy tests, the benchmarks and the bundled sample need videos with real
faces in them, and we want no downloads and no faces of people who did not
agree to be filmed. So every clip is made from:

* `astronaut.png` - Eileen Collins, NASA portrait, public domain (scikit-image)
* `grace_hopper.jpg` - Grace Hopper, public domain (matplotlib sample data)
* `camera.png` - the "cameraman" photo (scikit-image)
* `lfw_subset.npy` - 25x25 face crops from Labeled Faces in the Wild (scikit-image)

A scene is a large still "world" image made of these photos (several people,
several sizes, mirrored and rotated copies); a virtual camera then pans, zooms
and rolls over it, which gives the detectors motion, scale change and rotation.
Clips are written with PyAV (libx264, yuv420p), optionally with a mono audio
track given as a numpy array. `door_slam` is the loud transient that the voice
privacy test and benchmark play before quiet speech.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

SCENES = ("sample", "crowd", "single", "small")


# --- photos ---------------------------------------------------------------------


def _skimage_data(name: str) -> str:
    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


def load_photo(name: str) -> np.ndarray:
    """One of the bundled photos as BGR uint8: astronaut, grace_hopper, camera."""
    if name == "grace_hopper":
        import matplotlib

        path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    elif name in ("astronaut", "camera"):
        path = _skimage_data(f"{name}.png")
    else:
        raise ValueError(f"unknown photo {name!r}")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(path)
    return image


def lfw_faces(count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """`count` LFW face crops (the first 100 of lfw_subset are faces), BGR 25x25."""
    faces = np.load(_skimage_data("lfw_subset.npy"))[:100]
    picks = np.random.default_rng(seed).choice(len(faces), size=count, replace=False)
    return [cv2.cvtColor((faces[i] * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR) for i in picks]


# Where the face is in each photo (x0, y0, x1, y1, photo pixels): found with
# OpenCV's Haar cascades on the stills and checked by eye. Tests use them as
# ground truth to tell a real face from a Haar false alarm on the background.
PHOTO_FACES: dict[str, tuple[float, float, float, float]] = {
    "astronaut": (177, 67, 270, 160),
    "grace_hopper": (149, 100, 380, 331),
    "camera": (185, 111, 267, 193),
    "lfw": (0, 0, 25, 25),
}


# --- worlds (still canvases the camera moves over) ------------------------------


@dataclass(frozen=True)
class Placed:
    """Where a photo was pasted in the world and where its face ended up."""

    name: str
    box: tuple[int, int, int, int]
    face: tuple[float, float, float, float]


def _background(h: int, w: int, seed: int) -> np.ndarray:
    # Smooth colour gradient plus low-frequency noise: textured enough that the
    # encoder and detectors see a plausible room, with no face-like structure.
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([90 + 60 * x / w, 110 + 40 * y / h, 140 - 50 * x / w], axis=-1)
    noise = cv2.resize(rng.normal(0, 18, (h // 40 + 1, w // 40 + 1, 3)).astype(np.float32), (w, h))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _paste(world: np.ndarray, image: np.ndarray, x: int, y: int, height: int) -> tuple[int, int, int, int]:
    scale = height / image.shape[0]
    width = max(1, int(round(image.shape[1] * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (width, height), interpolation=interp)
    h = min(height, world.shape[0] - y)
    w = min(width, world.shape[1] - x)
    world[y : y + h, x : x + w] = resized[:h, :w]
    return (x, y, x + w, y + h)


def _rotated(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotated copy and the 2x3 matrix used (to move the face box along)."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT), m


def _map_box(box, m: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box of `box` after the affine `m`."""
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ m.T
    return (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())


def _flip_box(box, width: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return (width - x1, y0, width - x0, y1)


def build_world(scene: str, seed: int = 0) -> tuple[np.ndarray, list[Placed]]:
    """The still canvas for `scene` and what was placed where."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; choose from {', '.join(SCENES)}")
    astro, grace, camera = load_photo("astronaut"), load_photo("grace_hopper"), load_photo("camera")
    placed: list[Placed] = []

    def put(world, name, image, x, y, height, face) -> None:
        box = _paste(world, image, x, y, height)
        k = height / image.shape[0]
        placed.append(Placed(name, box, (x + face[0] * k, y + face[1] * k, x + face[2] * k, y + face[3] * k)))

    f = PHOTO_FACES
    flip_astro, flip_grace = cv2.flip(astro, 1), cv2.flip(grace, 1)
    flip_astro_face, flip_grace_face = _flip_box(f["astronaut"], 512), _flip_box(f["grace_hopper"], 512)
    if scene == "single":
        world = _background(720, 1280, seed)
        put(world, "astronaut", astro, 380, 40, 640, f["astronaut"])
    elif scene == "sample":
        world = _background(720, 1400, seed)
        put(world, "astronaut", astro, 80, 90, 560, f["astronaut"])
        put(world, "grace_hopper", grace, 760, 60, 600, f["grace_hopper"])
    elif scene == "small":
        # People far away: the faces are 15-40 px tall at 1280x720.
        world = _background(720, 1280, seed)
        people = [(astro, f["astronaut"]), (grace, f["grace_hopper"]), (flip_astro, flip_astro_face),
                  (flip_grace, flip_grace_face), (camera, f["camera"])]
        for i, height in enumerate((90, 120, 150, 200, 260)):
            image, face = people[i]
            put(world, f"far{i}", image, 60 + i * 240, 300 - height // 3, height, face)
    else:  # crowd: several people, sizes, mirrored/rotated copies and LFW crops
        world = _background(900, 1800, seed)
        rot_astro, m = _rotated(flip_astro, 15)
        put(world, "astronaut", astro, 40, 60, 420, f["astronaut"])
        put(world, "grace_hopper_flip", flip_grace, 500, 40, 460, flip_grace_face)
        put(world, "camera", camera, 1000, 120, 320, f["camera"])
        put(world, "astronaut_rot", rot_astro, 1380, 80, 380, _map_box(flip_astro_face, m))
        put(world, "grace_small", grace, 120, 560, 220, f["grace_hopper"])
        put(world, "astronaut_small", astro, 420, 600, 160, f["astronaut"])
        for i, face in enumerate(lfw_faces(6, seed)):
            put(world, f"lfw{i}", face, 700 + i * 170, 560 + (i % 2) * 120, 90 + (i % 3) * 30, f["lfw"])
    return world, placed


# --- camera motion ----------------------------------------------------------------


def _camera(world_hw: tuple[int, int], out_wh: tuple[int, int], u: float, motion: str) -> np.ndarray:
    """2x3 affine that maps world pixels to output pixels at clip phase u in [0, 1]."""
    wh, ww = world_hw
    ow, oh = out_wh
    fit = max(ow / ww, oh / wh)  # whole world height/width visible at zoom 1
    if motion == "static":
        zoom, angle, cx, cy = 1.0, 0.0, ww / 2, wh / 2
    else:
        # Slow zoom in and out, a pan from left to right and a gentle roll.
        zoom = 1.0 + 0.6 * math.sin(math.pi * u) ** 2
        angle = 6.0 * math.sin(2 * math.pi * u)
        span_x = ww / 2 * (1 - 1 / zoom)
        span_y = wh / 2 * (1 - 1 / zoom)
        cx = ww / 2 + span_x * math.cos(math.pi * (1 - u)) * 0.9
        cy = wh / 2 + span_y * 0.5 * math.sin(2 * math.pi * u)
    scale = fit * zoom
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[0, 2] += ow / 2 - cx
    m[1, 2] += oh / 2 - cy
    return m


def iter_scene_frames(
    scene: str = "sample",
    size: tuple[int, int] = (640, 360),
    seconds: float = 6.0,
    fps: int = 25,
    motion: str = "panzoom",
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """Yield BGR frames of `scene` filmed by a moving camera (no file written)."""
    world, _ = build_world(scene, seed)
    for m in _cameras(world.shape[:2], size, seconds, fps, motion):
        yield cv2.warpAffine(world, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _cameras(world_hw, size, seconds: float, fps: int, motion: str) -> list[np.ndarray]:
    count = max(1, int(round(seconds * fps)))
    return [_camera(world_hw, size, i / max(1, count - 1), motion) for i in range(count)]


def scene_faces(
    scene: str = "sample",
    size: tuple[int, int] = (640, 360),
    seconds: float = 6.0,
    fps: int = 25,
    motion: str = "panzoom",
    seed: int = 0,
) -> list[list[tuple[float, float, float, float]]]:
    """Ground-truth face boxes per frame of `iter_scene_frames` (same arguments).

    Boxes are clipped to the frame; faces entirely outside it are left out.
    """
    world, placed = build_world(scene, seed)
    w, h = size
    out = []
    for m in _cameras(world.shape[:2], size, seconds, fps, motion):
        boxes = []
        for p in placed:
            x0, y0, x1, y1 = _map_box(p.face, m)
            x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
            if x1 > x0 and y1 > y0:
                boxes.append((x0, y0, x1, y1))
        out.append(boxes)
    return out


# --- writing ------------------------------------------------------------------------


def write_video(
    path: str,
    frames: Iterator[np.ndarray],
    fps: int,
    audio: np.ndarray | None = None,
    sr: int = 16_000,
    crf: int = 23,
) -> int:
    """Encode BGR frames (libx264 yuv420p) and optional mono float audio; return frame count."""
    count = 0
    with av.open(path, mode="w") as container:
        vstream = None
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sr)
            astream.layout = "mono"
        for image in frames:
            if vstream is None:
                vstream = container.add_stream("libx264", rate=Fraction(fps))
                vstream.width, vstream.height = image.shape[1], image.shape[0]
                vstream.pix_fmt = "yuv420p"
                vstream.options = {"crf": str(crf), "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            container.mux(vstream.encode(frame))
            count += 1
        if vstream is not None:
            container.mux(vstream.encode(None))
        if astream is not None and audio is not None:
            _write_audio(container, astream, audio, sr)
    return count


def _write_audio(container, stream, audio: np.ndarray, sr: int) -> None:
    samples = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    block = 1024  # AAC frame size
    for start in range(0, len(samples), block):
        chunk = samples[start : start + block].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
        frame.sample_rate = sr
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def make_clip(
    path: str,
    size: tuple[int, int] = (640, 360),
    seconds: float = 6.0,
    fps: int = 25,
    scene: str = "sample",
    audio: np.ndarray | None = None,
    sr: int = 16_000,
    motion: str = "panzoom",
    crf: int = 23,
    seed: int = 0,
) -> str:
    """Write a moving test clip of `scene` to `path`; audio is padded/cut to length."""
    if audio is not None:
        audio = fit_audio(audio, int(round(seconds * sr)))
    frames = iter_scene_frames(scene, size, seconds, fps, motion, seed)
    write_video(path, frames, fps, audio=audio, sr=sr, crf=crf)
    return path


def fit_audio(audio: np.ndarray, length: int) -> np.ndarray:
    """Cut or pad with silence to exactly `length` samples."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if len(audio) >= length:
        return audio[:length]
    return np.concatenate([audio, np.zeros(length - len(audio), np.float32)])


def door_slam(rms_dbfs: float = -6.0, seconds: float = 0.3, sr: int = 16_000) -> np.ndarray:
    """A door slam: white noise falling 60 dB over `seconds`, scaled to `rms_dbfs` RMS over its
    loudest 40 ms (the de-identifier's frames), clipped to [-1, 1]."""
    n = int(seconds * sr)
    x = np.random.default_rng(0).standard_normal(n) * 10 ** (-3 * np.arange(n) / n)
    head = x[: int(0.04 * sr)]
    x *= 10 ** (rms_dbfs / 20) / np.sqrt((head**2).mean())
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def read_mono(path: str, sr: int = 16_000) -> np.ndarray:
    """Decode a whole audio file to mono float32 at `sr`.

    Own small decoder rather than `edge_app.sources`: only `edge_app.deid` may
    touch the raw-media sources, and this module is a test/sample builder.
    """
    parts: list[np.ndarray] = []
    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: has no audio track")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        for frame in container.decode(container.streams.audio[0]):
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def make_sample_clip(
    path: str,
    audio_path: str | list[str],
    seconds: float = 6.0,
    fps: int = 25,
    size: tuple[int, int] = (640, 360),
) -> str:
    """The bundled sample: astronaut + Grace Hopper, camera motion, a RAVDESS utterance.

    `audio_path` may be a list: the utterances are concatenated with 0.3 s of
    silence between them (same actor, so it still sounds like one speaker) as
    long as each fits whole (no utterance is cut mid-word), then the track is
    padded with silence to the clip length.
    """
    paths = [audio_path] if isinstance(audio_path, str) else list(audio_path)
    sr = 16_000
    parts: list[np.ndarray] = []
    room = int(round(seconds * sr))
    for p in paths:
        speech = read_mono(p, sr)
        used = sum(len(x) for x in parts)
        if parts and used + len(speech) > room:
            break
        parts += [speech, np.zeros(int(0.3 * sr), np.float32)]
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return make_clip(path, size=size, seconds=seconds, fps=fps, scene="sample", audio=audio, sr=sr, crf=28)
