"""Actor-grouped cross-validation of the voice session head's training references (no test data).

Actors 1-20 in five folds of four, each actor one de-identification session (the session
cache of export/voice_session.py); for each fold the head is trained on the other sixteen
actors' sessions (fixed schedule, no early stopping) and scored on the held-out actors' clean
session, on the windows it answers at run time (from `min_windows` on, the runtime's causal
running average with its horizon). Variants, by the reference the training windows are
normalised with:

- full: each training window relative to its whole session's average (the committed head)
- causal: the runtime's running average at that window, windows from `min_windows` on only

    python benchmarks/voice_session_cv.py          # both variants, about 15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from edge_app.encoders.features import N_MELS, PROSODY_DIM
from edge_app.records import LABELS
from export import audio_data, default_data, voice_session
from export.models import EncoderConfig
from export.train import predict, scores, spec_augment, train_encoder

ROOT = Path(__file__).resolve().parents[1]
FOLDS = audio_data.CV_FOLDS


def training_set(sessions: list, variant: str, start: int) -> tuple[list[np.ndarray], np.ndarray]:
    xs, y = voice_session.flatten(sessions, causal=variant == "causal")
    if variant == "causal":
        keep = voice_session.positions(sessions) >= start
        xs, y = [x for x, k in zip(xs, keep) if k], y[keep]
    return xs, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features")
    ap.add_argument("--models", type=Path, default=ROOT / "models", help="for min_windows (default: %(default)s)")
    ap.add_argument("--variants", default="full,causal")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/voice_session_cv.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    start = json.loads((a.models / "manifest.json").read_text())["models"][voice_session.NAME]["min_windows"] - 1
    utts = [u for u in audio_data.load_ravdess(a.data) if u.actor <= 20]  # test actors never read
    sessions = audio_data.load_sessions(utts, a.cache, "train", range(3)) + audio_data.load_sessions(utts, a.cache, "val", range(1))
    if len({s.actor for s in sessions}) < 20:
        sys.exit("error: session cache incomplete; run `python -m export.voice_session` first")
    res: dict[str, dict] = {}
    for variant in a.variants.split(","):
        t0, folds = time.time(), []
        for held in FOLDS:
            tx, ty = training_set([s for s in sessions if s.actor not in held], variant, start)
            ev = [s for s in sessions if s.actor in held and s.copy == 0]
            ex, ey = voice_session.flatten(ev, causal=True)
            keep = voice_session.positions(ev) >= start
            cfg = EncoderConfig(in_dim=PROSODY_DIM, n_classes=len(LABELS), d=96, k_tokens=4, downsample=2, dropout=0.3)
            model, _ = train_encoder(cfg, tx, ty, ex[:8], ey[:8], crop=200, epochs=a.epochs, batch=32, lr=2e-3, seed=0,
                                     augment=lambda x, rng: spec_augment(x, rng, N_MELS), patience=10**6,
                                     keep_best=False, desc=f"{variant} {held[0]}-{held[-1]}")  # fmt: skip
            p = predict(model, [x for x, k in zip(ex, keep) if k])
            folds.append({"held_out": held, "8class": scores(ey[keep], p), "4class": scores(ey[keep], p, voice_session.FOUR)})
        res[variant] = {"folds": folds, "seconds": round(time.time() - t0),
                        **{f"{k}_{m}": round(float(np.mean([f[k][m] for f in folds])), 4)
                           for k in ("8class", "4class") for m in ("accuracy", "macro_f1")}}  # fmt: skip
        r = res[variant]
        print(f"{variant}: 8-class acc {r['8class_accuracy']:.3f} F1 {r['8class_macro_f1']:.3f}, "
              f"4-class acc {r['4class_accuracy']:.3f} ({r['seconds']} s)")
    a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
