"""Audio window encoder: which training data, which input channels?

At run time a file (or a live run) is ONE de-identification session: one random warp and
one running pitch estimate for all of a speaker's speech. The training cache first had
only per-clip de-identification (every clip its own random warp). This trains the
shipped window-encoder recipe (export/build_engines.stage_audio: same architecture,
epochs, augmentation) both ways, for several seeds:

  clip   train: actors 1-18, 1 clean + 2 augmented copies, each de-identified on its own
  mix    the same, plus the same clips de-identified as one session per speaker and copy
         (the voice session head's cache, export/audio_data.build_session_cache)
  mix+emb  mix, with the pretrained speech embedding's 96 channels as convolution inputs
         too (edge_app/encoders/speech_embedding.py: early fusion)
  mix+head mix, then the speech embedding's own classifier fused with a weight chosen on
         validation (export/train.fuse_embedding_head: late fusion, what build_engines ships)
The convolutions of clip, mix and mix+head read only the log-mel + prosody channels (the
first PROSODY_DIM columns of the same cached features).

Both are selected (early stopping) on validation actors 19-20 de-identified both ways,
and scored on validation and test actors 21-24 both ways (test reported only).

    python benchmarks/audio_training_data.py              # seeds 0 1 2, every recipe (~30 min, 2 cores)
    python benchmarks/audio_training_data.py --seeds 0 --recipes mix mix+emb
    python benchmarks/audio_training_data.py --seeds --onnx models/audio_encoder.onnx  # only score a built encoder
    python benchmarks/audio_training_data.py --seeds --ensemble mix+head 0 1 2  # average saved runs (no training)

Results: benchmarks/results/audio_training_data.{json,md} (rows of recipes and seeds not
re-run are kept from the previous results). Every trained run's class probabilities on the four
parts are saved to .cache/audio_training_data/RECIPE@seedN.npz, so that `--ensemble` can score
the average of several seeds on the same clips as its members (a paired comparison).
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

RECIPES = ("clip", "mix", "mix+emb", "mix+head")
PARTS = ("val_clip", "val_session", "test_clip", "test_session")


def parse_args() -> argparse.Namespace:
    from export import default_data

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=default_data(), help="shared data (default: $DEEMO_DATA, else ../shared/data)")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "features", help="feature cache (default: .cache/features)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES,
                   help="recipes to train (default: all: %(default)s)")
    p.add_argument("--onnx", type=Path, nargs="*", default=[],
                   help="also score these exported window encoders on the same four parts (default: none)")
    p.add_argument("--label", nargs="*", default=[], help="their row names in the report (default: the paths)")
    p.add_argument("--epochs", type=int, default=12, help="as build_engines --audio-epochs (default: 12)")
    p.add_argument("--workers", type=int, default=2, help="trainings run at once, one thread each (default: 2)")
    p.add_argument("--ensemble", nargs="+", default=None, metavar=("RECIPE", "SEED"),
                   help="score the mean probabilities of saved runs of RECIPE with these seeds (default: none)")
    p.add_argument("--probs", type=Path, default=ROOT / ".cache" / "audio_training_data",
                   help="where each run's probabilities are saved (default: .cache/audio_training_data)")
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


def channels(xs: list[np.ndarray], n: int | None) -> list[np.ndarray]:
    """The first n feature channels (None: all)."""
    return xs if n is None else [x[:, :n] for x in xs]


def score_probs(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict:
    """8- and 4-class scores of each part's (N, 8) probabilities."""
    from export.build_engines import FOUR
    from export.train import scores

    return {part: {"8class": scores(labels[part], probs[part]), "4class": scores(labels[part], probs[part], FOUR)}
            for part in PARTS}  # fmt: skip


def predict_parts(parts: dict, predict_fn, n_channels: int | None = None) -> dict[str, np.ndarray]:
    return {part: predict_fn(channels(parts[part][0], n_channels)) for part in PARTS}


def score_parts(parts: dict, predict_fn, n_channels: int | None = None) -> dict:
    return score_probs(predict_parts(parts, predict_fn, n_channels), {part: parts[part][1] for part in PARTS})


def run_key(recipe: str, seed: int) -> str:
    return f"{recipe}@seed{seed}"


def ensemble(recipe: str, seeds: list[int], probs_dir: Path) -> dict:
    """Seed ensemble: the mean of the saved runs' probabilities, clip by clip (every run is
    scored on the same clips, so members and ensemble are a paired comparison)."""
    runs = [np.load(probs_dir / f"{run_key(recipe, s)}.npz") for s in seeds]
    labels = {part: runs[0][f"y_{part}"] for part in PARTS}
    if any(not np.array_equal(r[f"y_{part}"], labels[part]) for r in runs for part in PARTS):
        raise ValueError(f"saved runs of {recipe} were scored on different clips: {seeds}")
    mean = {part: np.mean([r[f"p_{part}"] for r in runs], axis=0) for part in PARTS}
    return {"ensemble": recipe, "seeds": list(seeds), **score_probs(mean, labels)}


