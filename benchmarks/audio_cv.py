"""Actor-grouped cross-validation of the audio encoder's training recipe (no test data).

Actors 1-20 in five folds of four; for each fold the encoder is trained on the other sixteen
(clean + augmented de-identified copies from the training feature cache, as
export/build_engines.py trains it, fixed schedule, no early stopping) and scored on the held-out
actors' clean de-identified copy. The test actors 21-24 are never loaded. One variant per run,
given as overrides of the recipe; results are appended to --out as JSON lines:

    python benchmarks/audio_cv.py base '{}'
    python benchmarks/audio_cv.py crop300 '{"crop": 300}'
    python benchmarks/audio_cv.py ens3 '{"seeds": 3}'

Recipe keys (defaults = build_engines): d 96, dropout 0.3, crop 200, epochs 12, lr 2e-3,
batch 32, seeds 1 (>1: that many models, probabilities averaged).
Needs the feature cache (`python -m export.audio_data`, or one build_engines run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from edge_app.encoders.features import AUDIO_DIM, N_MELS
from export import audio_data, default_data
from export.models import EncoderConfig
from export.train import FOUR, predict, scores, spec_augment, train_encoder

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {"d": 96, "dropout": 0.3, "crop": 200, "epochs": 12, "lr": 2e-3, "batch": 32, "seeds": 1}
FOLDS = audio_data.CV_FOLDS


def load(cache: Path, data: Path) -> dict[int, dict[int, list]]:
    """features[actor][copy] = [(frames, label), ...] for actors 1-20 (test actors never read)."""
    feats: dict[int, dict[int, list]] = {}
    for u in audio_data.load_ravdess(data):
        if u.actor > 20:
            continue
        for c in range(3):
            p = audio_data.feature_path(cache, u, c)
            if p.exists():
                feats.setdefault(u.actor, {}).setdefault(c, []).append((np.load(p).astype(np.float32), u.label))
    return feats


def fold(feats: dict, held: list[int], r: dict) -> dict:
    train = [item for a, copies in feats.items() if a not in held for items in copies.values() for item in items]
    test = [item for a in held for item in feats[a][0]]
    tx, ty = [x for x, _ in train], np.array([y for _, y in train])
    ex, ey = [x for x, _ in test], np.array([y for _, y in test])
    cfg = EncoderConfig(in_dim=AUDIO_DIM, n_classes=8, d=r["d"], k_tokens=4, downsample=2, dropout=r["dropout"])
    probs = []
    for seed in range(r["seeds"]):
        model, _ = train_encoder(cfg, tx, ty, ex[:8], ey[:8], crop=r["crop"], epochs=r["epochs"], batch=r["batch"],
                                 lr=r["lr"], seed=seed, augment=lambda x, rng: spec_augment(x, rng, N_MELS),
                                 patience=10**6, keep_best=False, desc=f"actors {held[0]}-{held[-1]}")  # fmt: skip
        probs.append(predict(model, ex))
    p = np.mean(probs, axis=0)
    return {"held_out": held, "8class": scores(ey, p), "4class": scores(ey, p, FOUR)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("overrides", nargs="?", default="{}", help="JSON recipe overrides (default: {})")
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features")
    ap.add_argument("--out", type=Path, default=ROOT / ".cache/audio_cv.jsonl")
    a = ap.parse_args()
    r = {**RECIPE, **json.loads(a.overrides)}
    t0 = time.time()
    feats = load(a.cache, a.data)
    if len(feats) < 20:
        sys.exit(f"error: feature cache has {len(feats)} of actors 1-20; run `python -m export.audio_data` first")
    folds = [fold(feats, held, r) for held in FOLDS]
    res = {"name": a.name, "recipe": r, "folds": folds, "seconds": round(time.time() - t0)}
    for k in ("8class", "4class"):
        for m in ("accuracy", "macro_f1"):
            res[f"{k}_{m}"] = round(float(np.mean([f[k][m] for f in folds])), 4)
    with a.out.open("a") as f:
        f.write(json.dumps(res) + "\n")
    print(f"{a.name} {r}: 8-class acc {res['8class_accuracy']:.3f} F1 {res['8class_macro_f1']:.3f}, "
          f"4-class acc {res['4class_accuracy']:.3f} ({res['seconds']} s)")


if __name__ == "__main__":
    main()
