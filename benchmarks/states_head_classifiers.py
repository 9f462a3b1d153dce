"""Which linear classifier reads Whisper's pooled states best: the shipped logistic regression,
the same with weaker C (the grid's smallest C won on validation and in every CV fold's mean, so
the optimum may lie below the grid), and shrinkage linear discriminant analysis.

Why: the states head (export/states_head.py) is a logistic regression on 4096 standardised
numbers (mean and std over the window of the first 4 layers of Whisper base) fitted on 6480
rows that are only 1080 clips (each clip 3 copies, per clip and per session): many more
dimensions than independent examples. In `benchmarks/whisper_size.py --depth` the chosen C was
0.003, the smallest in export.train.HEAD_C_GRID, on validation and in the actor-grouped CV.
Shrinkage LDA (one shared covariance, Ledoit-Wolf or fixed shrinkage) is the classic answer to
that regime (it is how speaker-embedding back ends are built) and gives a linear model too, so
it would ship as the same ONNX graph (standardise, one linear layer, log-softmax).

Reads the cached pooled states of `benchmarks/whisper_size.py` (no encoder run); scored as
`whisper_size.py` scores: validation actors 19-20 (clips + session clips, hyperparameter chosen
there), actor-grouped 5-fold CV on actors 1-20 (clean copies of the held-out actors, per
hyperparameter), test actors 21-24 printed for the record (they choose nothing).

    python benchmarks/states_head_classifiers.py              # ~30 min on 2 cores
    python benchmarks/states_head_classifiers.py --report     # the markdown again from the JSON

Decision rule, fixed before the run: replace the shipped head (LR, C from HEAD_C_GRID) with the
candidate whose CV mean macro-F1 at its best hyperparameter is highest, if that beats the
shipped head's by more than 0.01 **and** its validation macro-F1 (hyperparameter chosen on
validation) is not below the shipped head's; otherwise keep the shipped head.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np
from whisper_size import FOUR, cv_grid, items, standardised_fit_predict

from edge_app.encoders import whisper
from export import audio_data, default_data
from export.train import HEAD_C_GRID, LDA_SHRINKAGE_GRID, scores

CANDIDATES = {
    "lr": [("lr", C) for C in HEAD_C_GRID],
    "lr_weak": [("lr", C) for C in (0.0003, 0.001)],
    "lda": [("lda", s) for s in LDA_SHRINKAGE_GRID],
}


def make(kind: str, h: float | str):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression

    if kind == "lr":
        return LogisticRegression(C=h, max_iter=3000)
    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage=h)


def fit_predict(
    kind: str, h, xt: np.ndarray, yt: np.ndarray, xs: list[np.ndarray]
) -> list[np.ndarray]:
    """Fit on standardised `xt` (the runtime head standardises the same way); probabilities for each of `xs`."""
    return standardised_fit_predict(make(kind, h), xt, yt, xs)


def validation(kind_grid: list, x: dict, parts: dict) -> dict:
    """Fit on the training actors per hyperparameter, choose on validation macro-F1 (clips +
    session clips); that model's validation and test scores."""
    best = None
    for kind, h in kind_grid:
        pv, pt = fit_predict(kind, h, x["train"], parts["train"][1], [x["val"], x["test"]])
        f1 = scores(parts["val"][1], pv)["macro_f1"]
        if best is None or f1 > best[0]:
            best = (f1, h, pv, pt)
    _, h, pv, pt = best
    n_t = parts["test"][2]
    yt = parts["test"][1]
    return {"h": h, "val_both": scores(parts["val"][1], pv), "test_both": scores(yt, pt),
            "test_clips": scores(yt[:n_t], pt[:n_t]), "test_clips_4class": scores(yt[:n_t], pt[:n_t], FOUR)}  # fmt: skip


def cv_fit(kind: str, h) -> Callable:
    """`fit_predict` of one candidate in `whisper_size.cv_grid`'s form: (xt, yt, xs) -> probabilities of xs."""
    return lambda xt, yt, xs: fit_predict(kind, h, xt, yt, [xs])[0]


