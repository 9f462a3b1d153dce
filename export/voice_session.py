"""Voice session head: emotion from de-identified speech relative to the speaker's own average.

Why: the audio encoder normalises every window by itself (mean band energies, loudness and
pitch level removed), so it cannot tell a loud, bright, high window from a quiet, dull, low
one: exactly the arousal cues. Within ONE de-identification session (one speaker, one
microphone, one voice warp) those levels are comparable again; relative to the session's
running average they carry emotion and not identity (the average is the speaker's, the
offset is the moment's). This head is the audio encoder's architecture trained on windows
re-normalised that way (`edge_app.encoders.features.relative_to_session`), on training
speakers each de-identified as one session (export/audio_data.build_session_cache).

At run time (edge_app.encoders.runtime.AudioEncoder) its probabilities replace the window
encoder's in the label fusion once the session has heard `min_windows` speech windows;
the LLM's injected tokens stay the window encoder's (the LLM stages are not retrained).
`min_windows` is chosen on validation actors 19-20, replaying each session in order with
the running (causal) average, exactly as a device would; test actors 21-24 are scored the
same way once.

    python -m export.voice_session             # train, export, choose min_windows, register
    python -m export.voice_session --quick     # small subset, into .cache/quick/models
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/voice_session.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from edge_app.encoders.features import AUDIO_DIM, SessionLevels, relative_to_session
from edge_app.encoders.runtime import EncoderOptions
from edge_app.encoders.whisper import POOLED_DIM
from edge_app.records import LABELS
from export import audio_data, default_data, onnx_export
from export.audio_data import Session
from export.models import CueEncoder, FusedEncoder, checkpoint
from export.train import FOUR, fuse_embedding_head, scores, train_audio_encoder

ROOT = Path(__file__).resolve().parents[1]
NAME = "audio_session"
MIN_WINDOWS_GRID = (1, 2, 3, 5, 8, 12, 20)
REPORT = ROOT / "benchmarks" / "results" / "voice_session.md"


class HeadWrapper(nn.Module):
    """frames (1, T, F) -> tokens (K, d) (not projected: the runtime does not inject
    them), probs. Same output names as the window encoder, so the same runners load it."""

    def __init__(self, enc: CueEncoder | FusedEncoder) -> None:
        super().__init__()
        self.enc = enc

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tok, logits, _ = self.enc(frames)
        return tok[0], torch.softmax(logits, dim=-1)[0]


def relative(session: Session, causal: bool) -> list[np.ndarray]:
    """Each clip relative to the session's levels: the mean of all its clips, or (causal)
    the runtime's running average of the clips heard so far, itself included (SessionLevels
    with the runtime's default horizon): what the device has at that moment."""
    if not causal:
        full = mean_levels(session.levels)
        return [relative_to_session(f, lv, full) for f, lv in zip(session.feats, session.levels)]
    return relative_running(session.feats, session.levels, EncoderOptions.voice_session_horizon)


def relative_running(feats: Sequence[np.ndarray], levels: Sequence[np.ndarray], horizon: int) -> list[np.ndarray]:
    """Clips in the order heard, each relative to the running `SessionLevels` at that clip
    (itself included), as `AudioEncoder.encode` does."""
    running, out = SessionLevels(horizon), []
    for f, lv in zip(feats, levels):
        running.add(lv)
        out.append(relative_to_session(f, lv, running.mean()))
    return out


