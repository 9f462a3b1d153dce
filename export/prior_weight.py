"""The encoder prior's weight in the runtime's label fusion, chosen on validation actors.

The runtime's label scores are softmax(LLM label log-probs + w * encoder log-probs). With a
fixed w = 1 the answer's accuracy depended on how well stage 2 / stage 3 of that build came
out: one rebuild's LLM answers fell below the encoder head alone. Here w is chosen on the
validation actors 19-20 (never the test actors) from a small grid by macro-F1, through the
runtime path itself (llama.cpp, the ONNX encoder, the measured voice cue lines), on the
clips de-identified one by one and again as one session per speaker (both kinds of speech
the window encoder answers at run time), and recorded as
manifest["llm"]["lora"]["prior_weight"]; LlmOptions(prior_weight="auto") reads it when the
default adapter is loaded. A large w reproduces the head, so the chosen fusion is about as good
as the head on validation or better: a w that lets the LLM move labels is taken only when it
beats the head alone by more than the tie tolerance TIE (`choose`). The base model (no adapter)
keeps w = 1.

    python -m export.prior_weight --register     # the committed models/: the window and session
                                                 # heads' weights and the adapter decision (~10 min)

build_engines runs it after stage 3, then `decide_adapter` (is the adapter the default?).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/prior_weight.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import time

import numpy as np
from scipy.special import softmax

from edge_app.records import LABELS
from export import audio_data, default_data
from export.train import scores

ROOT = Path(__file__).resolve().parents[1]
# 32 and 64 added 2026-12-01: on the build shipped then, both weights' validation optimum sat at
# the grid's edge (window head: 16 best, 8 chosen as a tie; session head: 16 chosen, head alone
# still higher), so the grid did not contain the maximum it was meant to find
GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0)


TIE = 0.01  # macro-F1 differences below this (about a fifth of a standard error on 120 clips) are ties


def fused(llm_logp: np.ndarray, head: np.ndarray, w: float) -> np.ndarray:
    """The runtime's label scores: softmax((LLM label log-probs + w * log head probabilities)
    / (1 + w)) (log-linear pooling; the argmax, and so every label, is the plain sum's)."""
    return softmax((llm_logp + w * np.log(head + 1e-6)) / (1.0 + w), axis=1)


def choose(llm_logp: np.ndarray, head: np.ndarray, y: np.ndarray) -> dict:
    """Pick w from GRID by validation macro-F1 of `fused`.

    The LLM's label evidence is trusted only where it earns it: unless some w beats the head
    alone by more than TIE, the largest w is taken (the head decides, the LLM only breaks the
    head's near-ties). Until 2026-12-06 ties went to the w nearest 1 instead; on the committed
    build that chose 6 where 6, 32, 64 and the head alone all scored 0.686 on validation, and
    on all 240 test clips that answer was right on 1 clip the head missed and wrong on 7 the
    head got (exact McNemar p = 0.07; benchmarks/results/encoders.md): a tie on validation is
    no reason to let the LLM move labels. Among weights that do beat the head by more than
    TIE, ties (within TIE of the best) still go to the w nearest 1."""
    rows = [{"w": w, **scores(y, fused(llm_logp, head, w))} for w in GRID]
    alone = scores(y, head)
    better = [r for r in rows if r["macro_f1"] > alone["macro_f1"] + TIE]
    if better:
        top = max(r["macro_f1"] for r in better)
        tied = [r for r in better if r["macro_f1"] >= top - TIE]
        value = min(tied, key=lambda r: abs(np.log1p(r["w"]) - np.log(2)))["w"]
    else:
        value = max(GRID)
    return {"value": value, "grid": rows, "head_alone": alone, "tie": TIE,
            "rule": "best w if it beats the head alone by more than tie (ties to the w nearest 1), else the largest w"}


def llm_label_logprobs(items: list[dict], lora: str | None, threads: int) -> np.ndarray:
    """(N, 8) LLM label log-probs without any prior: the runtime prompt (voice tokens + cue lines)."""
    from tqdm import tqdm

    from edge_app.llm import LlmOptions, LlmSession
    from export.llm_lora import runtime_cue_lines

    out = []
    with LlmSession(LlmOptions(n_threads=threads, lora_path=lora, prior_weight=0.0)) as llm:
        for it in tqdm(items, desc="prior weight (validation answers)"):
            ans = llm.answer({"voice": it["tokens"]}, runtime_cue_lines(it["cues"]), prior=None, reason=False)
            out.append(np.log(np.array([ans.scores[lab] for lab in LABELS]) + 1e-12))
    return np.stack(out)


def validation_answers(models: Path, cache: Path, data: Path, lora: str | None, n_val: int = 120, seed: int = 0,
                       threads: int = 1, workers: int = 1, quick: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(LLM label log-probs, head probabilities, labels, number of single clips) for n_val
    validation clips de-identified one by one followed by n_val as sessions (actors 19-20)."""
    from export.llm_lora import load_items
    from export.voice_session import validation_session_windows

    manifest = json.loads((models / "manifest.json").read_text())
    onnx_path = models / manifest["models"]["audio"]["onnx"]
    items = load_items(audio_data.load_ravdess(data), cache, onnx_path, "val", seed, workers)
    items = [items[i] for i in np.random.default_rng(seed).permutation(len(items))[:n_val]]
    if not items:
        raise SystemExit(f"prior weight: no cached validation features under {cache} (run build_engines first)")
    sessions = validation_session_windows(models, cache, data, seed, quick)
    pick = np.random.default_rng(seed).permutation(len(sessions["y"]))[:n_val]
    y = np.concatenate([[it["y"] for it in items], sessions["y"][pick]]).astype(int)
    head = np.concatenate([np.stack([it["probs"] for it in items]), sessions["window_p"][pick]])
    llm = llm_label_logprobs(items + [sessions["items"][i] for i in pick], lora, threads)
    return llm, head, y, len(items)


def describe_items(n_clips: int, n_items: int) -> str:
    """What `validation_answers` returned, for the manifest."""
    return f"actors 19-20, {n_clips} clips de-identified one by one + {n_items - n_clips} as sessions"


def choose_for_build(models: Path, cache: Path, data: Path, lora: str | None, n_val: int = 120,
                     seed: int = 0, threads: int = 1, workers: int = 1, quick: bool = False) -> dict:
    """The `prior_weight` entry for manifest["llm"]["lora"], from the audio ONNX in `models`.

    Chosen on both kinds of validation speech the window encoder answers at run time: each
    clip de-identified on its own (a single clip) and the same clips de-identified as one
    session per speaker (a file or a live run, until the session head takes over), n_val
    of each. On the session windows alone w = 1 fell below the head (macro-F1 0.516 vs
    0.567 for the 2026-11-30 build), on single clips it did not (0.608 vs 0.589)."""
    t0 = time.time()
    llm, head, y, n = validation_answers(models, cache, data, lora, n_val, seed, threads, workers, quick)
    res = choose(llm, head, y)
    res["parts"] = {part: {"n": len(sel), "head_alone": scores(y[sel], head[sel]),
                           "chosen": scores(y[sel], fused(llm[sel], head[sel], res["value"]))}
                    for part, sel in (("clips", np.arange(n)), ("sessions", np.arange(n, len(y))))}
    res.update({"val": describe_items(n, len(y)),
                "chosen_by": "validation macro-F1 (8-class)", "seconds": round(time.time() - t0, 1)})
    return res


def decide_adapter(entry: dict, models: Path, cache: Path, data: Path, n_val: int = 120, seed: int = 0,
                   threads: int = 1, workers: int = 1, quick: bool = False) -> dict:
    """Is the stage-3 adapter the runtime's default? On validation (actors 19-20, the items
    of `choose_for_build`): its reasoning loss is lower than the base model's, and the label
    the runtime shows with it (fused at its chosen weight, entry["prior_weight"]) is not
    below the base model's runtime label (fused at w = 1, what LlmOptions uses without the
    adapter) by more than TIE in macro-F1. Why not stage 3's own first-token label accuracy:
    the runtime never shows the LLM's label alone, and on 120 items that figure moves by an
    item between builds (2026-11-30: 0.525 -> 0.517 would have turned off an adapter whose
    fused label beat the base model's, 0.594 vs 0.578; README "Training and export")."""
    llm, head, y, n = validation_answers(models, cache, data, None, n_val, seed, threads, workers, quick)
    base_f1 = scores(y, fused(llm, head, 1.0))["macro_f1"]
    chosen = entry["prior_weight"]["value"]
    with_f1 = next(r["macro_f1"] for r in entry["prior_weight"]["grid"] if r["w"] == chosen)
    reasoning = entry["val_after"]["reasoning_ce"] < entry["val_before"]["reasoning_ce"]
    label = with_f1 >= base_f1 - TIE
    return {"default": bool(reasoning and label), "reasoning_ce_lower": bool(reasoning),
            "fused_macro_f1_with_adapter": round(with_f1, 4), "adapter_weight": chosen,
            "fused_macro_f1_base_w1": round(base_f1, 4), "tie": TIE,
            "val": describe_items(n, len(y)),
            "rule": "reasoning CE lower and fused validation macro-F1 not below the base model's (w = 1) by more than tie"}


def choose_all(manifest: dict, models: Path, cache: Path, data: Path, seed: int = 0, threads: int = 1,
               workers: int = 1, quick: bool = False) -> None:
    """Into `manifest`: the stage-3 adapter's prior weight, the adapter decision, and the
    voice session head's own weight (export/voice_session.choose_prior_weight), all on
    validation through the runtime path (build_engines after stage 3; export/states_head.py
    after it changed the heads' scores)."""
    from export import voice_session

    entry = manifest["llm"]["lora"]
    lora, n_val = str(models / entry["file"]), 4 if quick else 120
    entry["prior_weight"] = choose_for_build(models, cache, data, lora, n_val, seed, threads, workers, quick)
    print(f"[lora] prior weight {entry['prior_weight']['value']:g} (validation macro-F1)")
    entry["default_rule"] = decide_adapter(entry, models, cache, data, n_val, seed, threads, workers, quick)
    entry["default"] = entry["default_rule"]["default"]
    print(f"[lora] default adapter: {entry['default']} ({json.dumps(entry['default_rule'])})")
    if voice_session.NAME in manifest["models"]:  # and its own weight while the session head answers
        weight = voice_session.choose_prior_weight(models, cache, data, lora, seed, threads, quick)
        if weight is not None:
            manifest["models"][voice_session.NAME]["prior_weight"] = weight
            print(f"[lora] session prior weight {weight['value']:g} (validation macro-F1)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(),
                    help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="feature cache (default: %(default)s)")
    ap.add_argument("--models", type=Path, default=ROOT / "models", help="manifest, audio ONNX, adapter (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default: %(default)s)")
    ap.add_argument("--register", action="store_true",
                    help="record both weights and the adapter decision (choose_all) in MODELS/manifest.json")
    a = ap.parse_args(argv)
    manifest = json.loads((a.models / "manifest.json").read_text())
    entry = manifest.get("llm", {}).get("lora")
    if not entry or not (a.models / entry["file"]).is_file():
        raise SystemExit(f"no stage-3 adapter in {a.models}/manifest.json: the weight is for the adapter's answers")
    choose_all(manifest, a.models, a.cache, a.data, threads=a.threads)
    pw = entry["prior_weight"]
    for r in pw["grid"]:
        print(f"w={r['w']:<5g} val 8-class acc {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}")
    print(f"head alone: acc {pw['head_alone']['accuracy']:.3f}  macro-F1 {pw['head_alone']['macro_f1']:.3f}; "
          f"chosen w = {pw['value']:g}")
    if a.register:
        from export.build_engines import write_manifest

        write_manifest(a.models, manifest)
        print("recorded in", a.models / "manifest.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
