"""How often the "gesturing" body cue fires on motion capture, per kind of action.

The Bandai-Namco takes say what the person does (content): waving (bye, byebye), guiding with an
arm (guide), calling, punching, slashing: the hands act; walking, running, dashing: the arms only
swing with the gait; bowing: the hands hang. A good gesture rule fires on the first group and
rarely on the others. Each take gives WINDOWS_PER_TAKE windows of 4 s through a random virtual
camera (export/body_items.pose_window), once with the detector jitter stage 3 trains with and
once clean; every content is used (this tunes a rule, not a model: no split applies).

    python benchmarks/body_gestures.py
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import report  # benchmarks/report.py (this script's folder is on sys.path)

from edge_app.cues.body import extract_body_cues
from export import body_data, body_items, default_data

ROOT = Path(__file__).resolve().parents[1]
WINDOWS_PER_TAKE = 3
GROUPS = {
    "hands act": ("bye", "byebye", "guide", "call", "punch", "slash"),
    "gait": ("walk", "walk-back", "walk-left", "walk-right", "run", "dash"),
    "bow": ("bow",),
}


def measure(clips: list[body_data.Clip], jitter: bool, seed: int) -> dict[str, list[dict]]:
    """Per content: one record per window (gesturing event seen, gesture rate per second)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict]] = defaultdict(list)
    for clip in clips:
        for _ in range(WINDOWS_PER_TAKE):
            poses = body_items.pose_window(clip, rng, augment=jitter)
            cues = extract_body_cues(poses, 0.0, body_data.WINDOW_S)
            out[clip.content].append({"gesturing": bool(cues.events_named("gesturing")), "rate": cues.gesture_rate})
    return out


def shares(windows: dict[str, list[dict]]) -> dict[str, dict]:
    def row(items: list[dict]) -> dict:
        rates = [w["rate"] for w in items if w["rate"] is not None]
        return {"windows": len(items), "gesturing": round(float(np.mean([w["gesturing"] for w in items])), 3),
                "rate_per_s": round(float(np.mean(rates)), 2) if rates else None}

    table = {f"group: {g}": row([w for c in contents for w in windows.get(c, [])]) for g, contents in GROUPS.items()}
    table.update({c: row(items) for c, items in sorted(windows.items())})
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="forward-kinematics cache (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="camera and jitter draws (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/body_gestures.json")
    a = ap.parse_args()
    clips, _ = body_data.load_clips(a.data, a.cache)
    result = {"command": "python benchmarks/body_gestures.py", "windows_per_take": WINDOWS_PER_TAKE,
              "with_jitter": shares(measure(clips, True, a.seed)), "clean": shares(measure(clips, False, a.seed))}
    report.write(a.out.with_suffix(""), result, markdown, plot)


def markdown(result: dict) -> str:
    lines = [
        "# The gesturing cue on motion capture", "",
        (f"Written by `{result['command']}`: {result['windows_per_take']} windows of 4 s per take, random virtual "
         "camera, with the detector jitter stage 3 trains with and clean. Share of windows with a gesturing "
         "event, and mean speed peaks per second (the 'frequent hand movements' cue)."), "",
        "| content | windows | gesturing (jitter) | peaks/s (jitter) | gesturing (clean) | peaks/s (clean) |",
        "|---|---|---|---|---|---|",
    ]
    for name, j in result["with_jitter"].items():
        c = result["clean"][name]
        lines.append(f"| {name} | {j['windows']} | {j['gesturing']:.0%} | {j['rate_per_s']} | {c['gesturing']:.0%} | {c['rate_per_s']} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    plt = report.pyplot()
    names = list(result["with_jitter"])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2))
    ax.barh(y - 0.2, [result["with_jitter"][n]["gesturing"] for n in names], 0.4, label="with jitter")
    ax.barh(y + 0.2, [result["clean"][n]["gesturing"] for n in names], 0.4, label="clean")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("share of 4 s windows with a gesturing event")
    ax.legend(loc="lower right")
    report.save(fig, path)


if __name__ == "__main__":
    main()
