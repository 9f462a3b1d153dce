"""Evaluate the exported encoders (ONNX, the runtime path) on the held-out data.

    python -m export.evaluate                    # head-only metrics, models/ -> benchmarks/results/
    python -m export.evaluate --llm 96           # + LLM answers (SmolLM2 via llama.cpp) on 96 test items
    python -m export.evaluate --llm 40 --lora models/smollm2_lora.gguf   # base vs + LoRA adapter
                                                 # (--llm alone: base vs the manifest's default adapter)

RAVDESS: test actors 21-24, de-identified (one random voice per utterance), 8-class
and 4-class (neutral/happy/sad/angry, predicted among those 4). Motion: held-out
contents/take windows (export/body_data.py), window- and clip-level.
Writes encoders.json, encoders.md and confusion-matrix PNGs.

LLM answers (--llm N): the runtime prompt (injected voice tokens + the voice cue lines
measured on the same de-identified clip, export/llm_lora.voice_cues), scored choice
over the labels; for the "vectors+prior" answer (what the runtime does) the reasoning
is generated too and scored by the local judge (export/judge.py: clue overlap, label
overlap 0-10, hallucinated cues) next to the template sentence and a shuffled-cue
baseline, with DEEMO's GPT-judged 6.20 / 7.66 printed as a reference only.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/<name>.py`: the repo root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import time

import numpy as np
from sklearn.metrics import confusion_matrix
from tqdm import tqdm

from edge_app.records import LABELS
from export import audio_data, body_data, default_data, judge
from export.onnx_export import run_onnx, runtime_probs
from export.train import FOUR, scores

ROOT = Path(__file__).resolve().parents[1]


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


def eval_audio(a: argparse.Namespace, entry: dict) -> tuple[dict, np.ndarray, np.ndarray, list[np.ndarray], list[str]]:
    utts = [u for u in audio_data.load_ravdess(a.data) if audio_data.split_of(u.actor) == "test"]
    audio_data.build_cache(utts, a.cache, 0, workers=a.workers)
    xs, y, _ = audio_data.load_split(utts, a.cache, "test", range(1))
    states = audio_data.load_states(utts, a.cache, "test", range(1))
    stems = [u.stem for u in utts if audio_data.feature_path(a.cache, u, 0).exists()]  # load_split's order
    out = {}
    for kind in ("onnx", "onnx_int8"):  # as the runtime answers: fused with the Whisper-states head if registered
        p = runtime_probs(a.models, "audio", run_onnx(a.models / entry[kind], xs), states)
        out[kind] = {"8class": scores(y, p), "4class": scores(y, p, FOUR)}
        if kind == "onnx":
            probs = p
    return out, y, probs, xs, stems


def eval_body(a: argparse.Namespace, entry: dict) -> tuple[dict, list[dict], np.ndarray, np.ndarray]:
    """(scores per model kind, per-clip answers of the fp32 model, labels, fp32 window probabilities)."""
    clips, _ = body_data.load_clips(a.data, a.cache)
    xs, y, _, ids = body_data.make_set(clips, "test", 16, a.seed + 2, augment=False, emotion_only=True)
    out, answers = {}, []
    for kind in ("onnx", "onnx_int8"):
        p = run_onnx(a.models / entry[kind], xs)
        u, cy, cp = body_data.per_clip(y, p, ids)
        out[kind] = {"windows": scores(y, p), "clips": scores(cy, cp)}
        if kind == "onnx":
            probs = p
            for i, q in zip(u, cp):
                answers.append({"content": clips[i].content, "take": clips[i].take, "truth": body_data.EMOTIONS4[clips[i].emotion],
                                 "answer": body_data.EMOTIONS4[int(q.argmax())], "p_answer": round(float(q.max()), 2),
                                 "window_acc": round(float((p[ids == i].argmax(1) == clips[i].emotion).mean()), 2)})  # fmt: skip
    return out, answers, y, probs


def _recording_session():
    """LlmSession that keeps the raw generated reasoning (before the runtime's cue filter)."""
    from edge_app.llm import LlmSession

    class RecordingSession(LlmSession):
        raw = ""

        def _generate_reasoning(self, label_index: int, pos: int,
                                deadline: float | None = None) -> tuple[str, int, bool]:
            text, n, late = super()._generate_reasoning(label_index, pos, deadline)
            self.raw = text
            return text, n, late

    return RecordingSession


def eval_llm(a: argparse.Namespace, entry: dict, xs: list[np.ndarray], y: np.ndarray, head: np.ndarray,
             cues: list[list[str]], lora: str | None) -> dict:
    """SmolLM2 answers with the audio tokens and the measured voice cue lines (the runtime
    prompt): vectors only (label only), and vectors + head prior (the runtime answer, with
    generated reasoning scored by the local judge)."""
    import onnxruntime as ort

    from edge_app.llm import LlmOptions
    from edge_app.llm.reasoning import template_reasoning
    from export.llm_lora import runtime_cue_lines

    sess = ort.InferenceSession(str(a.models / entry["onnx"]), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(a.seed)
    pick = np.sort(rng.permutation(len(xs))[: a.llm])
    opts = LlmOptions(n_threads=a.workers, lora_path=lora)
    res: dict[str, list[np.ndarray]] = {"llm_vectors": [], "llm_vectors+prior": []}
    answers = []
    t0 = time.perf_counter()
    with _recording_session()(opts) as llm:
        for i in tqdm(pick, desc="LLM answers" + (" (+LoRA)" if lora else "")):
            lines = runtime_cue_lines(cues[i])
            tokens, _ = sess.run(["tokens", "probs"], {"frames": xs[i][None]})
            ans = llm.answer({"voice": tokens}, lines, prior=None, prior_weight=0.0, reason=False)
            res["llm_vectors"].append(np.array([ans.scores[lab] for lab in LABELS]))
            llm.raw = ""
            # the runtime's weight: chosen on validation for the default adapter, else 1.0
            ans = llm.answer({"voice": tokens}, lines, prior=np.log(head[i] + 1e-6))
            res["llm_vectors+prior"].append(np.array([ans.scores[lab] for lab in LABELS]))
            answers.append({"truth": LABELS[y[i]], "label": ans.label, "cues": lines, "raw": llm.raw,
                            "runtime": ans.reasoning, "source": ans.reasoning_source})
        prior_weight = llm.prior_weight
    seconds = time.perf_counter() - t0
    out = {"n": len(pick), "n_test": len(xs), "lora": lora, "seconds": round(seconds, 1), "prior_weight": prior_weight,
           "head_on_same_items": {"8class": scores(y[pick], head[pick]), "4class": scores(y[pick], head[pick], FOUR)}}
    for k, v in res.items():
        p = np.stack(v)
        out[k] = {"8class": scores(y[pick], p), "4class": scores(y[pick], p, FOUR)}
    out["runtime_vs_head"] = paired_comparison(y[pick], head[pick], np.stack(res["llm_vectors+prior"]))
    # judge: generated reasoning (raw and as the runtime keeps it), template, shuffled cues
    shift = np.roll(np.arange(len(answers)), 1)  # item i gets item i-1's cues and label
    sets = {
        "llm_raw": [(x["raw"], x["cues"], x["truth"], x["label"]) for x in answers],
        "llm_runtime": [(x["runtime"], x["cues"], x["truth"], x["label"]) for x in answers],
        "template": [(template_reasoning(x["label"], x["cues"]), x["cues"], x["truth"], x["label"]) for x in answers],
        "shuffled_cues": [(template_reasoning(answers[j]["label"], answers[j]["cues"]), x["cues"], x["truth"], answers[j]["label"])
                          for x, j in zip(answers, shift)],
    }  # fmt: skip
    out["judge"] = {k: judge.judge_items(v) for k, v in sets.items()}
    out["judge"]["llm_runtime"]["share_llm_text"] = round(float(np.mean([x["source"] == "llm" for x in answers])), 3)
    out["judge"]["reference_deemo"] = judge.DEEMO_REFERENCE
    out["examples"] = answers[:6]
    return out


def paired_comparison(y: np.ndarray, head: np.ndarray, answer: np.ndarray) -> dict:
    """Items only the head gets right vs items only the runtime answer gets right (8-class
    argmax), with the exact McNemar test's two-sided p-value: whether "the LLM answer is no
    worse than the head" is a difference at all or the noise of a few items."""
    from scipy.stats import binomtest

    h, r = head.argmax(1) == y, answer.argmax(1) == y
    only_head, only_answer = int((h & ~r).sum()), int((r & ~h).sum())
    n = only_head + only_answer
    p = binomtest(min(only_head, only_answer), n, 0.5).pvalue if n else 1.0
    return {"only_head_right": only_head, "only_answer_right": only_answer, "both_right": int((h & r).sum()),
            "mcnemar_p": round(float(p), 3)}


JUDGE_ROWS = {
    "llm_raw": "LLM reasoning as generated (before the runtime's cue filter)",
    "llm_runtime": "runtime reasoning (filtered LLM text, else template)",
    "template": "template sentence (measured cues + chosen label)",
    "shuffled_cues": "baseline: another item's template (shuffled cues and label)",
}


def llm_markdown(v: dict) -> list[str]:
    what = f"with LoRA adapter `{Path(v['lora']).name}`" if v.get("lora") else "base model (no adapter)"
    weight = f"; the runtime answer `llm_vectors+prior` uses prior weight {v['prior_weight']:g}" if "prior_weight" in v else ""
    items = f"all {v['n']}" if v.get("n") == v.get("n_test") else f"a random subset of {v['n']}"
    lines = ["", f"LLM answers ({what}) on {items} test items ({v.get('seconds', '?')} s{weight}):", "",
             "| answer | 8-class acc | 8-class macro-F1 | 4-class acc | 4-class macro-F1 |", "|---|---|---|---|---|"]
    for k in ("head_on_same_items", "llm_vectors", "llm_vectors+prior"):
        if k in v:
            m = v[k]
            lines.append(f"| {k} | {m['8class']['accuracy']:.3f} | {m['8class']['macro_f1']:.3f} | {m['4class']['accuracy']:.3f} | {m['4class']['macro_f1']:.3f} |")
    if "runtime_vs_head" in v:
        c = v["runtime_vs_head"]
        lines += ["", (f"Paired, 8-class, head vs the runtime answer (`llm_vectors+prior`): right only by the head "
                       f"{c['only_head_right']}, only by the runtime answer {c['only_answer_right']}, by both {c['both_right']}; "
                       f"exact McNemar p = {c['mcnemar_p']} (a small p would mean the two really differ).")]
    if "judge" in v:
        ref = v["judge"]["reference_deemo"]
        lines += ["", ("Reasoning, local judge (export/judge.py; 0-10; clue overlap = 10 x F1 of cited vs measured cue kinds, "
                  "label overlap = emotion words vs truth, 0.5 credit within a valence/arousal group):"), "",
                  "| reasoning | clue overlap | label overlap | hallucinated cues / item | items with a hallucinated cue | n (no cues) |",
                  "|---|---|---|---|---|---|"]
        for k, name in JUDGE_ROWS.items():
            j = v["judge"][k]
            extra = f" ({j['share_llm_text']:.0%} LLM text)" if "share_llm_text" in j else ""
            lines.append(f"| {name}{extra} | {j['clue_overlap']} | {j['label_overlap']} | {j['hallucinated_cues_per_item']} | "
                         f"{j['items_with_hallucinated_cue']:.0%} | {j['n']} ({j['n_no_cues']}) |")
        lines.append(f"| DEEMO (reported, GPT judge on EMER; reference only, not comparable) | {ref['clue_overlap']} | {ref['label_overlap']} | | | |")
    return lines


JUDGE_DEFINITION = """### The reasoning judge (export/judge.py)

Local and deterministic, no hosted model. The reasoning text (parenthesised numbers removed) is cut
into clauses (at `.!?;,:` and at and/but/while/with/whereas/or); a **cue kind** from a fixed catalogue
(every phrase edge_app.cues can produce: pitch variability, flat/rising/falling pitch, loudness
variation, fast/slow rate, long pauses, irregular voice quality, little speech, the body phrases; plus
kinds this device can never measure: loud/quiet voice level, high/low pitch level, anything about the
face, the words) is *cited* when every one of its word groups has a word in one clause.
**Clue overlap** = 10 x F1 between the kinds cited and the kinds of the cue phrases measured on that clip
(items with nothing measured are left out, `n (no cues)`). **Hallucinated cues** = kinds cited but not
measured. **Label overlap** = 10 x mean credit of the emotions named in the answer's label and reasoning:
1 for the true label, 0.5 for the same valence/arousal group ({happy, surprised}, {neutral, calm},
{angry, fearful, disgust}, {sad}), 0 otherwise. Baselines: the template sentence restates the measured
cues (clue ceiling 10), the shuffled-cue row is another item's template (chance level: RAVDESS clips share
many cues, e.g. long pauses). Text-only check on EMER's own 100 rationales vs their labels: label overlap
8.34 (tests/test_judge.py). DEEMO's 6.20 / 7.66 come from a GPT judge on EMER: a reference, not comparable.
"""


def lora_markdown(e: dict) -> list[str]:
    p = e.get("parity") or {}
    return ["", f"Stage-3 adapter `{e['file']}` (models/manifest.json llm.lora; runtime default: {e.get('default', False)}): "
            f"rank {e['rank']}, alpha {e['alpha']}, {'/'.join(e['targets'])}, {e['steps']} steps x {e['batch']}; "
            f"validation (actors 19-20, n={e['val_after']['n']}) first-token label accuracy "
            f"{e['val_before']['label_acc_first_token']:.3f} -> {e['val_after']['label_acc_first_token']:.3f}, "
            f"reasoning CE {e['val_before']['reasoning_ce']:.3f} -> {e['val_after']['reasoning_ce']:.3f}. "
            f"Parity on {p.get('items')} items (label log-probs over the 8 labels): PyTorch vs llama.cpp max |diff| "
            f"{p.get('max_abs_diff_base')} base / {p.get('max_abs_diff_lora')} with the adapter; mean change from the "
            f"adapter {p.get('lora_change_torch')} (PyTorch) vs {p.get('lora_change_llama_cpp')} (llama.cpp)."
            + _prior_weight_text(e.get("prior_weight"))]


def _prior_weight_text(pw: dict | None) -> str:
    if not pw:
        return ""
    row = next(r for r in pw["grid"] if r["w"] == pw["value"])
    return (f" Encoder-prior weight in the label fusion: {pw['value']:g}, chosen on validation ({pw['val']}) by "
            f"macro-F1 {row['macro_f1']:.3f} (head alone {pw['head_alone']['macro_f1']:.3f}; grid "
            + ", ".join(f"{r['w']:g}: {r['macro_f1']:.3f}" for r in pw["grid"]) + ").")


def markdown(r: dict) -> str:
    lines = ["# Encoder evaluation (held-out data, ONNX runtime path)", ""]
    if "audio" in r:
        lines += ["## Audio: RAVDESS test actors 21-24, de-identified speech", "",
                  "| model | 8-class acc | 8-class macro-F1 | 4-class acc | 4-class macro-F1 | n |", "|---|---|---|---|---|---|"]
        for k, v in r["audio"].items():
            if k.startswith("llm"):
                continue
            lines.append(f"| {k} | {v['8class']['accuracy']:.3f} | {v['8class']['macro_f1']:.3f} | {v['4class']['accuracy']:.3f} | {v['4class']['macro_f1']:.3f} | {v['8class']['n']} |")
        for key in ("llm", "llm_lora"):
            if key in r["audio"]:
                lines += llm_markdown(r["audio"][key])
        if r.get("lora"):
            lines += lora_markdown(r["lora"])
        if "llm" in r["audio"]:
            lines += ["", JUDGE_DEFINITION]
        lines.append("")
    if "body" in r:
        lines += ["## Body: Bandai motion, held-out contents (bye, run, walk-left) + walk take 002", "",
                  "| model | window acc | window macro-F1 | clip acc | clip macro-F1 | windows | clips |", "|---|---|---|---|---|---|---|"]
        for k, v in r["body"].items():
            lines.append(f"| {k} | {v['windows']['accuracy']:.3f} | {v['windows']['macro_f1']:.3f} | {v['clips']['accuracy']:.3f} | {v['clips']['macro_f1']:.3f} | {v['windows']['n']} | {v['clips']['n']} |")
    if r.get("body_clips"):
        lines += ["", "Per clip (onnx; the clip's answer = mean of its 16 window probabilities):", "",
                  "| content | take | truth | answer | p(answer) | window acc |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['content']} | {c['take']} | {c['truth']} | {c['answer']} | {c['p_answer']:.2f} | {c['window_acc']:.2f} |"
                  for c in r["body_clips"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="shared data (default: $DEEMO_DATA, else ../shared/data)")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features")
    ap.add_argument("--llm", type=int, default=0, help="also score LLM answers on this many audio test items")
    ap.add_argument("--lora", type=str, default="auto",
                    help="also score the LLM with this LoRA adapter GGUF, next to the base model "
                    "(default auto: the adapter models/manifest.json marks as the runtime default; none: base only)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.lora == "auto":
        from edge_app.llm.model import default_lora_path

        a.lora = default_lora_path(a.models)
    elif a.lora in ("", "none"):
        a.lora = None
    a.out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((a.models / "manifest.json").read_text())
    r: dict = {"models": str(a.models), "created_from_manifest": manifest.get("created")}
    if a.lora and (manifest.get("llm", {}).get("lora") or {}).get("file") == Path(a.lora).name:
        r["lora"] = {k: v for k, v in manifest["llm"]["lora"].items() if k != "history"}
    if "audio" in manifest["models"]:
        res, y, p, xs, stems = eval_audio(a, manifest["models"]["audio"])
        r["audio"] = res
        plot_confusion(y, p.argmax(1), list(LABELS), "audio, RAVDESS test actors 21-24 (8-class)", a.out / "confusion_audio_8class.png")
        keep = np.isin(y, FOUR)
        pred4 = np.asarray(FOUR)[p[keep][:, FOUR].argmax(1)]
        remap = {c: i for i, c in enumerate(FOUR)}
        plot_confusion(np.array([remap[v] for v in y[keep]]), np.array([remap[v] for v in pred4]),
                       [LABELS[c] for c in FOUR], "audio, test actors (4-class)", a.out / "confusion_audio_4class.png")
        if a.llm:
            from export.llm_lora import voice_cues

            utts = {u.stem: u for u in audio_data.load_ravdess(a.data)}
            measured = voice_cues([utts[s] for s in stems], a.cache, workers=a.workers)
            cues = [measured[s] for s in stems]
            r["audio"]["llm"] = eval_llm(a, manifest["models"]["audio"], xs, y, p, cues, None)
            if a.lora:
                r["audio"]["llm_lora"] = eval_llm(a, manifest["models"]["audio"], xs, y, p, cues, a.lora)
    if "body" in manifest["models"]:
        res, r["body_clips"], y, p = eval_body(a, manifest["models"]["body"])
        r["body"] = res
        plot_confusion(y, p.argmax(1), list(body_data.EMOTIONS4), "body, held-out motion windows", a.out / "confusion_body_4class.png")
    (a.out / "encoders.json").write_text(json.dumps(r, indent=2) + "\n")
    (a.out / "encoders.md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
