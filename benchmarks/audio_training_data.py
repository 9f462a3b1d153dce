"""Audio window encoder: train on per-clip de-identification only, or also on session copies?

At run time a file (or a live run) is ONE de-identification session: one random warp and
one running pitch estimate for all of a speaker's speech. The training cache first had
only per-clip de-identification (every clip its own random warp). This trains the
shipped window-encoder recipe (export/build_engines.stage_audio: same architecture,
epochs, augmentation) both ways, for several seeds:

  clip   train: actors 1-18, 1 clean + 2 augmented copies, each de-identified on its own
  mix    the same, plus the same clips de-identified as one session per speaker and copy
         (the voice session head's cache, export/audio_data.build_session_cache)

Both are selected (early stopping) on validation actors 19-20 de-identified both ways,
and scored on validation and test actors 21-24 both ways (test reported only).

    python benchmarks/audio_training_data.py              # seeds 0 1 2, both recipes (~15 min, 2 cores)
    python benchmarks/audio_training_data.py --seeds 0
    python benchmarks/audio_training_data.py --seeds --onnx models/audio_encoder.onnx  # only score a built encoder

Results: benchmarks/results/audio_training_data.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

RECIPES = ("clip", "mix")
PARTS = ("val_clip", "val_session", "test_clip", "test_session")


def parse_args() -> argparse.Namespace:
    from export import default_data

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=default_data(), help="shared data (default: $DEEMO_DATA, else ../shared/data)")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "features", help="feature cache (default: .cache/features)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--onnx", type=Path, nargs="*", default=[],
                   help="also score these exported window encoders on the same four parts (default: none)")
    p.add_argument("--label", nargs="*", default=[], help="their row names in the report (default: the paths)")
    p.add_argument("--epochs", type=int, default=12, help="as build_engines --audio-epochs (default: 12)")
    p.add_argument("--workers", type=int, default=2, help="trainings run at once, one thread each (default: 2)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="default: benchmarks/results")
    return p.parse_args()


def load_parts(a: argparse.Namespace) -> tuple[tuple, dict]:
    """Per-clip training (x, y), the four scored parts, and the session training windows."""
    from export import audio_data
    from export.build_engines import audio_sets

    # the shipped caches (their de-identifier seeds), not the training seed; no nested pools
    a.quick, a.seed, a.workers = False, 0, 1
    sets = audio_sets(a, audio_data.load_ravdess(a.data), 2)
    parts = dict(zip(PARTS, (sets["val"], sets["val_session"], sets["test"], sets["test_session"])))
    return sets["train"], {**parts, "train_session": sets["train_session"]}


def score_parts(parts: dict, predict_fn) -> dict:
    from export.build_engines import FOUR
    from export.train import scores

    out = {}
    for part in PARTS:
        x, y = parts[part]
        p = predict_fn(x)
        out[part] = {"8class": scores(y, p), "4class": scores(y, p, FOUR)}
    return out


def run(job: tuple[str, int, argparse.Namespace]) -> dict:
    """Train one recipe with one seed; scores on every part."""
    import torch

    torch.set_num_threads(1)
    from export.train import predict, train_audio_encoder

    recipe, seed, a = job
    (tx, ty), parts = load_parts(a)
    if recipe == "mix":
        sx, sy = parts["train_session"]
        tx, ty = list(tx) + sx, np.concatenate([ty, sy])
    (vx, vy), (svx, svy) = parts["val_clip"], parts["val_session"]
    sel_x, sel_y = list(vx) + svx, np.concatenate([vy, svy])
    t = time.time()
    model, _ = train_audio_encoder(tx, ty, sel_x, sel_y, epochs=a.epochs, seed=seed, desc=f"{recipe} seed {seed}")
    res = {"recipe": recipe, "seed": seed, "n_train": len(tx), "train_s": round(time.time() - t, 1)}
    return {**res, **score_parts(parts, lambda x: predict(model, x))}


def cell(r: dict) -> str:
    return f"{100 * r['8class']['accuracy']:.1f} % / {r['8class']['macro_f1']:.3f} / {100 * r['4class']['accuracy']:.1f} %"


def write_report(out: Path, runs: list[dict], commands: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "audio_training_data.json").write_text(json.dumps({"commands": commands, "runs": runs}, indent=1))
    lines = [
        "# Audio window encoder: per-clip vs per-clip + session de-identified training data", "",
        "Commands: " + ", ".join(f"`{c}`" for c in commands) + "  ",
        ("8-class accuracy / macro-F1, 4-class accuracy; `clip` = each clip de-identified on its own, "
        "`session` = one de-identification session per speaker (as a file or a live run). Selection on "
        "validation (actors 19-20) both ways; test actors 21-24 reported only."), "",
        "| recipe | seed | " + " | ".join(PARTS) + " |", "|---|---|" + "---|" * len(PARTS),
    ]
    for r in runs:
        if "onnx" in r:
            lines.append(f"| {r['onnx']} | - | " + " | ".join(cell(r[p]) for p in PARTS) + " |")
    trained = [r for r in runs if "recipe" in r]
    for r in sorted(trained, key=lambda r: (r["recipe"], r["seed"])):
        lines.append(f"| {r['recipe']} | {r['seed']} | " + " | ".join(cell(r[p]) for p in PARTS) + " |")
    for recipe in RECIPES:
        rs = [r for r in trained if r["recipe"] == recipe]
        if rs:
            mean = {p: {k: {m: float(np.mean([r[p][k][m] for r in rs])) for m in ("accuracy", "macro_f1")}
                        for k in ("8class", "4class")} for p in PARTS}
            lines.append(f"| **{recipe}, mean** | {len(rs)} | " + " | ".join(cell(mean[p]) for p in PARTS) + " |")
    (out / "audio_training_data.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    a = parse_args()
    command = "python benchmarks/audio_training_data.py " + " ".join(sys.argv[1:])
    old = a.out / "audio_training_data.json"
    previous = json.loads(old.read_text()) if old.exists() else {"commands": [], "runs": []}
    runs, commands = [], [command]
    if a.seeds:
        with ProcessPoolExecutor(a.workers) as ex:
            for r in ex.map(run, [(recipe, seed, a) for seed in a.seeds for recipe in RECIPES]):
                runs.append(r)
                print(json.dumps({k: r[k] for k in ("recipe", "seed", "train_s")}), flush=True)
    else:  # only scoring built encoders: keep the trained rows from before
        runs = [r for r in previous["runs"] if "recipe" in r]
        commands = previous.get("commands", [previous.get("command")])[:1] + [command]
    if a.onnx:
        from export import onnx_export

        _, parts = load_parts(argparse.Namespace(**vars(a)))
        for path, label in zip(a.onnx, a.label or [str(x) for x in a.onnx]):
            runs.append({"onnx": label, **score_parts(parts, lambda x, path=path: onnx_export.run_onnx(path, x))})
    write_report(a.out, runs, commands)
    print(f"wrote {a.out}/audio_training_data.json, .md")


if __name__ == "__main__":
    main()
