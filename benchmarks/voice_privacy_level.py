"""Does the voice de-identifier hold at every microphone level? Speaker-verification EER of
the default method against the input level.

Why: the de-identifier skipped frames it judged silent by absolute levels (F0 tracker:
-46 dBFS, McAdams: -70 dBFS windowed). RAVDESS is recorded quietly already (median loudest
40 ms frame -28.9 dBFS, `--ravdess-levels`), and a quieter microphone pushed the speech itself under those levels,
where it passed through almost untouched. This runs `bench_voice_privacy.py` (default method,
one session per speaker, no emotion part) with every clip scaled by each gain before
de-identification, and collects the EERs into one table and plot. `--label` names the code
measured (e.g. `before` / `after` a change), so both rows stay in the same file.

    python benchmarks/voice_privacy_level.py --label after     # ~3 min
    python benchmarks/voice_privacy_level.py --label "LABEL" --method default_hold5 --bang-dbfs -6
    python benchmarks/voice_privacy_level.py --report          # table and plot from the JSON
    python benchmarks/voice_privacy_level.py --ravdess-levels  # how loud RAVDESS itself is (~1 min)

Writes benchmarks/results/voice_privacy_level.{json,md,png} (`--ravdess-levels`:
voice_privacy_level_ravdess.json). Measures; chooses nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import report  # benchmarks/report.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks/results/voice_privacy_level"
TARGETS = {"lazy": 0.45, "semi": 0.35}


def measure(gain_db: float, method: str = "default", bang_dbfs: float | None = None) -> dict:
    """One bench_voice_privacy run at `gain_db`: the method's EERs and real-time factor (with a
    bang at `bang_dbfs` before each session's first clip, if given)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "benchmarks/bench_voice_privacy.py"), "--methods", method, "--no-emotion",
               "--sessions", "speaker", "--out", tmp] + (["--input-gain-db", f"{gain_db:g}"] if gain_db else [])  # fmt: skip
        cmd += ["--bang-dbfs", f"{bang_dbfs:g}"] if bang_dbfs is not None else []
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        res = json.loads(next(Path(tmp).glob("voice_privacy*.json")).read_text())
    row = res["methods"][f"{method} [speaker]"]
    return {
        "eer_lazy": row["eer_lazy"],
        "eer_semi": row["eer_semi"],
        "rtf": row["rtf"],
        "code_hash": res["config"]["code_hash"],
    }


def ravdess_levels() -> dict:
    """How loud RAVDESS is, in the F0 tracker's terms: per clip (all 1440, 16 kHz), the RMS of
    its loudest 40 ms frame (10 ms hop) in dBFS, percentiles over clips; and the share of all
    frames under the tracker's absolute silence level (F0Config.silence_rms)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from edge_app.deid.pitch import F0_WIN, F0Config
    from export import audio_data, default_data

    floor = F0Config().silence_rms
    peaks, below, total = [], 0, 0
    for u in audio_data.load_ravdess(default_data()):
        x = audio_data.read_clip(str(u.path)).astype(np.float64)
        idx = np.arange(0, len(x) - F0_WIN + 1, 160)[:, None] + np.arange(F0_WIN)[None, :]
        rms = np.sqrt((x[idx] ** 2).mean(axis=1))
        peaks.append(20 * np.log10(rms.max() + 1e-12))
        below, total = below + int((rms < floor).sum()), total + len(rms)
    pct = {str(q): round(float(np.percentile(peaks, q)), 1) for q in (1, 5, 50, 95)}
    return {"clips": len(peaks), "loudest_frame_dbfs_percentiles": pct,
            "share_of_frames_below_silence_rms": round(below / total, 3), "silence_rms": floor}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--label", default="current", help="name of the code measured (default: %(default)s)"
    )
    ap.add_argument(
        "--gains", default="0,-30,-35,-40,-45", help="input gains in dB (default: %(default)s)"
    )
    ap.add_argument(
        "--report", action="store_true", help="only rewrite the table and plot from the JSON"
    )
    ap.add_argument("--method", default="default",
                    help="bench_voice_privacy.py method measured (default: %(default)s)")
    ap.add_argument("--bang-dbfs", type=float, default=None,
                    help="a bang at this level before each session's first clip (bench_voice_privacy.py "
                         "--bang-dbfs; default: none)")
    ap.add_argument("--ravdess-levels", action="store_true", help="only measure how loud RAVDESS's clips are")
    a = ap.parse_args()
    if a.ravdess_levels:
        levels = ravdess_levels()
        (ROOT / "benchmarks/results/voice_privacy_level_ravdess.json").write_text(json.dumps(levels, indent=1) + "\n")
        print(json.dumps(levels))
        return
    result = (
        json.loads(OUT.with_suffix(".json").read_text())
        if OUT.with_suffix(".json").exists()
        else {}
    )
    if not a.report:
        result[a.label] = {}
        for g in (float(x) for x in a.gains.split(",")):
            result[a.label][f"{g:g}"] = measure(g, a.method, a.bang_dbfs)
            print(a.label, g, result[a.label][f"{g:g}"], flush=True)
    report.write(OUT, result, markdown, plot)


def markdown(result: dict) -> str:
    lines = ["# Voice de-identification against the microphone's level", "",
             ("`python benchmarks/voice_privacy_level.py --label LABEL`: `bench_voice_privacy.py --methods default "
             "--no-emotion --sessions speaker --input-gain-db G` (RAVDESS actors 19-24, Resemblyzer, 10-utterance "
             "enrolment; the lazy-informed attacker enrols on the original recordings). EER lazy / semi-informed; "
             "targets 45 / 35 %. Rows with a bang: `--bang-dbfs B`, each session first hears a door slam (0.3 s "
             "of noise at B dBFS, falling 60 dB), then the speech at the column's level."), "",
             "| code | " + " | ".join(f"{g} dB" for g in next(iter(result.values()))) + " |",
             "|---|" + "---|" * len(next(iter(result.values())))]  # fmt: skip
    for label, rows in result.items():
        cells = [f"{100 * r['eer_lazy']:.1f} / {100 * r['eer_semi']:.1f} %" for r in rows.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.2))
    colours = plt.get_cmap("tab10").colors
    for i, (label, rows) in enumerate(result.items()):  # one colour per row, solid = lazy, dashed = semi
        g = [float(k) for k in rows]
        for kind, style in (("lazy", "-o"), ("semi", "--s")):
            ax.plot(g, [100 * r[f"eer_{kind}"] for r in rows.values()], style, color=colours[i % len(colours)],
                    label=f"{label}, {kind}-informed", markersize=4)
    for kind, y in TARGETS.items():
        ax.axhline(100 * y, color="grey", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[0], 100 * y + 0.5, f"{kind} target", fontsize=7, color="grey")
    ax.set_xlabel("input level relative to RAVDESS's recording, dB")
    ax.set_ylabel("speaker-verification EER, %")
    ax.set_title("Voice de-identifier vs microphone level (actors 19-24)", fontsize=9)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    report.save(fig, path)


if __name__ == "__main__":
    main()
