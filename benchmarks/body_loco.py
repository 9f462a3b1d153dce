"""Leave-one-content-out validation of the body encoder's training recipe (no test data).

Each content of the training split that has all four emotions (bow, byebye, dash, guide,
walk take 001, walk-back, walk-right) is held out in turn; the encoder is trained on the
others exactly as export/build_engines.py trains it (20 epochs, fixed schedule) and scored
on 16 random-camera windows per held-out clip. The test contents are never loaded.
This is how left-right mirroring (body_data.mirrored), the neutral-only contents'
missing emotion labels (body_data.load_clips) and the number of camera views per take
(body_data.TRAIN_WINDOWS_PER_CLIP), the window length (body_data.WINDOW_S) and the
encoder's dilations (body_data.DILATIONS) were chosen:

    base       every take once, neutral-only contents labelled neutral
    mirror     + each take's left-right mirror image
    unlabelled + the neutral-only contents as style targets only
    views48    + 48 random-camera windows per training take instead of 24
    epochs40   unlabelled trained twice as long instead (as many steps as views48)
    views48_at4s  views48 (trained on 3 s windows) scored on 4 s windows, the length that
                  `deemo-edge file` and `live` analyse by default
    train4s    views48 trained on 4 s windows and scored on 4 s windows
    dil8       train4s with a fourth dilated block (dilations 1, 2, 4, 8): a receptive field of
               about 6 s instead of 3 s, so one unit can see the whole 4 s window (shipped)
    d96        train4s with 96 channels instead of 64
    dil8_shape dil8 with random body proportions (width, height x 0.9-1.1 each, per window)
    dil8_roll  dil8 with a random camera roll (the image turned by up to +-10 degrees)
    dil8_att1  dil8 with one self-attention block after the convs (every frame sees the window)
    att2       a small transformer: the stem, one conv block (dilation 1), two self-attention blocks
    stgcn      dil8 with two skeleton graph conv blocks (ST-GCN units, 16 channels per joint) in
               place of the first conv, which mixes every joint with every other at once
    dil8_d32   dil8 with 32 channels instead of 64

    python benchmarks/body_loco.py                      # all variants, 9-22 min each on one core
    python benchmarks/body_loco.py --variants unlabelled
    python benchmarks/body_loco.py --variants views48 --seed 1     # stored as views48@seed1
    python benchmarks/body_loco.py --ensemble views48,views48@seed1,views48@seed2
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from edge_app.encoders.features import BODY_DIM, BODY_FPS
from export import body_data, default_data
from export.models import EncoderConfig
from export.train import predict, scores, train_encoder

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Recipe:
    mirror: bool  # add each training take's left-right mirror image
    neutral_only_labels: bool  # label the neutral-only contents neutral (else style targets only)
    windows_per_clip: int  # random-camera windows drawn per training take
    epochs: int = 20
    train_s: float = 3.0  # training window (and crop) length, seconds (3 s until 2026-12-01)
    eval_s: float = 3.0  # held-out window length, seconds
    d: int = 64  # encoder channels
    dilations: tuple[int, ...] = (1, 2, 4)  # one residual conv block per dilation
    attention_layers: int = 0  # self-attention blocks after the convs (export.models.AttentionBlock)
    graph_layers: int = 0  # skeleton graph conv blocks before them (export.models.GraphStem)
    extra: body_data.ExtraAugment = field(default_factory=body_data.ExtraAugment)  # augmentations tried and not adopted


# each a step from the one before it
RECIPES = {
    "base": Recipe(False, True, 24),
    "mirror": Recipe(True, True, 24),
    "unlabelled": Recipe(True, False, 24),
    "views48": Recipe(True, False, 48),
    # the same number of training steps as views48, from the 24 views of "unlabelled"
    "epochs40": Recipe(True, False, 24, epochs=40),
    # the product's window length (edge_app's default 4 s), scored on the same kind of windows
    "views48_at4s": Recipe(True, False, 48, eval_s=4.0),
    "train4s": Recipe(True, False, 48, train_s=4.0, eval_s=4.0),
    "dil8": Recipe(True, False, 48, train_s=4.0, eval_s=4.0, dilations=(1, 2, 4, 8)),
    "d96": Recipe(True, False, 48, train_s=4.0, eval_s=4.0, d=96),
    "dil8_shape": Recipe(True, False, 48, train_s=4.0, eval_s=4.0, dilations=(1, 2, 4, 8),
                         extra=body_data.ExtraAugment(shape=0.1)),
    "dil8_roll": Recipe(True, False, 48, train_s=4.0, eval_s=4.0, dilations=(1, 2, 4, 8),
                        extra=body_data.ExtraAugment(roll_deg=10.0)),
    "dil8_att1": Recipe(True, False, 48, train_s=4.0, eval_s=4.0, dilations=(1, 2, 4, 8), attention_layers=1),
    "att2": Recipe(True, False, 48, train_s=4.0, eval_s=4.0, dilations=(1,), attention_layers=2),
    "stgcn": Recipe(True, False, 48, train_s=4.0, eval_s=4.0, dilations=(1, 2, 4, 8), graph_layers=2),
    # 96 channels lost to 64 (d96), so the other way: fewer weights for 6 training contents
    "dil8_d32": Recipe(True, False, 48, train_s=4.0, eval_s=4.0, d=32, dilations=(1, 2, 4, 8)),
}


def fold(clips: list, styles: list[str], held_out: str, recipe: Recipe, seed: int = 0) -> dict:
    train = [c for c in clips if c.content != held_out]
    if recipe.mirror:
        train += [body_data.mirrored(c) for c in train]
    held = [c for c in clips if c.content == held_out]
    tx, ty, ts = [], [], []
    rng = np.random.default_rng(seed)  # training views
    for c in train:
        for w in body_data.windows(c, recipe.windows_per_clip, rng, augment=True, seconds=recipe.train_s, extra=recipe.extra):
            tx.append(w), ty.append(c.emotion), ts.append(styles.index(c.style))
    ex, ey, eid = [], [], []
    rng = np.random.default_rng(2)
    for i, c in enumerate(c for c in held if c.emotion >= 0):
        for w in body_data.windows(c, 16, rng, augment=False, seconds=recipe.eval_s):
            ex.append(w), ey.append(c.emotion), eid.append(i)
    ey, eid = np.array(ey), np.array(eid)
    cfg = EncoderConfig(in_dim=BODY_DIM, n_classes=4, d=recipe.d, k_tokens=4, n_aux=len(styles), downsample=0, dropout=0.3,
                        dilations=recipe.dilations, attention_layers=recipe.attention_layers,
                        graph_layers=recipe.graph_layers)
    model, _ = train_encoder(cfg, tx, np.array(ty), ex[:8], ey[:8], crop=round(recipe.train_s * BODY_FPS), epochs=recipe.epochs, batch=32, lr=3e-3, seed=seed,
                             aux_y=np.array(ts), patience=10**6, keep_best=False, desc=held_out)  # fmt: skip
    p = predict(model, ex)
    # test-time augmentation, measured and not adopted: the same model's probabilities averaged
    # with its answer on each window's mirror image (a paired comparison, no retraining noise;
    # views48: window accuracy 0.589 -> 0.569, clips 0.679 either way)
    p_tta = 0.5 * (p + predict(model, [body_data.mirror_features(x) for x in ex]))
    return {"content": held_out, **scored(ey, p, eid), "mirror_tta": scored(ey, p_tta, eid), "_probs": (p, ey, eid)}


def scored(ey: np.ndarray, p: np.ndarray, eid: np.ndarray) -> dict:
    """Window and clip scores of one held-out content."""
    _, clip_y, clip_p = body_data.per_clip(ey, p, eid)
    return {"windows": scores(ey, p), "clips": scores(clip_y, clip_p)}


def mean_accuracies(folds: list[dict]) -> dict:
    """Window and clip accuracy averaged over held-out contents (each weighs the same)."""
    return {"mean_window_acc": round(float(np.mean([f["windows"]["accuracy"] for f in folds])), 3),
            "mean_clip_acc": round(float(np.mean([f["clips"]["accuracy"] for f in folds])), 3)}  # fmt: skip


def score_folds(folds: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """Scores per held-out content and their means, from (content, probs, labels, clip ids)."""
    out = [{"content": c, **scored(ey, p, eid)} for c, p, ey, eid in folds]
    return {"folds": out, **mean_accuracies(out)}


def ensemble(keys: list[str], probs_dir: Path) -> dict:
    """Seed ensemble: the held-out windows are the same for every seed (their own fixed rng), so
    the members' saved probabilities average window by window; each member is scored on the
    same windows beside it (a paired comparison)."""
    runs = [np.load(probs_dir / f"{k}.npz") for k in keys]
    contents = [str(c) for c in runs[0]["contents"]]
    members = []
    for r in runs:
        if [str(c) for c in r["contents"]] != contents:
            raise ValueError(f"runs of different folds: {keys}")
        members.append([(c, r[f"p_{c}"], r[f"y_{c}"], r[f"id_{c}"]) for c in contents])
    mean = [(c, np.mean([m[i][1] for m in members], axis=0), *members[0][i][2:]) for i, c in enumerate(contents)]
    res = score_folds(mean)
    res["members"] = {k: mean_accuracies(score_folds(m)["folds"]) for k, m in zip(keys, members)}
    res["command"] = f"python benchmarks/body_loco.py --ensemble {','.join(keys)}"
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="3D joint cache")
    ap.add_argument("--variants", default=",".join(RECIPES), help=f"comma list of {', '.join(RECIPES)} (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/body_loco.json")
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed and training views (default: %(default)s; results of another seed are "
                    "stored as VARIANT@seedN: the spread between seeds is the noise of a comparison)")
    ap.add_argument("--ensemble", default=None, metavar="KEY,KEY,...",
                    help="score the mean of these finished runs' held-out probabilities (e.g. views48,views48@seed1,"
                    "views48@seed2; each run saved them under --probs) instead of training (default: train)")
    ap.add_argument("--probs", type=Path, default=ROOT / ".cache/body_loco",
                    help="where each run keeps its held-out probabilities (default: %(default)s)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    result = {}
    if a.ensemble:
        keys = a.ensemble.split(",")
        name = f"ensemble({','.join(keys)})"
        result[name] = r = ensemble(keys, a.probs)
        for k, m in r["members"].items():
            print(f"  member {k}: window acc {m['mean_window_acc']}, clip acc {m['mean_clip_acc']}")
        print(f"{name}: window acc {r['mean_window_acc']}, clip acc {r['mean_clip_acc']}")
    for v in a.variants.split(",") if not a.ensemble else []:
        recipe = RECIPES[v]
        clips, styles = body_data.load_clips(a.data, a.cache, neutral_only_labels=recipe.neutral_only_labels)
        clips = [c for c in clips if c.split != "test"]  # never touch the test contents
        emotions: dict[str, set[int]] = {}
        for c in clips:
            if c.emotion >= 0:
                emotions.setdefault(c.content, set()).add(c.emotion)
        contents = sorted(k for k, e in emotions.items() if len(e) == 4)  # held-out clips of every emotion
        folds = [fold(clips, styles, k, recipe, a.seed) for k in contents]
        key = v if a.seed == 0 else f"{v}@seed{a.seed}"
        a.probs.mkdir(parents=True, exist_ok=True)
        arrays = {"contents": np.array(contents)}
        for f in folds:
            p, ey, eid = f.pop("_probs")
            arrays.update({f"p_{f['content']}": p, f"y_{f['content']}": ey, f"id_{f['content']}": eid})
        np.savez(a.probs / f"{key}.npz", **arrays)
        result[key] = {
            "command": f"python benchmarks/body_loco.py --variants {v}" + (f" --seed {a.seed}" if a.seed else ""),
            "recipe": asdict(recipe),
            "folds": folds,
            **mean_accuracies(folds),
            **{f"mirror_tta_{k}": v for k, v in mean_accuracies([f["mirror_tta"] for f in folds]).items()},
        }
        r = result[key]
        print(f"{key}: window acc {r['mean_window_acc']}, clip acc {r['mean_clip_acc']}; with mirror averaging "
              f"{r['mirror_tta_mean_window_acc']}, {r['mirror_tta_mean_clip_acc']} ({len(folds)} contents)")
    if a.out.exists():  # keep the variants not re-run
        result = {**json.loads(a.out.read_text()), **result}
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(markdown(result))


def markdown(result: dict) -> str:
    """Every stored run, its mean scores and its window accuracy per held-out content."""
    runs = {k: v for k, v in result.items() if isinstance(v, dict) and "folds" in v}
    contents = [f["content"] for f in next(iter(runs.values()))["folds"]]
    lines = [
        "# Body encoder recipes: leave-one-content-out validation (no test data)", "",
        ("Written by `python benchmarks/body_loco.py` from `body_loco.json`. Each four-emotion training content is "
         "held out in turn; 16 random-camera windows per held-out clip; a clip's answer is the mean of its windows' "
         "probabilities. `@seedN`: the same recipe from another seed (training views and initialisation). "
         "Window accuracy per held-out content in the last columns."), "",
        "| run | window acc | clip acc | " + " | ".join(contents) + " |",
        "|---|---|---|" + "---|" * len(contents),
    ]  # fmt: skip
    for k, r in runs.items():
        per = {f["content"]: f"{f['windows']['accuracy']:.3f}" for f in r["folds"]}
        lines.append(f"| {k} | {r['mean_window_acc']:.3f} | {r['mean_clip_acc']:.3f} | " + " | ".join(per.get(c, "") for c in contents) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