def cross_validate(kind_grid: list, x: np.ndarray, y: np.ndarray, files: list[str]) -> dict:
    """whisper_size.cv_grid (the protocol whisper_size.py's CV uses) for any candidate: per
    hyperparameter, macro-F1 on each fold's held-out clean copies, and the mean over folds."""
    per_h = cv_grid({str(h): cv_fit(kind, h) for kind, h in kind_grid}, x, y, files)
    for (kind, h), row in zip(kind_grid, per_h.values()):
        print(kind, h, row, flush=True)
    best = max(per_h, key=lambda k: per_h[k]["mean"])
    return {"per_h": per_h, "best_h": best, "best_mean_macro_f1": per_h[best]["mean"]}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--report", action="store_true", help="only write the markdown from the last run's JSON"
    )
    a = ap.parse_args()
    out = ROOT / "benchmarks/results/states_head_classifiers.json"
    if a.report:
        out.with_suffix(".md").write_text(markdown(json.loads(out.read_text())))
        return
    utts = audio_data.load_ravdess(a.data)
    parts = {
        p: items(utts, a.cache, p, range(3 if p == "train" else 1), a.seed)
        for p in ("train", "val", "test")
    }
    states = a.cache / "whisper_size"
    x = {p: np.load(states / f"base-{p}.npy")[:, : whisper.POOLED_DIM] for p in parts}
    x_dev = np.concatenate([x["train"], x["val"]])
    y_dev = np.concatenate([parts["train"][1], parts["val"][1]])
    files = parts["train"][0] + parts["val"][0]
    result = {"depth": whisper.DEPTH, "dim": int(x_dev.shape[1])}
    for name, grid in CANDIDATES.items():
        t0 = time.time()
        r = validation(grid, x, parts) | {"cv": cross_validate(grid, x_dev, y_dev, files)}
        r["seconds"] = round(time.time() - t0, 1)
        result[name] = r
        print(name, json.dumps({"val": r["val_both"]["macro_f1"], "cv": r["cv"]["best_mean_macro_f1"],
                                "test": r["test_both"]["macro_f1"]}), flush=True)  # fmt: skip
    shipped = result["lr"]
    challenger = max(
        (n for n in CANDIDATES if n != "lr"), key=lambda n: result[n]["cv"]["best_mean_macro_f1"]
    )
    c = result[challenger]
    gain = c["cv"]["best_mean_macro_f1"] - shipped["cv"]["best_mean_macro_f1"]
    adopt = gain > 0.01 and c["val_both"]["macro_f1"] >= shipped["val_both"]["macro_f1"]
    result["decision"] = {"challenger": challenger, "cv_gain": round(gain, 4),
                          "val_gain": round(c["val_both"]["macro_f1"] - shipped["val_both"]["macro_f1"], 4),
                          "adopt": bool(adopt)}  # fmt: skip
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(json.dumps(result["decision"]))


def markdown(r: dict) -> str:
    """The comparison as a table: CV per hyperparameter, then validation and test at the validation choice."""
    lines = [f"# Linear classifiers on Whisper base's pooled states (first {r['depth']} layers, {r['dim']} numbers)", "",
             ("`python benchmarks/states_head_classifiers.py`. Actor-grouped 5-fold CV on actors 1-20 (macro-F1 per fold, "
             "held-out actors' clean clips and session clips), validation actors 19-20 (clips + session clips, "
             "hyperparameter chosen there), test actors 21-24 reported only."), "",
             "| classifier | hyperparameter | CV folds | CV mean |", "|---|---|---|---|"]  # fmt: skip
    for name in CANDIDATES:
        for h, row in r[name]["cv"]["per_h"].items():
            lines.append(
                f"| {name} | {h} | {' / '.join(f'{f:.3f}' for f in row['folds'])} | {row['mean']:.4f} |"
            )
    lines += ["", "| classifier | chosen on validation | validation macro-F1 | test macro-F1 (clips + sessions) | test clips 8-class acc | test clips 4-class acc |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name in CANDIDATES:
        v = r[name]
        lines.append(f"| {name} | {v['h']} | {v['val_both']['macro_f1']:.4f} | {v['test_both']['macro_f1']:.4f} | "
                     f"{v['test_clips']['accuracy']:.1%} | {v['test_clips_4class']['accuracy']:.1%} |")  # fmt: skip
    d = r["decision"]
    lines += [
        "",
        (
            f"Decision (rule in the script's docstring, fixed before the run): challenger **{d['challenger']}**, "
            f"CV {d['cv_gain']:+.4f}, validation {d['val_gain']:+.4f}: {'adopted' if d['adopt'] else 'not adopted'}."
        ),
    ]
    return "\n".join(lines).replace("%", " %") + "\n"


if __name__ == "__main__":
    main()
