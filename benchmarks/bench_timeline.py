"""How long one timeline drawing takes (`file --plot`, `live --plot`, `plot`), by window count.

    python benchmarks/bench_timeline.py

The bundled sample is analysed once (`deemo-edge file samples/sample.mp4 --seed 0`); its window
results are repeated at a 2 s hop to make a long live run's JSON (2 to 600 windows, the live
sink's default limit), and `edge_app.sinks.timeline.plot_timeline` draws each 3 times: median CPU
and wall seconds.

Then a live run, four ways: 40 windows of real analysis work (the voice de-identifier on the sample's
6 s of audio, per window) with a `TimelineSink` redrawing as often as it can (`every_s` 0), once
drawing on the analysis thread as the sink did before 2026-12-06, once on a thread of the sink's
own, and once in a separate process that the sink's thread waits for (now).
Reported: how long `publish` holds the analysis loop (median / max), the loop's total wall time
against the same loop with no sink (a drawing thread in the analysis process takes the GIL),
how many pictures were drawn, and the drawing process's resident memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import report  # benchmarks/report.py

from edge_app.deid.voice import VoiceDeidentifier
from edge_app.sinks.timeline import TimelineSink, plot_timeline
from edge_app.sources.media import read_audio

COUNTS = (2, 40, 150, 600)
LIVE_WINDOWS = 40


def main() -> None:
    proc = subprocess.run([sys.executable, "-m", "edge_app.cli", "file", str(ROOT / "samples/sample.mp4"), "--seed", "0",
                           "--quiet"], capture_output=True, text=True, check=True)
    sample = json.loads(proc.stdout)["windows"]
    windows = [{**sample[k % len(sample)], "start": 2.0 * k, "end": 2.0 * k + 4.0} for k in range(max(COUNTS))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.png"
        plot_timeline({"input": "warm-up", "windows": windows[:2]}, out)
        for n in COUNTS:
            cpu, wall = [], []
            for _ in range(3):
                c, w = time.process_time(), time.perf_counter()
                plot_timeline({"input": "live", "windows": windows[:n]}, out)
                cpu.append(time.process_time() - c)
                wall.append(time.perf_counter() - w)
            rows.append({"windows": n, "cpu_s": round(float(np.median(cpu)), 3), "wall_s": round(float(np.median(wall)), 3)})
        live = [live_run(windows[:LIVE_WINDOWS], Path(tmp) / "live.png", mode) for mode in ("none", "inline", "thread", "process")]
    report.write(ROOT / "benchmarks/results/timeline_speed",
                 {"command": "python benchmarks/bench_timeline.py", "rows": rows, "live": live}, markdown)


class ThreadTimelineSink(TimelineSink):
    """Drawing on the sink's thread, in the analysis process (tried first on 2026-12-06)."""

    def _render(self, snapshot: dict, path: Path) -> None:
        plot_timeline(snapshot, path)


class InlineTimelineSink(ThreadTimelineSink):
    """The sink as it was before 2026-12-06: every drawing on the caller's thread."""

    def _hand_over(self, now: float) -> None:
        self._handed_at, self._dirty = now, False
        self._draw({"input": self.title, "windows": list(self.windows)})


def live_run(windows: list[dict], png: Path, mode: str) -> dict:
    """A live loop's analysis work per window, then `publish`: how long the sink holds it."""
    audio = read_audio(str(ROOT / "samples/sample.mp4"))
    deid = VoiceDeidentifier()
    sink = {"none": None, "inline": InlineTimelineSink, "thread": ThreadTimelineSink, "process": TimelineSink}[mode]
    sink = sink(png, every_s=0) if sink else None
    drawn: list[int] = []
    if sink:
        draw = sink._draw  # counted: how many pictures the run got
        sink._draw = lambda snapshot: drawn.append(len(snapshot["windows"])) or draw(snapshot)
    held, per_window, start = [], [], time.perf_counter()
    for w in windows:
        t0 = time.perf_counter()
        deid.process(audio)  # the window's analysis: de-identify 6 s of real speech
        t1 = time.perf_counter()
        if sink:
            sink.publish(w)
        held.append(time.perf_counter() - t1)
        per_window.append(time.perf_counter() - t0)
    loop_s = time.perf_counter() - start
    worker_mb = None
    if type(sink) is TimelineSink:
        worker_mb = rss_mb(sink._process._child.pid)  # the drawing process, warm
    if sink:
        sink.close()
    return {"sink": mode, "loop_s": round(loop_s, 2), "publish_median_ms": round(1000 * float(np.median(held)), 2),
            "publish_max_ms": round(1000 * max(held), 2), "window_median_ms": round(1000 * float(np.median(per_window)), 1),
            "window_max_ms": round(1000 * max(per_window), 1), "drawings": len(drawn), "drawing_process_rss_mb": worker_mb}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def markdown(r: dict) -> str:
    lines = ["# Timeline drawing time", "",
             (f"`{r['command']}`: median of 3 drawings of the sample's windows repeated at a 2 s hop."),
             "", "| windows | CPU s | wall s |", "|---|---|---|"]
    lines += [f"| {row['windows']} | {row['cpu_s']} | {row['wall_s']} |" for row in r["rows"]]
    if r.get("live"):
        lines += ["", f"## A live run: {LIVE_WINDOWS} windows, the sink redrawing as often as it can", "",
                  ("Per window: the voice de-identifier on the sample's 6 s of speech, then `publish`. "
                   "`inline` = drawing on the analysis thread (the sink before 2026-12-06), `thread` = on a "
                   "thread of the sink's own, `process` = that thread has a separate process draw (now), "
                   "`none` = no sink. The process's start (once, at the first drawing) is inside the loop."), "",
                  "| sink | loop wall s | window median / max ms | publish median / max ms | pictures drawn |",
                  "|---|---|---|---|---|"]
        lines += [f"| {x['sink']} | {x['loop_s']} | {x['window_median_ms']} / {x['window_max_ms']} | "
                  f"{x['publish_median_ms']} / {x['publish_max_ms']} | {x['drawings']} |" for x in r["live"]]
        rss = [x["drawing_process_rss_mb"] for x in r["live"] if x.get("drawing_process_rss_mb")]
        if rss:
            lines += ["", f"The drawing process's resident memory after the run: {rss[0]} MB."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
