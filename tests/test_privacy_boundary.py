"""The privacy boundary: raw media is decoded and held only inside edge_app.deid.

Three checks: (1) no module outside `edge_app.deid` / `edge_app.sources` imports the
raw decoder; (2) in a real run, pose estimation receives only `DeidFrame`s whose
face boxes are already masked; (3) when de-identification fails, the frame that
goes on (and into the anonymised copy) carries nothing of the original.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from conftest import ROOT

from edge_app.config import Config
from edge_app.cues.pose import PoseEstimator
from edge_app.deid.video import VideoDeidentifier
from edge_app.pipeline import Analyzer
from edge_app.records import DeidFrame

PACKAGE = ROOT / "edge_app"
RAW_MODULES = ("edge_app.sources",)
ALLOWED_RAW_IMPORTERS = ("edge_app/deid/", "edge_app/sources/")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_deid_imports_the_raw_decoder():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(ALLOWED_RAW_IMPORTERS):
            continue
        raw = {m for m in _imports(path) if m.startswith(RAW_MODULES)}
        if raw:
            offenders.append(f"{rel}: {sorted(raw)}")
    assert not offenders, "raw media imported outside the privacy boundary: " + "; ".join(offenders)


def test_pose_sees_only_masked_deid_frames(sample_clip, monkeypatch):
    seen: list[DeidFrame] = []
    original = PoseEstimator.estimate

    def spy(self, frame):
        seen.append(frame)
        return original(self, frame)

    monkeypatch.setattr(PoseEstimator, "estimate", spy)
    config = Config()
    config.cues.pose_fps = 5.0
    config.answer.enabled = False  # this test is about what pose sees, not the LLM
    with Analyzer(config) as analyzer:
        result = analyzer.analyse(str(sample_clip))
    assert seen, "pose was never called"
    assert all(type(f) is DeidFrame for f in seen)
    masked = [f for f in seen if f.masked_boxes]
    # the sample shows a face in every frame: every frame pose saw was masked
    assert len(masked) == len(seen)
    for frame in masked:
        box = frame.masked_boxes[0]
        cx, cy = (box.x0 + box.x1) // 2, (box.y0 + box.y1) // 2
        assert np.all(frame.image[cy, cx] == 0), "solid mask expected at the box centre"
    assert result.privacy["frames_dropped"] == 0


def test_failed_deidentification_never_passes_the_frame(sample_clip, tmp_path, monkeypatch):
    def broken(self, image, t):
        raise RuntimeError("detector crashed")

    monkeypatch.setattr(VideoDeidentifier, "_deidentify", broken)
    out = tmp_path / "anon.mp4"
    config = Config()
    config.answer.enabled = False
    with Analyzer(config) as analyzer:
        result = analyzer.analyse(str(sample_clip), save_anonymized=str(out))
    assert result.privacy["frames_dropped"] == result.privacy["frames_seen"] > 0
    import av

    with av.open(str(out)) as container:
        for frame in container.decode(video=0):
            assert frame.to_ndarray(format="bgr24").max() <= 16  # black, codec noise only
