"""`deemo-edge live` end to end, with a file-backed camera and microphone replayed in real time.

The camera is a clip with faces (the bundled sample, or a synthetic one), the
microphone replays real RAVDESS speech at real-time pace: the same code path as
a device, only the raw source differs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import label_colour_pixels
from live_media import json_lines, make_camera_clip, make_speech, media_files

from edge_app.records import LABELS

CLI = [sys.executable, "-m", "edge_app.cli"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("live_media")
    speech = make_speech(folder / "speech.flac")  # skips without the RAVDESS data
    return make_camera_clip(folder / "camera.mp4"), speech


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop("DISPLAY", None)  # headless, like the device
    return env


def _live(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120):
    return subprocess.run([*CLI, "live", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env=env or _env())


def test_live_end_to_end_and_nothing_raw_written(media, tmp_path):
    camera, speech = media
    tmp, out, home = tmp_path / "tmp", tmp_path / "out", tmp_path / "home"
    for folder in (tmp, out, home):
        folder.mkdir()
    env = _env(TMPDIR=str(tmp), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    timeline = tmp_path / "timeline.png"  # a picture of results, outside the folders checked for media
    proc = _live("--camera", str(camera), "--mic", str(speech), "--window", "2", "--hop", "1",
                 "--duration", "8", "--seed", "0", "--preview", "--plot", str(timeline), cwd=out, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "preview off" in proc.stderr  # headless: warned, not failed
    results = json_lines(proc.stdout)
    assert len(results) >= 3, proc.stderr
    for r in results:
        assert {"start", "end", "clues", "cues", "wall_time", "latency_s", "dropped_windows"} <= set(r)
        assert r["end"] - r["start"] == pytest.approx(2.0)
        assert 0.0 <= r["latency_s"] < 30.0
        assert isinstance(r["clues"], list)
        dt.datetime.fromisoformat(r["wall_time"])
        assert r["label"] in LABELS and abs(sum(r["scores"].values()) - 1) < 1e-3
        assert r["reasoning"]
    assert [r["start"] for r in results] == sorted(r["start"] for r in results)
    assert any(r["cues"]["body"] is not None for r in results)
    spoken = [r for r in results if r["cues"]["prosody"] and r["cues"]["prosody"]["voiced_ratio"] > 0.1]
    assert spoken, "the replayed speech should give voiced windows"
    # Nothing raw (or de-identified) was written anywhere the process could write.
    assert media_files(tmp, out, home) == []
    # the timeline was drawn at the end from every window, in the answers' colours
    import cv2

    image = cv2.imread(str(timeline))
    assert image is not None and image.shape[0] > 500
    assert sum(label_colour_pixels(timeline, label) for label in {r["label"] for r in results}) > 2000


def test_sigterm_stops_within_two_seconds(media):
    camera, speech = media
    proc = subprocess.Popen([*CLI, "live", "--camera", str(camera), "--mic", str(speech),
                             "--window", "2", "--hop", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=_env())
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(90)
    assert first and first[0].startswith("{"), "no result before SIGTERM"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    finally:
        proc.kill()
    elapsed = time.monotonic() - sent
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"


def test_slow_answer_stage_drops_oldest_windows(media):
    from edge_app.config import build_config
    from edge_app.live import LiveSession
    from edge_app.records import DeidAudio

    _, speech = media
    config = build_config({"live": {"camera": "none", "mic": str(speech), "window_s": 1.0,
                                    "hop_s": 0.25, "duration_s": 4.0, "max_pending_windows": 1}})
    published: list[dict] = []
    seen_audio: list[object] = []

    class ListSink:
        def publish(self, result: dict) -> None:
            published.append(result)

        def close(self) -> None:
            pass

    def slow_answer(cues, window):
        seen_audio.append(window.audio)
        time.sleep(0.8)  # a slow LLM: windows arrive every 0.25 s
        return {"label": "neutral", "scores": {"neutral": 1.0}}

    session = LiveSession(config, [ListSink()], answer=slow_answer)
    try:
        summary = session.run(threading.Event())
    finally:
        session.close()
    assert summary.windows_dropped > 0
    assert published and all(r["label"] == "neutral" for r in published)
    drops = [r["dropped_windows"] for r in published]
    assert drops == sorted(drops) and drops[-1] > 0
    # the queue kept the newest windows: published starts jump ahead by more than one hop
    starts = [r["start"] for r in published]
    assert max(b - a for a, b in itertools.pairwise(starts)) > 0.25
    assert all(isinstance(a, DeidAudio) for a in seen_audio)
    assert summary.stages["answer"]["count"] == len(published)


def test_missing_camera_is_a_one_line_error():
    proc = _live("--camera", "7", "--mic", "none", "--duration", "2", timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("deemo-edge: error:")]
    assert len(errors) == 1 and "camera 7" in errors[0], proc.stderr
    assert proc.stdout == ""


def test_wrong_model_flag_is_a_one_line_error(media, tmp_path):
    """`live --model` (as `file --model`): a file that is not a GGUF stops the start, exit 3."""
    pytest.importorskip("llama_cpp")
    camera, _ = media
    bad = tmp_path / "model.gguf"
    bad.write_text("not a model\n")
    proc = _live("--camera", str(camera), "--mic", "none", "--duration", "2", "--model", str(bad), timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("deemo-edge: error:")]
    assert len(errors) == 1 and "not a GGUF file" in errors[0], proc.stderr


@pytest.mark.parametrize(("camera", "mic", "fragment"), [
    ("/no/such/camera.mp4", "none", "camera /no/such/camera.mp4: no such file"),
    ("none", "/no/such/speech.flac", "microphone /no/such/speech.flac: no such file"),
])
def test_missing_media_files_are_input_errors(camera, mic, fragment):
    from edge_app.config import build_config
    from edge_app.errors import EXIT_INPUT, InputError
    from edge_app.live import LiveSession

    with pytest.raises(InputError) as err:
        LiveSession(build_config({"live": {"camera": camera, "mic": mic}}), [])
    assert fragment in str(err.value) and err.value.exit_code == EXIT_INPUT


def test_mic_none_runs_video_only(media):
    camera, _ = media
    proc = _live("--camera", str(camera), "--mic", "none", "--window", "2", "--hop", "1",
                 "--duration", "3")
    assert proc.returncode == 0, proc.stderr
    results = json_lines(proc.stdout)
    assert len(results) >= 1, proc.stderr
    assert all(r["cues"]["prosody"] is None for r in results)
    assert all(r["cues"]["body"] is not None for r in results)


def test_microphone_decimation_does_not_depend_on_chunking():
    """48 kHz devices are brought to 16 kHz in the capture thread, chunk by chunk."""
    import numpy as np

    from edge_app.sources.microphone import _Decimator

    rng = np.random.default_rng(0)
    x = rng.standard_normal(48_000).astype(np.float32)
    whole = _Decimator(3)(x)
    chunked = _Decimator(3)
    parts = [chunked(x[a:b]) for a, b in zip([0, 1000, 1001, 4799, 30000], [1000, 1001, 4799, 30000, 48000])]
    assert len(whole) == 16_000
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux-only")
def test_capture_threads_yield_the_cpu_to_the_analysis_worker(media):
    """Camera (face removal) and pose run `capture_nice` below the analysis worker, and so
    do the worker threads their models start (MediaPipe's executors)."""
    from edge_app.config import build_config
    from edge_app.live import LiveSession
    from edge_app.priority import thread_nice

    camera, _ = media
    base = thread_nice()
    config = build_config({"live": {"camera": str(camera), "mic": "none", "window_s": 1.0,
                                    "hop_s": 1.0, "duration_s": 2.5, "capture_nice": 5}})
    seen: dict[str, set[int]] = {"camera": set(), "pose": set(), "worker": set()}
    niced_threads: list[int] = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            seen[name].add(thread_nice())
            return fn(*args, **kwargs)
        return wrapped

    def answer(cues, window):
        seen["worker"].add(thread_nice())
        niced_threads.append(sum(1 for nice in _thread_nices() if nice == base + 5))
        return {}

    session = LiveSession(config, [], answer=answer)
    session.camera._deid.process = spy("camera", session.camera._deid.process)
    session._pose.pose.estimate = spy("pose", session._pose.pose.estimate)
    try:
        session.run(threading.Event())
    finally:
        session.close()
    assert seen["camera"] == {base + 5} and seen["pose"] == {base + 5}
    assert seen["worker"] == {base}
    # camera + pose + at least one model worker thread (MediaPipe's graph executors)
    assert niced_threads and max(niced_threads) >= 3, niced_threads


def _thread_nices() -> list[int]:
    out = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            out.append(int(stat.rsplit(")", 1)[1].split()[16]))  # field 19: nice
    return out


def test_pose_skips_old_frames_when_behind_and_windows_do_not_wait_for_the_next_frame():
    """A slow pose stage works on fresh frames (old waiting ones are skipped and counted),
    and a window's video is complete once every frame before its end went through pose."""
    import math
    from types import SimpleNamespace

    import numpy as np

    from edge_app.deid.live import RingBuffer
    from edge_app.live import PoseStage, _Scheduler
    from edge_app.records import DeidFrame

    seen: list[float] = []
    pose = SimpleNamespace(estimate=lambda frame: seen.append(frame.t), close=lambda: None)
    frames: RingBuffer[DeidFrame] = RingBuffer(16)
    puts: list[float] = []
    camera = SimpleNamespace(frames=frames, read_t=-math.inf, ended=threading.Event(),
                             last_put_before=lambda t: max((x for x in puts if x < t), default=-math.inf))
    image = np.zeros((4, 4, 3), np.uint8)
    for i in range(10):  # ten frames waiting, 0.1 s apart; the camera has read up to 0.95 s
        frames.put(DeidFrame(i, i / 10, image))
        puts.append(i / 10)
    camera.read_t = 0.95
    stage = PoseStage(camera, pose, fps=100.0, keep_s=10.0, max_lag_s=0.25)
    stage.start()
    assert frames.wait_done(5.0)
    stage.stop()
    stage.join(2.0)
    assert seen[-1] == 0.9 and min(seen) >= 0.7, seen  # only frames within 0.25 s of the newest
    assert stage.skipped == 10 - len(seen) and stage.done_t == 0.9

    session = SimpleNamespace(_pose=stage, camera=camera, mic=None)
    scheduler = _Scheduler(session)
    assert scheduler._data_in(0.95)  # frame 0.9 was the last before 0.95 and is done
    camera.read_t = 0.93
    assert not scheduler._data_in(0.95)  # a frame before 0.95 may still come
