"""How much of a body-encoder test figure is the seed? Recipes retrained from several seeds,
each scored on the evaluation's held-out windows.

The shipped body encoder is one training run (seed 0). Its test figure (16 clips, 256
windows) moves with the seed as the leave-one-content-out figures do, so a comparison of two
recipes on test by one seed each says little. This trains each recipe exactly as
`export/build_engines.py --only body` does (every development content, mirror images,
body_data.TRAIN_WINDOWS_PER_CLIP camera views, 20 epochs, body_data.WINDOW_S windows) from
each seed and scores it on the same test windows as `export/evaluate.py` (16 per clip, seed 2).
It measures; it chooses nothing (recipes are chosen by benchmarks/body_loco.py on the training
contents, before their test figure is seen).

    python benchmarks/body_test_seeds.py                         # both recipes, seeds 0-2 (~25 min, one core)
    python benchmarks/body_test_seeds.py --recipes dil124 --seeds 1,2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from export import body_data, default_data
from export.build_engines import seed_all, train_body_encoder
from export.train import predict, scores

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "body_test_seeds.json"
# dilations of the encoder's residual conv blocks: before and since 2026-12-01
RECIPES = {"dil124": (1, 2, 4), "dil1248": (1, 2, 4, 8)}


def run(clips: list, styles: list[str], dilations: tuple[int, ...], seed: int) -> dict:
    """Train as stage_body does with `seed`; window and clip scores on the evaluation's test windows."""
    ex, ey, _, eid = body_data.make_set(clips, "test", 16, 2, augment=False, emotion_only=True)
    seed_all(seed)
    model, *_ = train_body_encoder(clips, styles, body_data.TRAIN_SPLITS, body_data.TRAIN_WINDOWS_PER_CLIP, seed, 20,
                                   (ex[:8], ey[:8]), dilations, desc=f"dilations {dilations} seed {seed}")
    p = predict(model, ex)
    _, clip_y, clip_p = body_data.per_clip(ey, p, eid)
    return {"windows": scores(ey, p), "clips": scores(clip_y, clip_p)}


def markdown(result: dict) -> str:
    lines = ["# Body encoder recipes on held-out motion, by training seed", "",
             ("Written by `python benchmarks/body_test_seeds.py`. Each recipe trained as `build_engines --only body` "
              f"({body_data.WINDOW_S:g} s windows) from each seed; the evaluation's test windows (16 per clip, 16 clips). "
              "Seed 0 is the build's own run. Measures only: recipes are chosen on the training contents "
              "(benchmarks/body_loco.py)."), "",
             "| recipe (dilations) | seed | window acc | window macro-F1 | clip acc |", "|---|---|---|---|---|"]
    for name, runs in result.items():
        for seed, r in sorted(runs.items()):
            lines.append(f"| {name} | {seed} | {r['windows']['accuracy']:.3f} | {r['windows']['macro_f1']:.3f} | "
                         f"{r['clips']['accuracy']:.3f} |")
        w = [r["windows"]["accuracy"] for r in runs.values()]
        c = [r["clips"]["accuracy"] for r in runs.values()]
        lines.append(f"| **{name}, mean of {len(w)}** | | **{np.mean(w):.3f}** (sd {np.std(w):.3f}) | | **{np.mean(c):.3f}** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="3D joint cache (default: %(default)s)")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma list of %(default)s")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=OUT, help="results JSON, merged with the runs already there (default: %(default)s)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    clips, styles = body_data.load_clips(a.data, a.cache)
    result: dict[str, dict[str, dict]] = {}
    for name in a.recipes.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            r = result.setdefault(name, {})[str(seed)] = run(clips, styles, RECIPES[name], seed)
            print(f"{name} seed {seed}: windows {r['windows']['accuracy']:.3f}, clips {r['clips']['accuracy']:.3f}")
    if a.out.exists():  # keep the runs not redone (two processes may share one file: merge, newest wins)
        old = json.loads(a.out.read_text())
        result = {k: {**old.get(k, {}), **result.get(k, {})} for k in {**old, **result}}
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
