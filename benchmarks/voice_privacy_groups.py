"""How likely is a voice de-identifier to pass the privacy targets on a six-speaker test?

The issue's privacy protocol (bench_voice_privacy.py) scores six speakers, RAVDESS
19-24. With six speakers an EER moves a lot with who the speakers are and how each
session's random voice parameters happen to fall: two candidates that passed on the 20
validation speakers failed on those six. This script puts a number on that, on
validation actors 1-20 only: it draws many gender-balanced groups of six speakers
(3 odd = male, 3 even = female actors, as 19-24 are), scores each group exactly as the
benchmark scores 19-24 (10 enrolment utterances per speaker, mean embedding, every other
utterance of the group against every enrolled speaker of the group, speaker sessions),
and reports the spread of the lazy- and semi-informed EERs and the share of groups
below the targets (45 % / 35 %).

It uses sweep_voice_validation.py's enrolment pick and de-identified audio (the same
cache entries, so a variant that the sweep has run costs no new audio), and shows the
sweep's emotion figures beside each variant when its results file has them.

    python benchmarks/voice_privacy_groups.py                      # every variant below
    python benchmarks/voice_privacy_groups.py default pitch_vtl    # some of them

Results: benchmarks/results/voice_privacy_groups.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import bench_voice_privacy as b
import numpy as np

from edge_app.eval.speaker import eer, enrol

ACTORS = range(1, 21)  # training + validation actors; never the test actors 21-24
TARGET_LAZY, TARGET_SEMI = 0.45, 0.35
# name -> (VoiceDeidOptions overrides as the validation sweep spelled them, so its cache
# entries are reused, and a short description)
VARIANTS: dict[str, tuple[dict, str]] = {
    "mcadams_rand": ({"method": "mcadams"}, "McAdams, random alpha (VPC B2)"),
    "default": ({"method": "mcadams+pitch"}, "default: pitch normalisation + random McAdams"),
    "default_eq": ({"method": "mcadams+pitch", "ltas_norm_strength": 1.0}, "default + spectrum eq"),
    "pitch_eq": ({"method": "mcadams+pitch", "mcadams_alpha": 1.0, "ltas_norm_strength": 1.0},
                 "pitch + spectrum eq (no random voice)"),
    "pitch_vtl": ({"method": "mcadams+pitch", "mcadams_alpha": 1.0, "ltas_norm_strength": 1.0,
                   "formant_scale_range": [0.87, 1.15]}, "pitch + vocal tract 0.87-1.15 + eq (`pitch+vtl`)"),
    "vtl19_eq": ({"method": "mcadams+pitch", "mcadams_alpha": 1.0, "ltas_norm_strength": 1.0,
                  "formant_scale_range": [0.84, 1.19]}, "pitch + vocal tract 0.84-1.19 + eq"),
    "vtl19_eq05": ({"method": "pitch+vtl", "formant_scale_range": [0.84, 1.19], "ltas_norm_strength": 0.5},
                   "pitch + vocal tract 0.84-1.19 + half eq"),
    "vtl19_mc85": ({"method": "mcadams+pitch", "alpha_range": [0.85, 1.0], "formant_scale_range": [0.84, 1.19],
                    "ltas_norm_strength": 1.0}, "pitch + vocal tract 0.84-1.19 + eq + McAdams 0.85-1"),
    "vtl22_eq": ({"method": "pitch+vtl", "formant_scale_range": [0.82, 1.22]}, "pitch + vocal tract 0.82-1.22 + eq"),
    "vtl25_eq": ({"method": "mcadams+pitch", "mcadams_alpha": 1.0, "ltas_norm_strength": 1.0,
                  "formant_scale_range": [0.8, 1.25]}, "pitch + vocal tract 0.80-1.25 + eq"),
    "vtl25_eq05": ({"method": "pitch+vtl", "formant_scale_range": [0.8, 1.25], "ltas_norm_strength": 0.5},
                   "pitch + vocal tract 0.80-1.25 + half eq"),
    "vtl25": ({"method": "mcadams+pitch", "mcadams_alpha": 1.0, "formant_scale_range": [0.8, 1.25]},
              "pitch + vocal tract 0.80-1.25, no eq"),
    "pitch_vtl_f0": ({"method": "pitch+vtl", "target_f0_range": [125, 205]},
                     "`pitch+vtl` + random pitch level 125-205 Hz"),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variants", nargs="*", help=f"from {', '.join(VARIANTS)} (default: all)")
    p.add_argument("--data", default=os.environ.get("DEEMO_DATA", str(ROOT.parent / "shared" / "data")),
                   help="folder holding ravdess_speech/ (default: $DEEMO_DATA or ../shared/data)")
    p.add_argument("--groups", type=int, default=1000, help="six-speaker groups drawn (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes for audio not yet cached (default: 2)")
    p.add_argument("--cache", default=str(ROOT / ".cache" / "voice_privacy"), help="default: .cache/voice_privacy")
    p.add_argument("--sweep", default=str(ROOT / ".cache" / "voice_sweep.jsonl"),
                   help="sweep_voice_validation.py results, for the emotion columns (default: %(default)s)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="default: benchmarks/results")
    return p.parse_args()


def draw_groups(n: int, seed: int = 1) -> list[tuple[int, ...]]:
    """n gender-balanced six-speaker groups of ACTORS (RAVDESS: odd actors male)."""
    rng = np.random.default_rng(seed)
    men, women = [a for a in ACTORS if a % 2], [a for a in ACTORS if not a % 2]
    return [tuple(sorted([*rng.choice(men, 3, replace=False), *rng.choice(women, 3, replace=False)]))
            for _ in range(n)]


def group_eers(enrol_recs: dict, test_recs: dict, enrol_clips, test_clips, groups) -> np.ndarray:
    """EER of each group: its speakers' trials against its speakers' models only."""
    models = np.stack([enrol(np.stack([enrol_recs[c.path]["emb"] for c in enrol_clips if c.actor == a]))
                       for a in ACTORS])
    scores = np.stack([test_recs[c.path]["emb"] for c in test_clips]) @ models.T
    spk = np.array([c.actor for c in test_clips])
    out = []
    for g in groups:
        cols = np.array(g) - ACTORS.start
        rows = np.isin(spk, g)
        target = spk[rows][:, None] == np.array(g)[None]
        out.append(eer(scores[rows][:, cols].ravel(), target.ravel()))
    return np.array(out)


def sweep_emotion(path: Path) -> list[tuple[str, dict, dict]]:
    """(name, spec, mean LR/SVM 8- and 4-class accuracy) of every speaker-session sweep row;
    the last row wins where a variant was run more than once."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("sessions") == "speaker" and "emo8" in r:
                rows.append((r["name"], r["spec"], {k: float(np.mean(list(r[k].values()))) for k in ("emo8", "emo4")}))
    return rows[::-1]


