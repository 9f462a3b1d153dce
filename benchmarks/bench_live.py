"""Live loop: end-to-end latency, dropped windows and memory over a long run.

A long input is replayed through the real live loop (`edge_app.live.LiveSession`)
at real-time pace, exactly as `deemo-edge live` runs it, with only the raw
sources file-backed:

* camera: samples/sample.mp4 (or a synthetic clip with faces, edge_app.synth)
  looped for the whole run;
* microphone: RAVDESS utterances of one actor concatenated (real speech), looped.

Reported: latency from the end of a window to its result being published
(p50 / p95 / max), windows published and dropped, per-stage timings, and the
process RSS at the start of capture and at the end (growth, and the slope over
the second half of the run extrapolated to 10 minutes). Targets: p95 <= 2.0 s
with the default 4 s / 2 s windows; RSS growth < 50 MB over 10 minutes.

    python benchmarks/bench_live.py             # 5 minutes
    python benchmarks/bench_live.py --quick     # 1 minute
    python benchmarks/bench_live.py --minutes 10

Writes benchmarks/results/live.json and live.md (--out to change the folder).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's glog lines: errors only

import numpy as np
import soundfile as sf

from edge_app.answer import live_answer_hook
from edge_app.config import load_config
from edge_app.live import LiveOptions, LiveSession

DEFAULTS = LiveOptions()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="length of the run (default 5)")
    p.add_argument("--quick", action="store_true", help="1-minute run (overrides --minutes)")
    p.add_argument("--llm-threads", type=int, default=None,
                   help="llama.cpp threads (default: the config's, i.e. all cores)")
    p.add_argument("--window", type=float, default=DEFAULTS.window_s,
                   help=f"window length, s (default {DEFAULTS.window_s}, the shipped default)")
    p.add_argument("--hop", type=float, default=DEFAULTS.hop_s,
                   help=f"step between windows, s (default {DEFAULTS.hop_s})")
    p.add_argument("--clip", default=None,
                   help="camera clip to loop (default samples/sample.mp4, else a synthetic clip)")
    p.add_argument("--actor", default="Actor_01",
                   help="RAVDESS actor whose utterances make the microphone input (default Actor_01)")
    p.add_argument("--data", default=os.environ.get("DEEMO_DATA", os.path.join(ROOT, "..", "shared", "data")),
                   help="shared data folder (default $DEEMO_DATA or ../shared/data)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"),
                   help="results folder (default benchmarks/results)")
    p.add_argument("--rss-every", type=float, default=5.0, help="RSS sampling period, s (default 5)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key, value in TOML syntax, e.g. --set live.capture_nice=0 "
                        "or --set answer.llm.single_batch=false (repeatable; default none)")
    return p.parse_args(argv)


def overrides(pairs: list[str]) -> dict:
    """--set a.b.c=VALUE pairs -> {"a.b.c": value} for load_config (VALUE parsed as TOML)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            sys.exit(f"bench_live: --set wants SECTION.KEY=VALUE, got {pair!r}")
        out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
    return out


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def make_inputs(args: argparse.Namespace, folder: str) -> tuple[str, str]:
    clip = args.clip or os.path.join(ROOT, "samples", "sample.mp4")
    if not os.path.exists(clip):
        from edge_app.synth import make_clip

        clip = make_clip(os.path.join(folder, "camera.mp4"), seconds=12.0, scene="sample", crf=28)
    from edge_app.synth import read_mono

    files = sorted(glob.glob(os.path.join(args.data, "ravdess_speech", "audio_16k_flac", args.actor, "*.flac")))
    if not files:
        sys.exit(f"bench_live: no RAVDESS audio under {args.data} (set --data or DEEMO_DATA)")
    pause = np.zeros(int(0.3 * 16_000), np.float32)
    speech = np.concatenate([part for f in files for part in (read_mono(f), pause)])
    speech_path = os.path.join(folder, "speech.wav")
    sf.write(speech_path, speech, 16_000)
    return clip, speech_path


