"""Held-out motion at the window length the product uses, not only the one it was trained on.

The body encoder is trained and scored (export/evaluate.py) on export/body_data.WINDOW_S
windows (4 s since 2026-12-01, 3 s before); `deemo-edge file` and `live` analyse 4 s windows by
default (config analysis.window_s / live.window_s) but take any --window. The encoder pools
over time, so it reads any length; this measures the shipped ONNX model on the same held-out test clips (16 windows
per clip, the evaluation's seed, one random virtual camera per window) at several lengths.
A clip's answer is the mean of its windows' probabilities, as in the evaluation.

    python benchmarks/body_window_length.py        # about 1 min
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export import body_data, default_data
from export.onnx_export import run_onnx
from export.train import scores

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "body_window_length"
LENGTHS = (2.0, 3.0, 4.0, 6.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--models", type=Path, default=ROOT / "models", help="default: models/")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="default: .cache/features")
    ap.add_argument("--seed", type=int, default=0, help="the evaluation's seed (default: 0)")
    a = ap.parse_args(argv)
    model = a.models / json.loads((a.models / "manifest.json").read_text())["models"]["body"]["onnx"]
    clips, _ = body_data.load_clips(a.data, a.cache)
    rows = []
    for seconds in LENGTHS:
        xs, y, _, ids = body_data.make_set(clips, "test", 16, a.seed + 2, augment=False, emotion_only=True, seconds=seconds)
        p = run_onnx(model, xs)
        _, cy, cp = body_data.per_clip(y, p, ids)
        rows.append({"seconds": seconds, "windows": scores(y, p), "clips": scores(cy, cp)})
        print(json.dumps(rows[-1]), flush=True)
    OUT.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# Body encoder on held-out motion, by window length", "",
             ("Written by `python benchmarks/body_window_length.py`. Shipped `models/body_encoder.onnx` (trained on "
              f"{body_data.WINDOW_S:g} s windows); held-out test clips, 16 windows each; 4-class accuracy / macro-F1."), "",
             "| window | windows | clips |", "|---|---|---|"]
    for r in rows:
        w, c = r["windows"], r["clips"]
        lines.append(f"| {r['seconds']:g} s | {w['accuracy']:.1%} / {w['macro_f1']:.3f} (n {w['n']}) | "
                     f"{c['accuracy']:.1%} / {c['macro_f1']:.3f} (n {c['n']}) |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
