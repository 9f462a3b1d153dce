"""Evaluate the exported encoders (ONNX, the runtime path) on the held-out data.

    python -m export.evaluate                    # head-only metrics, models/ -> benchmarks/results/
    python -m export.evaluate --llm 96           # + LLM answers (SmolLM2 via llama.cpp) on 96 test items

RAVDESS: test actors 21-24, de-identified (one random voice per utterance), 8-class
and 4-class (neutral/happy/sad/angry, predicted among those 4). Motion: held-out
contents/take windows (export/body_data.py), window- and clip-level.
Writes encoders.json, encoders.md and confusion-matrix PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from edge_app.records import LABELS
from export import audio_data, body_data
from export.onnx_export import run_onnx
from export.train import scores

ROOT = Path(__file__).resolve().parents[1]
FOUR = [LABELS.index(x) for x in ("neutral", "happy", "sad", "angry")]


def plot_confusion(y: np.ndarray, pred: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(y, pred, labels=range(len(labels)))
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(labels), 0.8 + 0.6 * len(labels)))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color="black" if cm[i, j] < cm.max() / 2 else "white")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def eval_audio(a: argparse.Namespace, entry: dict) -> tuple[dict, np.ndarray, np.ndarray, list[np.ndarray]]:
    utts = [u for u in audio_data.load_ravdess(a.data) if audio_data.split_of(u.actor) == "test"]
    audio_data.build_cache(utts, a.cache, 0, workers=a.workers)
    xs, y, _ = audio_data.load_split(utts, a.cache, "test", range(1))
    out = {}
    for kind in ("onnx", "onnx_int8"):
        p = run_onnx(a.models / entry[kind], xs)
        out[kind] = {"8class": scores(y, p), "4class": scores(y, p, FOUR)}
        if kind == "onnx":
            probs = p
    return out, y, probs, xs


def eval_body(a: argparse.Namespace, entry: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    clips, _ = body_data.load_clips(a.data, a.cache)
    xs, y, _, ids = body_data.make_set(clips, "test", 16, a.seed + 2, augment=False, emotion_only=True)
    out = {}
    for kind in ("onnx", "onnx_int8"):
        p = run_onnx(a.models / entry[kind], xs)
        u = np.unique(ids)
        cp = np.stack([p[ids == i].mean(0) for i in u])
        cy = np.array([y[ids == i][0] for i in u])
        out[kind] = {"windows": scores(y, p), "clips": scores(cy, cp)}
        if kind == "onnx":
            probs = p
    return out, y, probs


def eval_llm(a: argparse.Namespace, entry: dict, xs: list[np.ndarray], y: np.ndarray, head: np.ndarray) -> dict:
    """SmolLM2 answers with the audio tokens injected: vectors only, and vectors + head prior."""
    import onnxruntime as ort

    from edge_app.llm import LlmOptions, LlmSession

    sess = ort.InferenceSession(str(a.models / entry["onnx"]), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(a.seed)
    pick = np.sort(rng.permutation(len(xs))[: a.llm])
    opts = LlmOptions(n_threads=a.workers, max_reasoning_tokens=1, lora_path=a.lora)
    res: dict[str, list[np.ndarray]] = {"llm_vectors": [], "llm_vectors+prior": []}
    with LlmSession(opts) as llm:
        for i in pick:
            tokens, _ = sess.run(["tokens", "probs"], {"frames": xs[i][None]})
            ans = llm.answer({"voice": tokens}, [], prior=None, prior_weight=0.0)
            res["llm_vectors"].append(np.array([ans.scores[lab] for lab in LABELS]))
            ans = llm.answer({"voice": tokens}, [], prior=np.log(head[i] + 1e-6), prior_weight=1.0)
            res["llm_vectors+prior"].append(np.array([ans.scores[lab] for lab in LABELS]))
    out = {"n": int(len(pick)), "head_on_same_items": {"8class": scores(y[pick], head[pick]), "4class": scores(y[pick], head[pick], FOUR)}}
    for k, v in res.items():
        p = np.stack(v)
        out[k] = {"8class": scores(y[pick], p), "4class": scores(y[pick], p, FOUR)}
    return out


def markdown(r: dict) -> str:
    lines = ["# Encoder evaluation (held-out data, ONNX runtime path)", ""]
    if "audio" in r:
        lines += ["## Audio: RAVDESS test actors 21-24, de-identified speech", "",
                  "| model | 8-class acc | 8-class macro-F1 | 4-class acc | 4-class macro-F1 | n |", "|---|---|---|---|---|---|"]
        for k, v in r["audio"].items():
            if k == "llm":
                continue
            lines.append(f"| {k} | {v['8class']['accuracy']:.3f} | {v['8class']['macro_f1']:.3f} | {v['4class']['accuracy']:.3f} | {v['4class']['macro_f1']:.3f} | {v['8class']['n']} |")
        if "llm" in r["audio"]:
            lines += ["", f"LLM answers on a random subset of {r['audio']['llm']['n']} test items:", "",
                      "| answer | 8-class acc | 8-class macro-F1 | 4-class acc | 4-class macro-F1 |", "|---|---|---|---|---|"]
            for k, v in r["audio"]["llm"].items():
                if k == "n":
                    continue
                lines.append(f"| {k} | {v['8class']['accuracy']:.3f} | {v['8class']['macro_f1']:.3f} | {v['4class']['accuracy']:.3f} | {v['4class']['macro_f1']:.3f} |")
        lines.append("")
    if "body" in r:
        lines += ["## Body: Bandai motion, held-out contents (bye, run, walk-left) + walk take 002", "",
                  "| model | window acc | window macro-F1 | clip acc | clip macro-F1 | windows | clips |", "|---|---|---|---|---|---|---|"]
        for k, v in r["body"].items():
            lines.append(f"| {k} | {v['windows']['accuracy']:.3f} | {v['windows']['macro_f1']:.3f} | {v['clips']['accuracy']:.3f} | {v['clips']['macro_f1']:.3f} | {v['windows']['n']} | {v['clips']['n']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("DEEMO_DATA", ROOT / "../shared/data")))
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features")
    ap.add_argument("--llm", type=int, default=0, help="also score LLM answers on this many audio test items")
    ap.add_argument("--lora", type=str, default=None, help="LoRA adapter GGUF for the LLM")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((a.models / "manifest.json").read_text())
    r: dict = {"models": str(a.models), "created_from_manifest": manifest.get("created")}
    if "audio" in manifest["models"]:
        res, y, p, xs = eval_audio(a, manifest["models"]["audio"])
        r["audio"] = res
        plot_confusion(y, p.argmax(1), list(LABELS), "audio, RAVDESS test actors 21-24 (8-class)", a.out / "confusion_audio_8class.png")
        keep = np.isin(y, FOUR)
        pred4 = np.asarray(FOUR)[p[keep][:, FOUR].argmax(1)]
        remap = {c: i for i, c in enumerate(FOUR)}
        plot_confusion(np.array([remap[v] for v in y[keep]]), np.array([remap[v] for v in pred4]),
                       [LABELS[c] for c in FOUR], "audio, test actors (4-class)", a.out / "confusion_audio_4class.png")
        if a.llm:
            r["audio"]["llm"] = eval_llm(a, manifest["models"]["audio"], xs, y, p)
    if "body" in manifest["models"]:
        res, y, p = eval_body(a, manifest["models"]["body"])
        r["body"] = res
        plot_confusion(y, p.argmax(1), list(body_data.EMOTIONS4), "body, held-out motion windows", a.out / "confusion_body_4class.png")
    (a.out / "encoders.json").write_text(json.dumps(r, indent=2) + "\n")
    (a.out / "encoders.md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
