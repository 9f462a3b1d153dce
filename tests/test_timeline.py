"""The timeline picture (`deemo-edge file --plot`) from real results: the sample clip is analysed
once; the end-to-end runs in test_cli.py cover the flag itself."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.errors import UsageError
from edge_app.sinks import timeline


@pytest.fixture(scope="module")
def sample_result(sample_clip: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "edge_app.cli", "file", str(sample_clip), "--seed", "0",
                           "--quiet", "--cues-only"], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def read_png(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path))
    assert image is not None
    return image


def test_cues_only_result_draws_the_body_events(sample_result: dict, tmp_path: Path) -> None:
    assert "label" not in sample_result  # --cues-only: no answer to draw, cues still are
    events = [e for w in sample_result["windows"] for e in w["cues"]["body"].get("events", [])]
    assert events, "the sample shows a person whose body cues are measured"
    out = timeline.plot_timeline(sample_result, tmp_path / "t.png")
    image = read_png(out)
    assert colour_pixels(image, timeline.CATEGORY_COLOURS[events[0]["category"]]) > 200


def colour_pixels(image: np.ndarray, colour: str) -> int:
    bgr = [int(colour[i : i + 2], 16) for i in (5, 3, 1)]
    return int((abs(image.astype(int) - bgr).max(axis=2) <= 2).sum())


def test_every_event_kind_gets_its_own_row(sample_result: dict, tmp_path: Path) -> None:
    crowded = copy.deepcopy(sample_result)
    body = crowded["windows"][0]["cues"]["body"]
    body["events"] = body.get("events", []) + [
        {"name": f"cue_{i}", "category": "self_manipulation", "start": 0.1 * i, "end": 0.1 * i + 0.5,
         "confidence": 0.9} for i in range(12)]  # fmt: skip
    a = read_png(timeline.plot_timeline(sample_result, tmp_path / "a.png"))
    b = read_png(timeline.plot_timeline(crowded, tmp_path / "b.png"))
    assert a.shape == b.shape  # same canvas: the body panel grows inside it
    self_touch = timeline.CATEGORY_COLOURS["self_manipulation"]
    assert colour_pixels(b, self_touch) > colour_pixels(a, self_touch) + 12 * 50


def test_duplicate_events_from_overlapping_windows_are_drawn_once() -> None:
    e = {"name": "arms_crossed", "category": "self_protection", "start": 1.0, "end": 2.5}
    assert timeline._unique([e, dict(e), {**e, "start": 3.0}]) == [e, {**e, "start": 3.0}]


def test_missing_matplotlib_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    with pytest.raises(UsageError, match="needs matplotlib"):
        timeline.check_plotting()


def plot_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_app.cli", "plot", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_plot_command_reads_file_results_and_live_window_lines(sample_result: dict, tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(sample_result, indent=1))
    live = tmp_path / "live.jsonl"  # what `live --json-lines` writes: one window per line
    live.write_text("".join(json.dumps(w) + "\n" for w in sample_result["windows"]))
    many = tmp_path / "many.jsonl"  # `file` with several inputs, one of which failed
    many.write_text("\n".join(json.dumps(r) for r in (
        sample_result, {"input": "gone.mp4", "error": "gone.mp4: no such file"},
        {**sample_result, "input": "elsewhere/second.wav"})) + "\n")  # fmt: skip
    proc = plot_cli(str(one))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(tmp_path / "one.timeline.png")]
    assert plot_cli(str(live), "-o", str(tmp_path / "live.png")).returncode == 0
    proc = plot_cli(str(many), "-o", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["sample.timeline.png", "second.timeline.png"]
    for png in (tmp_path / "one.timeline.png", tmp_path / "live.png", tmp_path / "plots" / "second.timeline.png"):
        assert read_png(png).shape[0] > 500


@pytest.mark.parametrize("content, fragment", [
    (None, "no such file"), ('{"input": "x", "windows": [', "line 1: not JSON"),
    ('{"input": "x"}\n', "no deemo-edge results"), ("[1, 2]", "expected JSON objects")])  # fmt: skip
def test_plot_command_bad_input_is_one_line_error(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    proc = plot_cli(str(path))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and fragment in proc.stderr


def test_live_timeline_sink_redraws_at_its_rate_and_keeps_the_latest_windows(
        sample_result: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_app.sinks import OutputOptions, close_all, open_sinks

    drawn: list[int] = []
    real = timeline.TimelineSink._render  # counted, then drawn for real in the drawing process
    monkeypatch.setattr(timeline.TimelineSink, "_render",
                        lambda self, r, p: drawn.append(len(r["windows"])) or real(self, r, p))
    png = tmp_path / "live.png"
    sinks = open_sinks(OutputOptions(stdout=False, timeline_path=str(png), timeline_every_s=3600, timeline_max_windows=2))
    # the sample's windows, then the same again later on: a longer run
    later = [{**w, "start": w["start"] + 8.0, "end": w["end"] + 8.0} for w in sample_result["windows"]]
    windows = sample_result["windows"] + later
    assert len(windows) >= 3
    for w in windows:
        for sink in sinks:
            sink.publish(w)
    sinks[0].flush(timeout=60)
    assert drawn == [1] and png.exists()  # the first window at once, then not within the hour
    close_all(sinks)
    assert drawn == [1, 2]  # once more at the end, with the latest two windows only
    assert read_png(png).shape[0] > 500
    assert [p.name for p in tmp_path.iterdir()] == ["live.png"]  # no temporary file left


def test_live_timeline_sink_failure_is_logged_and_the_run_goes_on(sample_result: dict, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "t.png"
    blocked.mkdir()  # a folder where the picture should go
    sink = timeline.TimelineSink(blocked, every_s=0)
    sink.publish(sample_result["windows"][0])  # no exception: a picture is not worth a live run
    assert sink.flush(timeout=60)
    assert "not drawn" in caplog.text
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(TypeError):  # the media check of every sink
        sink.publish({"start": 0.0, "end": 1.0, "frame": b"raw"})


def test_live_timeline_draws_off_the_analysis_thread_newest_windows_first(
        sample_result: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    release, started = threading.Event(), threading.Event()
    drawn: list[int] = []

    def slow_render(self: timeline.TimelineSink, result: dict, path: Path) -> None:  # lasts until released
        started.set()
        assert release.wait(60)
        drawn.append(len(result["windows"]))
        Path(path).write_bytes(b"png")

    monkeypatch.setattr(timeline.TimelineSink, "_render", slow_render)
    sink = timeline.TimelineSink(tmp_path / "t.png", every_s=0)
    window = sample_result["windows"][0]
    sink.publish(window)
    assert started.wait(60)
    for _ in range(4):  # the first drawing is still running: these return at once all the same
        sink.publish(window)
    assert drawn == [] and not sink.flush(timeout=0.1)
    release.set()
    sink.close()
    assert drawn == [1, 5]  # the three copies handed over meanwhile were replaced by the newest
    assert (tmp_path / "t.png").read_bytes() == b"png"


def test_live_timeline_drawing_process_that_died_is_started_again(sample_result: dict, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    png = tmp_path / "t.png"
    sink = timeline.TimelineSink(png, every_s=0)
    sink.publish(sample_result["windows"][0])
    assert sink.flush(timeout=120) and png.exists()
    first = sink._process._child
    first.kill()
    first.wait()
    png.unlink()
    sink.publish(sample_result["windows"][0])
    assert sink.flush(timeout=120)
    sink.close()
    assert png.exists() and "not drawn" not in caplog.text
    assert sink._process._child is None and first.returncode != 0  # closed, after a second process drew


def test_live_timeline_drawing_that_hangs_does_not_hold_up_the_stop(sample_result: dict, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    import time

    def never_answers(self: timeline.DrawingProcess) -> subprocess.Popen:  # reads a request, then hangs
        if self._child is None:
            self._child = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(120)"],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self._child

    monkeypatch.setattr(timeline.DrawingProcess, "_running", never_answers)
    sink = timeline.TimelineSink(tmp_path / "t.png", every_s=0)
    sink.CLOSE_WAIT_S = 0.5
    sink.publish(sample_result["windows"][0])
    t0 = time.monotonic()
    sink.close()
    assert time.monotonic() - t0 < 5.0
    assert "did not finish" in caplog.text and not (tmp_path / "t.png").exists()
    assert not sink._drawer.is_alive()


def test_live_timeline_without_matplotlib_names_the_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_app.sinks import OutputOptions, open_sinks

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(UsageError, match=r"output.timeline_path \(live --plot\) needs matplotlib"):
        open_sinks(OutputOptions(stdout=False, timeline_path=str(tmp_path / "t.png")))


def test_live_timeline_path_in_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    from edge_app.sinks import OutputOptions, open_sinks

    with pytest.raises(UsageError, match="does not exist"):
        open_sinks(OutputOptions(stdout=False, timeline_path=str(tmp_path / "nope" / "t.png")))
