"""How trustworthy are the `scores` the runtime shows? Calibration on validation speech.

The runtime's label scores used to be softmax(LLM label log-probs + w * head log-probs),
with the encoder prior's weight w from the manifest (6 for the committed adapter): about
the head's probabilities to the w-th power, so over-confident. Log-linear pooling (the
runtime since 2026-11-30) divides the sum by 1 + w (a weighted geometric mean of the two
distributions, weights summing to 1): the same argmax, so the same labels, with
probabilities of the head's sharpness. Measured here on
the items the prior weight is chosen on (export/prior_weight.validation_answers: actors
19-20, 120 clips de-identified one by one + 120 as sessions; never the test actors):
negative log-likelihood of the true label, expected calibration error (10 bins of the top
probability) and the mean top probability, beside the accuracy they share.

    python benchmarks/score_calibration.py            # about 1 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy.special import softmax

from export import default_data, prior_weight

ROOT = Path(__file__).resolve().parents[1]


def calibration(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, float]:
    top, pred = p.max(axis=1), p.argmax(axis=1)
    right = (pred == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1]), 0, bins - 1)
    ece = sum(abs(right[which == b].mean() - top[which == b].mean()) * np.mean(which == b)
              for b in range(bins) if np.any(which == b))
    return {"accuracy": float(right.mean()), "nll": float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))),
            "ece": float(ece), "mean_top_probability": float(top.mean()), "n": len(y)}


def main() -> None:
    from edge_app.llm.model import default_lora_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--models", type=Path, default=ROOT / "models", help="default: %(default)s")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="default: %(default)s")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/score_calibration.md")
    a = ap.parse_args()
    lora = default_lora_path(a.models)
    manifest = json.loads((a.models / "manifest.json").read_text())
    w = float(manifest["llm"]["lora"]["prior_weight"]["value"]) if lora else 1.0
    llm, head, y, n = prior_weight.validation_answers(a.models, a.cache, a.data, lora, threads=a.threads)
    summed = llm + w * np.log(head + 1e-6)
    rows = {"encoder head alone": calibration(head, y),
            f"plain sum (before 2026-11-30): softmax(LLM + {w:g} x head)": calibration(softmax(summed, axis=1), y),
            f"**log-linear pooling (runtime)**: softmax((LLM + {w:g} x head) / {1 + w:g})":
                calibration(prior_weight.fused(llm, head, w), y)}
    lines = ["# Calibration of the runtime's label scores (validation)", "",
             (f"Command: `python benchmarks/score_calibration.py`. Actors 19-20: {n} clips de-identified one by one + "
              f"{len(y) - n} as sessions; SmolLM2 via llama.cpp, adapter: {Path(lora).name if lora else 'none'}, "
              f"prior weight {w:g}. NLL = mean negative log-likelihood of the true label; ECE = expected "
              "calibration error over 10 bins of the top probability."), "",
             "| scores | accuracy | NLL | ECE | mean top probability |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['accuracy']:.3f} | {r['nll']:.3f} | {r['ece']:.3f} | {r['mean_top_probability']:.3f} |"
              for name, r in rows.items()]
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps({"prior_weight": w, "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