def mean_levels(levels: np.ndarray) -> np.ndarray:
    """Column means over the finite entries (F0 is NaN for unvoiced clips); NaN if none."""
    ok = np.isfinite(levels)
    n = ok.sum(axis=0)
    return np.where(n > 0, np.where(ok, levels, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan).astype(np.float32)


def flatten(sessions: Sequence[Session], causal: bool) -> tuple[list[np.ndarray], np.ndarray]:
    xs = [x for s in sessions for x in relative(s, causal)]
    return xs, session_labels(sessions)


def runtime_answers(window_p: np.ndarray, head_p: np.ndarray, position: np.ndarray, min_windows: int) -> np.ndarray:
    """What the runtime answers: the window encoder until the session has heard
    `min_windows` windows (this one included), then the session head."""
    return np.where((position + 1 >= min_windows)[:, None], head_p, window_p)


def choose_min_windows(y: np.ndarray, window_p: np.ndarray, head_p: np.ndarray, position: np.ndarray) -> tuple[int, dict]:
    """Best macro-F1 over MIN_WINDOWS_GRID; ties within 0.01 go to the larger value (a
    steadier average before the head takes over)."""
    f1 = {k: scores(y, runtime_answers(window_p, head_p, position, k))["macro_f1"] for k in MIN_WINDOWS_GRID}
    best = max(f1.values())
    return max(k for k, v in f1.items() if v >= best - 0.01), {str(k): round(v, 4) for k, v in f1.items()}


def positions(sessions: Sequence[Session]) -> np.ndarray:
    return np.concatenate([np.arange(len(s.labels)) for s in sessions]) if sessions else np.zeros(0, int)


def session_states(sessions: Sequence[Session]) -> np.ndarray:
    """The clips' pooled Whisper states, row for row with `window_inputs`."""
    return np.concatenate([s.states for s in sessions]) if sessions else np.zeros((0, POOLED_DIM), np.float32)


def session_labels(sessions: Sequence[Session]) -> np.ndarray:
    """The clips' labels, row for row with `window_inputs`."""
    return np.concatenate([s.labels for s in sessions]) if sessions else np.zeros(0, int)


def window_inputs(sessions: Sequence[Session]) -> list[np.ndarray]:
    return [f for s in sessions for f in s.feats]


def session_utterances(data: Path, quick: bool) -> list[audio_data.Utterance]:
    """The clips the sessions are made of (a session's order depends on its clip list);
    quick: 2 train actors, 1 val, 1 test, 4 emotions (the actors of build_engines --quick)."""
    utts = audio_data.load_ravdess(data)
    return [u for u in utts if u.actor in (1, 2, 19, 21) and u.label in (0, 2, 3, 4)] if quick else utts


def build(a: argparse.Namespace, manifest: dict, epochs: int) -> dict:
    """Train, export, choose min_windows on validation, score test; returns the manifest entry."""
    utts = session_utterances(a.data, a.quick)
    copies = 0 if a.quick else 2
    audio_data.build_session_cache(utts, a.cache, copies, workers=a.workers, seed=a.seed)
    train = audio_data.load_sessions(utts, a.cache, "train", range(copies + 1), a.seed)
    val = audio_data.load_sessions(utts, a.cache, "val", range(1), a.seed)
    test = audio_data.load_sessions(utts, a.cache, "test", range(1), a.seed)
    tx, ty = flatten(train, causal=False)
    vx, vy = flatten(val, causal=False)
    conv, hist = train_audio_encoder(tx, ty, vx, vy, epochs=2 if a.quick else epochs, seed=a.seed,
                                     desc="voice session head")
    model, fusion = fuse_embedding_head(conv, tx, ty, vx, vy)  # as the window encoder
    wrapper = HeadWrapper(model).eval()
    path = a.out / f"{NAME}_encoder.onnx"
    meta = {"labels": ",".join(LABELS), "feature_dim": str(AUDIO_DIM), "normalisation": "relative_to_session"}
    onnx_export.export_onnx(wrapper, AUDIO_DIM, path, 200, meta)
    par = onnx_export.parity(wrapper, path, vx[:4])
    window_onnx = a.out / manifest["models"]["audio"]["onnx"]
    split_scores = {}
    for split, sessions in (("val", val), ("test", test)):
        y, pos, states = np.concatenate([s.labels for s in sessions]), positions(sessions), session_states(sessions)
        pw = onnx_export.runtime_probs(a.out, "audio", onnx_export.run_onnx(window_onnx, window_inputs(sessions)), states)
        # this head is new: no Whisper-states weight of its own yet (export/states_head.py chooses it next)
        pc = onnx_export.run_onnx(path, flatten(sessions, causal=True)[0])
        pf = onnx_export.run_onnx(path, flatten(sessions, causal=False)[0])
        split_scores[split] = (y, pos, pw, pc, pf)
    y, pos, pw, pc, _ = split_scores["val"]
    k, grid = choose_min_windows(y, pw, pc, pos)
    metrics = {"min_windows_grid_val_macro_f1": grid, "speech_embedding_head": fusion}
    for split, (y, pos, pw, pc, pf) in split_scores.items():
        rt = runtime_answers(pw, pc, pos, k)
        for tag, p in (("window_encoder", pw), ("runtime", rt), ("head_causal", pc), ("head_full_session", pf)):
            metrics[f"{split}_{tag}_8class"] = scores(y, p)
            metrics[f"{split}_{tag}_4class"] = scores(y, p, FOUR)
    entry = {
        "onnx": path.name, "engine": None, "labels": list(LABELS), "min_windows": k,
        "input": {"name": "frames", "shape": ["1", "time", AUDIO_DIM], "fps": 100, "normalisation": "relative_to_session"},
        "config": model.cfg.to_dict(), "opset": onnx_export.OPSET, "parity": par, "epochs_run": len(hist),
        "split": {
            "sessions": "one VoiceDeidentifier session per actor and copy, clips in a random order; "
                        f"{copies} augmented train copies, one random room/microphone/noise condition per session",
            "deid_fingerprint": audio_data.deid_fingerprint(),
            "train_actors": sorted({s.actor for s in train}), "val_actors": sorted({s.actor for s in val}),
            "augmented_sessions": copies, "test_actors": sorted({s.actor for s in test}), "n_train": len(tx), "n_val": len(vx),
            "n_test": int(sum(len(s.labels) for s in test)),
        },
        "metrics": metrics,
    }  # fmt: skip
    torch.save(checkpoint(model), a.cache / f"{NAME}_encoder.pt")
    return entry


def validation_session_windows(models: Path, cache: Path, data: Path, seed: int = 0, quick: bool = False) -> dict:
    """The validation sessions' windows as the runtime meets them (actors 19-20, each
    de-identified as one session, in the session's order): the LLM's inputs (the window
    encoder's tokens and the cue lines measured on the clip), labels, each window's position
    in its session, and the probabilities of the window encoder and of the session head
    (causal running average; None before the head is registered)."""
    from export.llm_lora import voice_cues

    manifest = json.loads((models / "manifest.json").read_text())
    utts = [u for u in session_utterances(data, quick) if audio_data.split_of(u.actor) == "val"]
    sessions = audio_data.load_sessions(utts, cache, "val", range(1), seed)
    if not sessions:  # the prior weight would be chosen on single clips alone, silently
        raise SystemExit(f"no validation session features in {cache}: build them first "
                         "(export/audio_data.build_session_cache, as build_engines and export.voice_session do)")
    stems = [st for s in sessions for st in s.stems]
    cues = voice_cues([{u.stem: u for u in utts}[st] for st in stems], cache, seed)
    window_p, head_p = session_runtime_probs(models, sessions)
    window_onnx = models / manifest["models"]["audio"]["onnx"]
    return {
        "items": [{"tokens": t, "cues": cues[st]} for t, st in zip(run_tokens(window_onnx, window_inputs(sessions)), stems)],
        "y": session_labels(sessions),
        "position": positions(sessions),
        "window_p": window_p,
        "head_p": head_p,
    }


def session_runtime_probs(models: Path, sessions: Sequence[Session]) -> tuple[np.ndarray, np.ndarray | None]:
    """Per window of `sessions`, the probabilities of the window encoder and of the session
    head (causal running average), each fused with the Whisper-states head as the runtime
    fuses them; the head's are None when `models` has no session head (or no window)."""
    manifest = json.loads((models / "manifest.json").read_text())
    feats, states = window_inputs(sessions), session_states(sessions)
    if not feats:
        return np.zeros((0, len(LABELS))), None
    window_p = onnx_export.runtime_probs(models, "audio", onnx_export.run_onnx(models / manifest["models"]["audio"]["onnx"], feats), states)
    head = manifest["models"].get(NAME)
    if head is None:
        return window_p, None
    head_p = onnx_export.run_onnx(models / head["onnx"], flatten(sessions, causal=True)[0])
    return window_p, onnx_export.runtime_probs(models, NAME, head_p, states)


def choose_prior_weight(models: Path, cache: Path, data: Path, lora: str | None, seed: int = 0, threads: int = 1,
                        quick: bool = False) -> dict | None:
    """The encoder prior's weight in the label fusion while the session head answers,
    chosen like export/prior_weight.py (same grid and tie rule, llama.cpp runtime path) on
    the validation sessions' windows from `min_windows` on, with that head's probabilities
    as the prior. Why a weight of its own: the LLM reads the window encoder's tokens, which
    know nothing of the session, and with the window weight its log-probs outvote a head
    that is better than it (benchmarks/results/voice_session_llm.md). None when the
    validation sessions are shorter than `min_windows` (the runtime then keeps the LLM's weight)."""
    from export import prior_weight

    min_windows = json.loads((models / "manifest.json").read_text())["models"][NAME]["min_windows"]
    val = validation_session_windows(models, cache, data, seed, quick)
    keep = val["position"] + 1 >= min_windows
    if not keep.any():
        return None
    items = [it for it, k in zip(val["items"], keep) if k]
    res = prior_weight.choose(prior_weight.llm_label_logprobs(items, lora, threads), val["head_p"][keep], val["y"][keep])
    res.update({"val": f"actors 19-20 as sessions, windows {min_windows}+ ({int(keep.sum())} clips)",
                "chosen_by": "validation macro-F1 (8-class)"})
    return res


def run_tokens(path: Path, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [sess.run(["tokens"], {"frames": x[None].astype(np.float32)})[0] for x in xs]


def write_report(entry: dict, path: Path) -> Path:
    """Markdown table of the head's validation / test figures (what the manifest records)."""
    m = entry["metrics"]
    rows = [("window encoder alone (every window on its own)", "window_encoder"),
            (f"**runtime: window encoder, then the session head from window {entry['min_windows']}**", "runtime"),
            ("session head from the first window (running average)", "head_causal"),
            ("session head, average over the whole session (all its clips heard)", "head_full_session")]  # fmt: skip
    lines = [
        "# Voice session head (export/voice_session.py)", "",
        ("Command: `python -m export.voice_session`. RAVDESS speech, one de-identification session per actor "
         "(all of the actor's clips in a random order through one `VoiceDeidentifier`, as a device hears one "
         "speaker); each clip is one window. Train actors 1-18 (clean + "
         f"{entry['split']['augmented_sessions']} augmented sessions per actor), validation "
         "19-20 (early stopping, `min_windows`), test 21-24 (scored once). Runtime answers replay each session "
         "in order with the running average of the levels heard so far."), "",
        "| answer | split | 8-class acc | 8-class macro-F1 | 4-class acc | 4-class macro-F1 | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("val", "test"):
        for title, tag in rows:
            a8, a4 = m[f"{split}_{tag}_8class"], m[f"{split}_{tag}_4class"]
            lines.append(f"| {title} | {split} | {a8['accuracy']:.3f} | {a8['macro_f1']:.3f} | {a4['accuracy']:.3f} "
                         f"| {a4['macro_f1']:.3f} | {a8['n']} |")
    grid = ", ".join(f"{k}: {v}" for k, v in m["min_windows_grid_val_macro_f1"].items())
    lines += ["", (f"`min_windows` = {entry['min_windows']}, chosen on validation by runtime macro-F1 (ties "
                   f"within 0.01 to the larger value): {grid}."), ""]
    if "prior_weight" in entry:
        pw = entry["prior_weight"]
        lines += [f"Label-fusion weight of this head's prior while it answers: **{pw['value']:g}**, chosen on "
                  f"{pw['val']} through llama.cpp with the default adapter (export/prior_weight.py's grid and tie "
                  "rule; macro-F1 by weight: " + ", ".join(f"{r['w']:g}: {r['macro_f1']:.3f}" for r in pw["grid"])
                  + f"; the head alone: {pw['head_alone']['macro_f1']:.3f}).", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(entry, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    from export.build_engines import write_manifest

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--out", type=Path, default=None, help="models folder with manifest.json (default models/, --quick: .cache/quick/models)")
    ap.add_argument("--cache", type=Path, default=None, help="feature cache (default .cache/features, --quick: .cache/quick/features)")
    ap.add_argument("--epochs", type=int, default=12, help="training epochs (default: %(default)s, as the window encoder)")
    ap.add_argument("--quick", action="store_true", help="small subset, 2 epochs (needs a --quick build_engines run first)")
    ap.add_argument("--workers", type=int, default=2, help="feature-cache worker processes (default: %(default)s)")
    ap.add_argument("--report", type=Path, default=REPORT,
                    help="markdown report (default: %(default)s; --quick: not written)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    a.out = a.out or ROOT / (".cache/quick/models" if a.quick else "models")
    a.cache = a.cache or ROOT / (".cache/quick/features" if a.quick else ".cache/features")
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    mpath = a.out / "manifest.json"
    manifest = json.loads(mpath.read_text())
    entry = build(a, manifest, a.epochs)
    manifest["models"][NAME] = entry
    write_manifest(a.out, manifest)
    from edge_app.llm.model import default_lora_path

    lora = default_lora_path(a.out)
    weight = choose_prior_weight(a.out, a.cache, a.data, lora, a.seed, 2, a.quick) if lora else None
    if weight is not None:  # the label fusion's weight while this head answers (needs the stage-3 adapter)
        entry["prior_weight"] = weight
        write_manifest(a.out, manifest)
    if not a.quick:
        write_report(entry, a.report)
    m = entry["metrics"]
    print(f"min_windows {entry['min_windows']} (val macro-F1 by value: {m['min_windows_grid_val_macro_f1']})")
    for tag in ("window_encoder", "runtime", "head_causal", "head_full_session"):
        t8, t4 = m[f"test_{tag}_8class"], m[f"test_{tag}_4class"]
        print(f"test {tag:18s} 8-class acc {t8['accuracy']:.3f} F1 {t8['macro_f1']:.3f}  4-class acc {t4['accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