class Collect:
    """A result sink that keeps the latencies and drop counts (nothing printed)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.dropped = 0
        self.parts: dict[str, list[float]] = {}  # the window's own timings (settle, queue, ...)
        self.llm_reasoning = 0
        self.reasoning_late = 0  # LLM reasoning due (label changed) but no time left in the budget

    def publish(self, result: dict) -> None:
        self.latencies.append(result["latency_s"])
        self.dropped = result["dropped_windows"]
        for key, value in (result.get("timings") or {}).items():
            self.parts.setdefault(key, []).append(float(value))
        self.llm_reasoning += result.get("reasoning_source") == "llm"
        self.reasoning_late += bool(result.get("reasoning_late"))

    def close(self) -> None:
        pass


def run(args: argparse.Namespace) -> dict:
    minutes = 1.0 if args.quick else args.minutes
    with tempfile.TemporaryDirectory(prefix="bench_live_") as folder:
        clip, speech = make_inputs(args, folder)
        settings = {
            "live.camera": clip, "live.mic": speech, "live.window_s": args.window,
            "live.hop_s": args.hop, "live.duration_s": minutes * 60.0, "live.loop_files": True,
            "live.status_every_s": 60.0, "answer.llm.n_threads": args.llm_threads or None,  # None: skipped
        }
        config = load_config(None, {**settings, **overrides(args.set)})
        sink = Collect()
        session = LiveSession(config, [sink], answer=live_answer_hook(config))
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample_rss() -> None:
            while True:
                samples.append((session.clock(), rss_mb()))
                if done.wait(args.rss_every):
                    return

        load_start = os.getloadavg()
        sampler = threading.Thread(target=sample_rss, daemon=True)
        started = time.monotonic()
        try:
            sampler.start()
            summary = session.run(threading.Event())
            samples.append((session.clock(), rss_mb()))  # end of capture, models still loaded
        finally:
            done.set()
            session.close()  # RSS after this would show models freed: not sampled
        wall = time.monotonic() - started
    return report(args, minutes, wall, clip, summary, sink, samples, load_start)


def report(args, minutes, wall, clip, summary, sink, samples, load_start) -> dict:
    lat = np.array(sink.latencies) if sink.latencies else np.array([np.nan])
    samples = sorted(samples)
    times = np.array([t for t, _ in samples])
    rss = np.array([m for _, m in samples])
    # The first minute is warm-up (model arenas, caches); growth is judged after it.
    warm = times >= min(60.0, times[-1] / 2)
    half = times >= times[-1] / 2
    slope = float(np.polyfit(times[half], rss[half], 1)[0]) if half.sum() >= 3 else float("nan")
    warm_rss = float(rss[warm][0])
    return {
        "minutes": minutes,
        "wall_s": round(wall, 1),
        "window_s": args.window,
        "hop_s": args.hop,
        "camera_clip": os.path.relpath(clip, ROOT) if clip.startswith(ROOT) else "synthetic (edge_app.synth)",
        "mic": f"RAVDESS {args.actor}, all utterances concatenated, looped",
        "overrides": args.set,
        "windows_published": summary.windows_published,
        "windows_with_llm_reasoning": sink.llm_reasoning,
        "windows_reasoning_late": sink.reasoning_late,
        "latency_parts_s": {k: {"p50": round(float(np.percentile(v, 50)), 3),
                                "p95": round(float(np.percentile(v, 95)), 3)}
                            for k, v in sink.parts.items()},
        "windows_dropped": summary.windows_dropped,
        "latency_s": {
            "p50": round(float(np.percentile(lat, 50)), 3),
            "p95": round(float(np.percentile(lat, 95)), 3),
            "max": round(float(np.max(lat)), 3),
        },
        "rss_mb": {
            "start": round(float(rss[0]), 1),
            "end": round(float(rss[-1]), 1),
            "max": round(float(rss.max()), 1),
            "growth": round(float(rss[-1] - rss[0]), 1),
            "after_warmup": round(warm_rss, 1),
            "growth_after_warmup": round(float(rss[-1] - warm_rss), 1),
            "slope_second_half_mb_per_min": round(slope * 60, 2),
            "extrapolated_growth_10_min": round(slope * 600, 1),
        },
        "stages": summary.stages,
        "privacy": summary.privacy,
        "frames": summary.extra,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "targets": {"latency_p95_s": 2.0, "rss_growth_10_min_mb": 50.0},
    }


def write_markdown(result: dict, path: str) -> None:
    lat, rss, st = result["latency_s"], result["rss_mb"], result["stages"]
    m = result["machine"]

    def stage(name: str) -> str:
        s = st.get(name) or {}
        if not s.get("count"):
            return f"| {name} | 0 | - | - | - |"
        return f"| {name} | {s['count']} | {s['p50_s']:.3f} | {s['p95_s']:.3f} | {s['max_s']:.3f} |"

    lines = [
        "# Live loop (benchmarks/bench_live.py)",
        "",
        (f"{result['minutes']:g} min of real-time replay (camera: {result['camera_clip']}, looped; "
        f"microphone: {result['mic']}); windows {result['window_s']:g} s every {result['hop_s']:g} s."),
        (f"Machine: {m['cpus']} CPUs, load average {m['loadavg_start'][0]} at start / "
        f"{m['loadavg_end'][0]} at end (a shared machine: figures are upper bounds)."),
        f"Config overrides: {', '.join(result['overrides']) or 'none (shipped defaults)'}.",
        "",
        "| metric | value | target |",
        "| --- | --- | --- |",
        (f"| latency p50 / p95 / max (end of window -> published) | {lat['p50']:.2f} / {lat['p95']:.2f} / "
        f"{lat['max']:.2f} s | p95 <= 2.0 s |"),
        f"| windows published / dropped | {result['windows_published']} / {result['windows_dropped']} | |",
        f"| windows with LLM-written reasoning (policy on_change) | {result['windows_with_llm_reasoning']} | |",
        (f"| windows whose reasoning was due but over the latency budget (template sent) | "
        f"{result['windows_reasoning_late']} | |"),
        *(f"| latency part `{k}` p50 / p95 | {v['p50']:.3f} / {v['p95']:.3f} s | |"
          for k, v in result["latency_parts_s"].items()),
        f"| RSS start / end / max | {rss['start']:.0f} / {rss['end']:.0f} / {rss['max']:.0f} MB | |",
        (f"| RSS growth (whole run / after the 1st minute) | {rss['growth']:+.1f} / "
        f"{rss['growth_after_warmup']:+.1f} MB | |"),
        f"| RSS slope, 2nd half, x 10 min | {rss['extrapolated_growth_10_min']:+.1f} MB | < 50 MB |",
        (f"| frames de-identified / stale-skipped | {result['privacy'].get('frames_out', 0)} / "
        f"{result['frames'].get('frames_stale', 0)} | |"),
        "",
        "| stage | count | p50 s | p95 s | max s |",
        "| --- | --- | --- | --- | --- |",
        *(stage(n) for n in ("deid_video", "deid_voice", "pose", "cues", "answer", "latency")),
        "",
    ]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "live.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    write_markdown(result, os.path.join(args.out, "live.md"))
    print(json.dumps({k: result[k] for k in ("windows_published", "windows_dropped", "latency_s", "rss_mb")},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
