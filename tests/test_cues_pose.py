"""PoseEstimator on a real photo of a person, after masking the face as deid would."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import skimage

from edge_app.cues.pose import PoseEstimator, PoseOptions, PoseSample, RateLimiter
from edge_app.records import Box, DeidFrame, Frame

ASTRONAUT = os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png")
FACE = Box(150, 30, 300, 200)  # head of the astronaut in the 512x512 photo (nose ~ (223, 128))


def _masked_astronaut(scale: float = 1.0) -> np.ndarray:
    image = cv2.imread(ASTRONAUT)
    assert image is not None, ASTRONAUT
    image[FACE.y0 : FACE.y1, FACE.x0 : FACE.x1] = 0  # what the de-identifier does to a face
    if scale != 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return image


def _deid(image: np.ndarray, t: float = 0.0, index: int = 0, scale: float = 1.0) -> DeidFrame:
    box = Box(*(round(v * scale) for v in (FACE.x0, FACE.y0, FACE.x1, FACE.y1)))
    return DeidFrame(index=index, t=t, image=image, masked_boxes=(box,), mask_sources=("face",))


@pytest.fixture(scope="module")
def estimator():
    with PoseEstimator(PoseOptions(tracking=False)) as pose:
        yield pose


def test_pose_finds_person_with_masked_face(estimator):
    sample = estimator.estimate(_deid(_masked_astronaut()))
    assert isinstance(sample, PoseSample)
    lm = sample.landmarks
    assert lm.shape == (33, 4) and lm.dtype == np.float32
    # Both shoulders visible, below the (masked) head, and apart.
    assert lm[11, 3] > 0.8 and lm[12, 3] > 0.8
    assert 0.35 < lm[11, 1] < 0.65 and 0.35 < lm[12, 1] < 0.65
    assert abs(lm[11, 0] - lm[12, 0]) > 0.2
    # Subject faces the camera: left shoulder (11) appears on the image's right.
    assert lm[11, 0] > lm[12, 0]
    assert sample.aspect == pytest.approx(1.0)
    assert sample.to_dict()["landmarks"][11][3] > 0.8
    # The masked head box is carried along for head-related rules.
    assert sample.head_box == pytest.approx((150 / 512, 30 / 512, 300 / 512, 200 / 512))


def test_stock_detector_cannot_find_masked_person():
    """Why PoseEstimator seeds its crop from the masked head box: documents MediaPipe's behaviour."""
    import mediapipe as mp

    image = cv2.cvtColor(_masked_astronaut(), cv2.COLOR_BGR2RGB)
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as stock:
        assert stock.process(image).pose_landmarks is None


def test_large_frame_is_downscaled_with_same_landmarks(estimator):
    small = estimator.estimate(_deid(_masked_astronaut()))
    big = estimator.estimate(_deid(_masked_astronaut(scale=2.5), scale=2.5))  # 1280x1280 -> 640 inside
    assert small is not None and big is not None
    np.testing.assert_allclose(big.landmarks[11:13, :2], small.landmarks[11:13, :2], atol=0.06)
    assert big.head_box == pytest.approx(small.head_box, abs=0.01)


def test_blank_frame_returns_none():
    with PoseEstimator() as pose:
        assert pose.estimate(_deid(np.zeros((360, 640, 3), np.uint8))) is None


@pytest.mark.parametrize(
    "bad",
    [
        Frame(index=0, t=0.0, image=np.zeros((64, 64, 3), np.uint8)),
        np.zeros((64, 64, 3), np.uint8),
    ],
    ids=["raw_Frame", "ndarray"],
)
def test_estimate_rejects_anything_but_deid_frame(estimator, bad):
    with pytest.raises(TypeError, match="DeidFrame"):
        estimator.estimate(bad)


def test_tracking_mode_follows_a_clip():
    image = _masked_astronaut()
    with PoseEstimator() as pose:
        found = [pose.estimate(_deid(image, t=i / 10, index=i)) for i in range(3)]
    assert all(s is not None for s in found)
    assert [s.t for s in found] == pytest.approx([0.0, 0.1, 0.2])


def test_rate_limiter_keeps_every_third_frame_of_30fps():
    limiter = RateLimiter(10.0)
    kept = [i for i in range(60) if limiter.should_sample(i / 30.0)]
    assert kept == list(range(0, 60, 3))
    limiter = RateLimiter(10.0)
    kept_25 = [i for i in range(50) if limiter.should_sample(i / 25.0)]
    assert 19 <= len(kept_25) <= 21  # ~10 per second from 25 fps input


def test_pose_sample_validates_shape():
    with pytest.raises(ValueError):
        PoseSample(t=0.0, landmarks=np.zeros((17, 3)))
    assert not PoseSample(t=1.0).has_person
