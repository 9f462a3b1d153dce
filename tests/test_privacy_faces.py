"""Privacy check with an INDEPENDENT face detector.

Moving test videos are built from free photos (edge_app.synth: several people,
sizes, mirrored/rotated copies, far-away faces, camera pan/zoom/roll), written
to H.264 and decoded again, then run through VideoDeidentifier with its default
options. OpenCV's Haar cascades (frontal + profile, both directions), which
the de-identifier does not use, must find faces in the originals and none in
the anonymised frames. A Haar hit counts as a face only where the scene's
ground truth (`synth.scene_faces`) has one: Haar also fires on background
texture, and those false alarms are counted and printed, not judged. Run with
`pytest -s` to see the counts.
"""

from __future__ import annotations

import os

import av
import cv2
import numpy as np
import pytest

from edge_app import synth
from edge_app.deid import VideoDeidentifier, VideoDeidOptions
from edge_app.records import Frame

# (scene, size, seconds, fps): ~30 frames in all keeps the file under a minute on 2 cores.
CLIPS = [
    ("crowd", (640, 360), 2.0, 6),
    ("sample", (1280, 720), 0.8, 5),
    ("small", (1280, 720), 0.8, 5),
]


class Haar:
    def __init__(self) -> None:
        base = cv2.data.haarcascades
        self.frontal = cv2.CascadeClassifier(os.path.join(base, "haarcascade_frontalface_default.xml"))
        self.profile = cv2.CascadeClassifier(os.path.join(base, "haarcascade_profileface.xml"))
        assert not self.frontal.empty() and not self.profile.empty()

    def boxes(self, bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        w = gray.shape[1]
        kw = {"scaleFactor": 1.15, "minNeighbors": 5, "minSize": (16, 16)}
        found = [tuple(b) for b in self.frontal.detectMultiScale(gray, **kw)]
        found += [tuple(b) for b in self.profile.detectMultiScale(gray, **kw)]
        # The profile cascade only knows one side: run it on the mirror image too.
        found += [(w - x - bw, y, bw, bh) for x, y, bw, bh in self.profile.detectMultiScale(cv2.flip(gray, 1), **kw)]
        return [(int(x), int(y), int(x + bw), int(y + bh)) for x, y, bw, bh in found]


def on_a_face(hit, faces) -> bool:
    """A Haar hit is a real face when its centre is inside a ground-truth face box (grown 25%)."""
    cx, cy = (hit[0] + hit[2]) / 2, (hit[1] + hit[3]) / 2
    for x0, y0, x1, y1 in faces:
        gx, gy = 0.25 * (x1 - x0), 0.25 * (y1 - y0)
        if x0 - gx <= cx <= x1 + gx and y0 - gy <= cy <= y1 + gy:
            return True
    return False


@pytest.fixture(scope="module")
def haar() -> Haar:
    return Haar()


def decode(path: str) -> list[np.ndarray]:
    with av.open(path) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(c.streams.video[0])]


@pytest.mark.parametrize("scene,size,seconds,fps", CLIPS, ids=[f"{c[0]}-{c[1][0]}x{c[1][1]}" for c in CLIPS])
def test_independent_detector_finds_no_face_after_deid(tmp_path, haar, scene, size, seconds, fps):
    path = str(tmp_path / f"{scene}.mp4")
    synth.make_clip(path, size=size, seconds=seconds, fps=fps, scene=scene)
    frames = decode(path)
    assert len(frames) == int(round(seconds * fps))

    with VideoDeidentifier(VideoDeidOptions()) as deid:
        outs = [deid.process(Frame(i, i / fps, f)) for i, f in enumerate(frames)]
        stats = deid.stats.to_dict()
    assert all(o is not None for o in outs) and stats["frames_dropped"] == 0

    truth = synth.scene_faces(scene, size, seconds, fps)
    before = [[b for b in haar.boxes(f) if on_a_face(b, truth[i])] for i, f in enumerate(frames)]
    with_face = [i for i, hits in enumerate(before) if hits]
    after_all = {i: haar.boxes(outs[i].image) for i in with_face}
    leaked = {i: hits for i, hits in ((i, [b for b in a if on_a_face(b, truth[i])]) for i, a in after_all.items()) if hits}
    false_alarms = sum(len(a) for a in after_all.values()) - sum(len(v) for v in leaked.values())
    print(
        f"\n[{scene} {size[0]}x{size[1]}] frames={len(frames)} true_faces={sum(map(len, truth))} "
        f"haar_faces_original={sum(map(len, before))} on {len(with_face)} frames; "
        f"haar_faces_anonymised={sum(len(v) for v in leaked.values())} (frames {sorted(leaked)}); "
        f"haar_background_false_alarms_anonymised={false_alarms}; deid stats={stats}"
    )
    assert len(with_face) >= 0.5 * len(frames), "sanity: Haar should see faces in most original frames"
    assert not leaked, f"faces still visible after de-identification: {leaked}"