def run(job: tuple[str, int, argparse.Namespace]) -> dict:
    """Train one recipe with one seed; scores on every part."""
    import torch

    torch.set_num_threads(1)
    from edge_app.encoders.features import AUDIO_DIM, PROSODY_DIM
    from export.train import fuse_embedding_head, predict, train_audio_encoder

    recipe, seed, a = job
    n = AUDIO_DIM if recipe.endswith("+emb") else PROSODY_DIM
    (tx, ty), parts = load_parts(a)
    if recipe.startswith("mix"):
        sx, sy = parts["train_session"]
        tx, ty = list(tx) + sx, np.concatenate([ty, sy])
    (vx, vy), (svx, svy) = parts["val_clip"], parts["val_session"]
    sel_x, sel_y = list(vx) + svx, np.concatenate([vy, svy])
    t = time.time()
    model, _ = train_audio_encoder(channels(tx, n), ty, channels(sel_x, n), sel_y, epochs=a.epochs, seed=seed,
                                   desc=f"{recipe} seed {seed}", in_dim=n)
    res = {"recipe": recipe, "seed": seed, "n_train": len(tx), "train_s": round(time.time() - t, 1)}
    if recipe.endswith("+head"):  # the fused model reads every channel; its convolutions the first n
        model, fusion = fuse_embedding_head(model, tx, ty, sel_x, sel_y)
        res["fusion_weight"], n = fusion["weight"], None
    probs = predict_parts(parts, lambda x: predict(model, x), n)
    a.probs.mkdir(parents=True, exist_ok=True)
    np.savez(a.probs / f"{run_key(recipe, seed)}.npz", **{f"p_{k}": v for k, v in probs.items()},
             **{f"y_{k}": parts[k][1] for k in PARTS})
    return {**res, **score_probs(probs, {k: parts[k][1] for k in PARTS})}


def cell(r: dict) -> str:
    return f"{100 * r['8class']['accuracy']:.1f} % / {r['8class']['macro_f1']:.3f} / {100 * r['4class']['accuracy']:.1f} %"


def write_report(out: Path, runs: list[dict], commands: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "audio_training_data.json").write_text(json.dumps({"commands": commands, "runs": runs}, indent=1))
    lines = [
        "# Audio window encoder: training data (per clip / + sessions) and the pretrained speech embedding", "",
        "Commands: " + ", ".join(f"`{c}`" for c in commands) + "  ",
        ("8-class accuracy / macro-F1, 4-class accuracy; `clip` = each clip de-identified on its own, "
        "`session` = one de-identification session per speaker (as a file or a live run). Selection on "
        "validation (actors 19-20) both ways; test actors 21-24 reported only. Recipes: `clip` per-clip copies, "
        "`mix` + session copies, `mix+emb` + the speech embedding as convolution inputs, `mix+head` + the "
        "speech embedding's own classifier fused at a weight chosen on validation (shipped)."), "",
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
    for r in runs:
        if "ensemble" in r:
            seeds = " ".join(map(str, r["seeds"]))
            lines.append(f"| **{r['ensemble']}, ensemble** | {seeds} | " + " | ".join(cell(r[p]) for p in PARTS) + " |")
    (out / "audio_training_data.md").write_text("\n".join(lines) + "\n")


def onnx_input_dim(path: Path) -> int:
    """Feature channels an exported encoder takes (older encoders take only the first ones)."""
    import onnx

    return onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[2].dim_value


def main() -> None:
    a = parse_args()
    command = "python benchmarks/audio_training_data.py " + " ".join(sys.argv[1:])
    old = a.out / "audio_training_data.json"
    previous = json.loads(old.read_text()) if old.exists() else {"commands": [], "runs": []}
    jobs = [(recipe, seed, a) for seed in a.seeds for recipe in a.recipes]
    redone = {(r, s) for r, s, _ in jobs}
    runs = [r for r in previous["runs"] if "recipe" in r and (r["recipe"], r["seed"]) not in redone]
    runs += [r for r in previous["runs"] if "onnx" in r and r["onnx"] not in (a.label or [str(x) for x in a.onnx])]
    new_ensemble = (a.ensemble[0], [int(x) for x in a.ensemble[1:]]) if a.ensemble else None
    runs += [r for r in previous["runs"] if "ensemble" in r and (r["ensemble"], r["seeds"]) != new_ensemble]
    commands = previous.get("commands", []) + [command]
    if jobs:
        load_parts(argparse.Namespace(**vars(a)))  # build any missing cache here, not in racing workers
        with ProcessPoolExecutor(a.workers) as ex:
            for r in ex.map(run, jobs):
                runs.append(r)
                print(json.dumps({k: r[k] for k in ("recipe", "seed", "train_s")}), flush=True)
    if a.onnx:
        from export import onnx_export

        _, parts = load_parts(argparse.Namespace(**vars(a)))
        for path, label in zip(a.onnx, a.label or [str(x) for x in a.onnx]):
            n = onnx_input_dim(path)
            runs.append({"onnx": label, **score_parts(parts, lambda x, path=path: onnx_export.run_onnx(path, x), n)})
    if new_ensemble:
        runs.append(ensemble(*new_ensemble, a.probs))
    write_report(a.out, runs, commands)
    print(f"wrote {a.out}/audio_training_data.json, .md")


if __name__ == "__main__":
    main()
