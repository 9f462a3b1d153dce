"""VideoDeidentifier: masks, fail-closed behaviour, persistence, pose-only heads, stats.

Most tests inject small fake detectors so the expected boxes are exact; the
pose and smoke tests run the real models on a photo-based synthetic frame.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_app import synth
from edge_app.deid import VideoDeidentifier, VideoDeidOptions
from edge_app.deid.faces import Detection
from edge_app.deid.masks import covered
from edge_app.errors import UsageError
from edge_app.records import Box, Frame

FPS = 25.0


class FixedFaces:
    """Returns the boxes given by `plan(call_index)`; records how often it ran."""

    name = "fixed"

    def __init__(self, plan):
        self.plan = plan
        self.calls = 0

    def detect(self, image):
        boxes = self.plan(self.calls)
        self.calls += 1
        return [Detection(*b, score=0.9, source="fixed") for b in boxes]

    def close(self):
        pass


class Raising:
    name = "raising"

    def __init__(self, fail_calls=(0,)):
        self.fail_calls = set(fail_calls)
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        if self.calls - 1 in self.fail_calls:
            raise RuntimeError("detector exploded")
        return []

    def head(self, image):
        return self.detect(image)

    def close(self):
        pass


class NoFaces(FixedFaces):
    def __init__(self):
        super().__init__(lambda i: [])


@pytest.fixture(scope="module")
def photo_frame() -> np.ndarray:
    """One 640x360 frame of the astronaut scene (no camera motion)."""
    return next(synth.iter_scene_frames("single", (640, 360), 0.04, 25, motion="static"))


def frame(image, i=0):
    return Frame(index=i, t=i / FPS, image=image)


def textured(h=360, w=640, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


FACE = (280.0, 120.0, 360.0, 220.0)  # a face box in the 640x360 test images


@pytest.mark.parametrize("mode", ["solid", "pixelate", "blur"])
def test_mask_modes_change_inside_not_outside(mode):
    image = textured()
    opts = VideoDeidOptions(mask=mode, pose_head=False, mask_scale=1.5)
    with VideoDeidentifier(opts, face_detector=FixedFaces(lambda i: [FACE])) as deid:
        out = deid.process(frame(image))
    assert out is not None and out.mask_sources == ("face",)
    box = out.masked_boxes[0]
    # The head box contains the face box and is not absurdly larger.
    assert box.x0 <= FACE[0] and box.x1 >= FACE[2] and box.y0 <= FACE[1] and box.y1 >= FACE[3]
    assert box.area < 6 * (FACE[2] - FACE[0]) * (FACE[3] - FACE[1])
    diff = np.abs(out.image.astype(int) - image.astype(int)).sum(axis=2)
    inner = diff[140:200, 300:340]  # the middle of the face
    assert (inner > 30).mean() > 0.9, f"{mode}: face pixels barely changed"
    if mode == "solid":
        assert out.image[140:200, 300:340].max() == 0
    outside = np.ones(diff.shape, bool)
    outside[max(0, box.y0 - 2) : box.y1 + 2, max(0, box.x0 - 2) : box.x1 + 2] = False
    assert diff[outside].max() == 0, f"{mode}: pixels outside the mask changed"
    assert np.array_equal(image, textured()), "the caller's raw frame was modified"


def test_ellipse_leaves_corners_rect_covers_them():
    image = textured()
    outs = {}
    for shape in ("ellipse", "rect"):
        opts = VideoDeidOptions(mask_shape=shape, pose_head=False)
        with VideoDeidentifier(opts, face_detector=FixedFaces(lambda i: [FACE])) as deid:
            outs[shape] = deid.process(frame(image))
    b = outs["rect"].masked_boxes[0]
    assert outs["rect"].image[b.y0, b.x0].max() == 0
    assert np.array_equal(outs["ellipse"].image[b.y0, b.x0], image[b.y0, b.x0])
    # covered() (used by the benchmark) agrees with what was painted.
    painted = outs["ellipse"].image.max(axis=2) == 0
    region = covered(list(outs["ellipse"].masked_boxes), "ellipse", 360, 640)
    assert painted[region].mean() > 0.999 and not painted[~region].any()


def test_box_cut_by_frame_edge_is_filled_as_rectangle():
    image = textured()
    edge_face = (600.0, -20.0, 660.0, 50.0)  # half outside, top right
    with VideoDeidentifier(VideoDeidOptions(pose_head=False), face_detector=FixedFaces(lambda i: [edge_face])) as deid:
        out = deid.process(frame(image))
    b = out.masked_boxes[0]
    assert b.x1 == 640 and b.y0 == 0
    assert out.image[b.y0 : b.y1, b.x0 : b.x1].max() == 0


def test_fail_closed_detector_raises_gives_black_frame_then_recovers():
    image = textured()
    det = Raising(fail_calls=(0,))
    with VideoDeidentifier(VideoDeidOptions(pose_head=False), face_detector=det) as deid:
        bad = deid.process(frame(image, 0))
        good = deid.process(frame(image, 1))
        stats = deid.stats
        err = deid.last_error
    assert bad is not None and bad.image.shape == image.shape
    assert bad.image.max() == 0, "a failing detector let raw pixels through"
    assert bad.mask_sources == ("blackout",) and bad.masked_boxes == (Box(0, 0, 640, 360),)
    assert (bad.index, bad.t) == (0, 0.0)
    assert np.array_equal(good.image, image)  # no face found: the frame passes unchanged
    assert (stats.frames_seen, stats.frames_out, stats.frames_dropped) == (2, 1, 1)
    assert err is not None and "RuntimeError" in err


def test_fail_closed_pose_raises_and_bad_input():
    image = textured()
    opts = VideoDeidOptions(pose_head=True)
    with VideoDeidentifier(opts, face_detector=NoFaces(), pose_estimator=Raising()) as deid:
        out = deid.process(frame(image))
        assert out.image.max() == 0 and out.mask_sources == ("blackout",)
        # Not an image at all: nothing to black out, so the frame is dropped.
        assert deid.process(Frame(index=1, t=0.04, image=None)) is None
        # Wrong dtype: blacked out at its own size.
        weird = deid.process(Frame(index=2, t=0.08, image=np.zeros((10, 20, 3), np.float32)))
        assert weird.image.shape == (10, 20, 3) and weird.image.dtype == np.uint8 and weird.image.max() == 0
        assert deid.stats.frames_dropped == 3 and deid.stats.frames_out == 0


def test_oversized_frame_is_downscaled_also_when_blacked_out():
    big = textured(1080, 1920)
    opts = VideoDeidOptions(pose_head=False, max_side=1280)
    with VideoDeidentifier(opts, face_detector=Raising(fail_calls=(1,))) as deid:
        ok = deid.process(frame(big, 0))
        bad = deid.process(frame(big, 1))
    assert ok.image.shape == (720, 1280, 3) and bad.image.shape == (720, 1280, 3)


def test_persistence_keeps_moving_box_for_persist_s_then_drops_it():
    image = textured()

    def plan(i):  # a face moving right 4 px a frame, seen on frames 0-4 only
        return [(200 + 4 * i, 120, 260 + 4 * i, 190)] if i < 5 else []

    opts = VideoDeidOptions(pose_head=False, persist_s=0.4)
    with VideoDeidentifier(opts, face_detector=FixedFaces(plan)) as deid:
        outs = [deid.process(frame(image, i)) for i in range(20)]
        stats = deid.stats
    assert all(o.mask_sources == ("face",) for o in outs[:5])
    last_seen = 4 / FPS
    for i, o in enumerate(outs[5:], start=5):
        if i / FPS - last_seen <= 0.4 + 1e-9:
            assert o.mask_sources == ("persist",), f"frame {i} lost its mask too early"
            assert o.image[150, 230 + 4 * 4].max() == 0
        else:
            assert o.masked_boxes == (), f"frame {i} still masked after persist_s"
    # The lost box follows the motion and grows: later boxes are right of and wider than the last seen.
    seen, lost = outs[4].masked_boxes[0], outs[12].masked_boxes[0]
    assert (lost.x0 + lost.x1) > (seen.x0 + seen.x1)
    assert (lost.x1 - lost.x0) > (seen.x1 - seen.x0)
    assert stats.heads_masked_from_persistence == sum(o.mask_sources.count("persist") for o in outs)
    assert stats.frames_with_face == 5 and stats.faces_masked == 5


def test_stats_counters_add_up():
    image = textured()
    plan = lambda i: [(100, 100, 160, 170), (400, 120, 450, 180)] if i < 3 else []
    opts = VideoDeidOptions(pose_head=False, persist_s=0.1)
    with VideoDeidentifier(opts, face_detector=FixedFaces(plan)) as deid:
        outs = [deid.process(frame(image, i)) for i in range(8)]
        s = deid.stats
    assert s.frames_seen == 8 and s.frames_out == 8 and s.frames_dropped == 0
    assert s.frames_with_face == 3 and s.faces_masked == 6
    assert s.heads_masked_from_persistence == sum(o.mask_sources.count("persist") for o in outs) > 0
    assert s.heads_masked_from_pose_only == 0
    assert set(s.to_dict()) >= {"frames_seen", "frames_out", "frames_dropped", "frames_with_face",
                                "faces_masked", "heads_masked_from_pose_only", "heads_masked_from_persistence"}


def test_pose_only_head_box_when_face_detector_is_off(photo_frame):
    """Face detector forced off: pose landmarks alone must cover the astronaut's face."""
    from edge_app.deid.faces import CenterFaceDetector

    face = max(CenterFaceDetector().detect(photo_frame), key=lambda d: d.score)  # ground truth
    opts = VideoDeidOptions(pose_head=True, pose_head_fps=2.0)
    with VideoDeidentifier(opts, face_detector=NoFaces()) as deid:
        outs = [deid.process(frame(photo_frame, i)) for i in range(14)]
        s = deid.stats
    assert outs[0].mask_sources == ("pose",)
    assert all(o.mask_sources == ("persist",) for o in outs[1:12]), "pose box not carried between runs"
    assert outs[13].mask_sources == ("pose",)  # pose ran again after 1 / pose_head_fps = 0.5 s
    assert s.heads_masked_from_pose_only == 2 and s.frames_with_face == 0
    box = outs[0].masked_boxes[0]
    assert box.x0 <= face.x0 and box.y0 <= face.y0 and box.x1 >= face.x1 and box.y1 >= face.y1
    cx, cy = int((face.x0 + face.x1) / 2), int((face.y0 + face.y1) / 2)
    assert outs[5].image[cy - 10 : cy + 10, cx - 10 : cx + 10].max() == 0


def test_default_options_mask_the_real_face(photo_frame):
    with VideoDeidentifier() as deid:
        out = deid.process(frame(photo_frame))
    assert "face" in out.mask_sources
    assert deid.stats.frames_with_face == 1 and deid.stats.faces_masked >= 1


@pytest.mark.parametrize(
    "bad",
    [{"mask": "smudge"}, {"mask_shape": "star"}, {"face_backend": "yolo"}, {"mask_scale": 0.5},
     {"pose_head_fps": 0.0}, {"persist_s": -1.0}, {"centerface_every": 0}],
)
def test_bad_options_are_usage_errors(bad):
    with pytest.raises(UsageError):
        VideoDeidentifier(VideoDeidOptions(**bad), face_detector=NoFaces(), pose_estimator=Raising())