def summary(e: np.ndarray, target: float) -> dict:
    return {"mean": float(e.mean()), "p10": float(np.percentile(e, 10)), "p25": float(np.percentile(e, 25)),
            "median": float(np.median(e)), "share_below_target": float(np.mean(e < target))}


def write_report(out: Path, res: dict, dist: dict[str, dict[str, np.ndarray]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "voice_privacy_groups.json").write_text(json.dumps(res, indent=1))
    orig = res.get("original_emotion")
    lines = [
        "# Voice privacy on six-speaker groups (validation actors 1-20)", "",
        f"Command: `{res['command']}`  ",
        f"{res['n_groups']} gender-balanced groups of 6 of actors 1-20, each scored like the benchmark's "
        "actors 19-24 (10 enrolment utterances, speaker sessions; Resemblyzer). `below` = share of groups "
        "under the target (lazy 45 %, semi 35 %), `fails either` = under at least one: how often a "
        "six-speaker test would fail the variant. "
        "Emotion: the validation sweep's 5-fold actor-grouped CV on actors 1-20 (mean of LR and SVM; "
        "`sweep_voice_validation.py`), points against the original audio"
        + (f" ({100 * orig['emo8']:.1f} % 8-class, {100 * orig['emo4']:.1f} % 4-class)." if orig else "."), "",
        ("| variant | lazy EER mean (p10) | lazy below 45 % | semi EER mean (p10) | semi below 35 % "
        "| fails either | emotion 8-class | emotion 4-class |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    def pts(emo: dict | None, k: str) -> str:
        return f"{100 * emo[k]:.1f} % ({100 * (emo[k] - orig[k]):+.1f})" if emo and orig else "-"

    for r in res["variants"].values():
        lz, sm, emo = r["lazy"], r["semi"], r.get("emotion")

        lines.append(f"| {r['description']} | {100 * lz['mean']:.1f} % ({100 * lz['p10']:.1f}) | "
                     f"{100 * lz['share_below_target']:.0f} % | {100 * sm['mean']:.1f} % ({100 * sm['p10']:.1f}) | "
                     f"{100 * sm['share_below_target']:.0f} % | {100 * r['fails_either']:.0f} % | {pts(emo, 'emo8')} | {pts(emo, 'emo4')} |")
    lines += ["", "![EER per six-speaker group](voice_privacy_groups.png)", ""]
    (out / "voice_privacy_groups.md").write_text("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dist)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.5), sharey=True)
    for ax, kind, target in ((axes[0], "lazy", TARGET_LAZY), (axes[1], "semi", TARGET_SEMI)):
        ax.boxplot([100 * dist[n][kind] for n in names], orientation="horizontal", whis=(10, 90), showfliers=False)
        ax.axvline(100 * target, color="red", ls="--", lw=1)
        ax.set_title(f"{kind}-informed EER per six-speaker group (%), target {100 * target:.0f}")
    axes[0].set_yticks(range(1, len(names) + 1), names)
    fig.tight_layout()
    fig.savefig(out / "voice_privacy_groups.png", dpi=110)
    plt.close(fig)


def main() -> None:
    a = parse_args()
    names = a.variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    t0 = time.time()
    clips = [c for c in b.load_clips(Path(a.data)) if c.actor in ACTORS]
    enrol_clips = b.pick_enrolment(clips, ACTORS, 10, np.random.default_rng(0))  # the sweep's pick
    enrol_set = {c.path for c in enrol_clips}
    test_clips = [c for c in clips if c.path not in enrol_set]
    every = {c.path for c in clips}
    groups = draw_groups(a.groups)
    orig = b.run_jobs(a, "original", "test", clips, every, set())
    emotion = sweep_emotion(Path(a.sweep))
    res: dict = {"command": "python benchmarks/voice_privacy_groups.py " + " ".join(sys.argv[1:]),
                 "n_groups": len(groups), "variants": {},
                 "original_emotion": next((e for n, _, e in emotion if n == "original"), None)}
    dist: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        spec, description = VARIANTS[name]
        b.METHODS[name] = spec
        test = b.run_jobs(a, name, "test", clips, every, set(), "speaker")
        enr = b.run_jobs(a, name, "enrol", enrol_clips, enrol_set, set(), "speaker")
        dist[name] = {"lazy": group_eers(orig, test, enrol_clips, test_clips, groups),
                      "semi": group_eers(enr, test, enrol_clips, test_clips, groups)}
        r = {"description": description, "options": spec,
             "lazy": summary(dist[name]["lazy"], TARGET_LAZY), "semi": summary(dist[name]["semi"], TARGET_SEMI),
             "fails_either": float(np.mean((dist[name]["lazy"] < TARGET_LAZY) | (dist[name]["semi"] < TARGET_SEMI)))}
        r["emotion"] = next((e for n, s, e in emotion if s == spec and n != "original"), None)
        res["variants"][name] = r
        print(f"{name}: lazy mean {100 * r['lazy']['mean']:.1f} % ({100 * r['lazy']['share_below_target']:.0f} % "
              f"of groups below 45), semi mean {100 * r['semi']['mean']:.1f} % "
              f"({100 * r['semi']['share_below_target']:.0f} % below 35)", flush=True)
    res["wall_s"] = time.time() - t0
    write_report(Path(a.out), res, dist)
    print(f"wrote {a.out}/voice_privacy_groups.json, .md, .png ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
