"""How long one timeline drawing takes (`file --plot`, `live --plot`, `plot`), by window count.

    python benchmarks/bench_timeline.py

The bundled sample is analysed once (`deemo-edge file samples/sample.mp4 --seed 0`); its window
results are repeated at a 2 s hop to make a long live run's JSON (2 to 600 windows, the live
sink's default limit), and `edge_app.sinks.timeline.plot_timeline` draws each 3 times: median CPU
and wall seconds. The live sink draws on the analysis thread, so this is what a redraw costs it.
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

import numpy as np  # noqa: E402
import report  # noqa: E402  benchmarks/report.py

from edge_app.sinks.timeline import plot_timeline  # noqa: E402

COUNTS = (2, 40, 150, 600)


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
    report.write(ROOT / "benchmarks/results/timeline_speed", {"command": "python benchmarks/bench_timeline.py", "rows": rows},
                 markdown)


def markdown(r: dict) -> str:
    lines = ["# Timeline drawing time", "",
             (f"`{r['command']}`: median of 3 drawings of the sample's windows repeated at a 2 s hop."),
             "", "| windows | CPU s | wall s |", "|---|---|---|"]
    lines += [f"| {row['windows']} | {row['cpu_s']} | {row['wall_s']} |" for row in r["rows"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
