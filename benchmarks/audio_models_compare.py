"""Score audio model folders on the same de-identified RAVDESS audio: the runtime's audio
answer without the LLM, 8-class and 4-class, validation actors 19-20 and test actors 21-24.

    python benchmarks/audio_models_compare.py models /tmp/rebuild/models

Clips: each clip de-identified on its own, the window encoder fused with the Whisper-states
head. Sessions: each speaker's clips de-identified as one session, the window encoder until
`min_windows`, then the voice session head (causal running average), each fused with the
states head at its own weight: what `deemo-edge file` / `live` answer (with the shipped prior
weight of 64 the LLM only breaks the head's near-ties). Every folder is scored on the feature
cache of the de-identifier as it is now (export/audio_data.cache_key), which must be built
(`python -m export.build_engines --only audio` builds it). Why: a change to the de-identifier
leaves the committed models trained on its old output; this says what that costs, on the same
clips, before and after a rebuild. Writes benchmarks/results/audio_models_compare.md / .json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export import audio_data, default_data, onnx_export, voice_session
from export.train import FOUR, scores

RESULTS = ROOT / "benchmarks" / "results"


def clip_probs(models: Path, cache: Path, utts: list, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and runtime probabilities of the split's clips, each de-identified on its own."""
    manifest = json.loads((models / "manifest.json").read_text())
    xs, y, _ = audio_data.load_split(utts, cache, split, range(1))
    states = audio_data.load_states(utts, cache, split, range(1))
    p = onnx_export.run_onnx(models / manifest["models"]["audio"]["onnx"], xs)
    return y, onnx_export.runtime_probs(models, "audio", p, states)


def session_probs(models: Path, cache: Path, utts: list, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and runtime probabilities of the split's clips, one session per speaker."""
    sessions = audio_data.load_sessions(utts, cache, split, range(1), seed)
    y, (window_p, head_p) = voice_session.session_labels(sessions), voice_session.session_runtime_probs(models, sessions)
    if head_p is None:  # nothing cached (score_folder says so), or no session head: the window encoder answers
        return y, window_p
    min_windows = json.loads((models / "manifest.json").read_text())["models"][voice_session.NAME]["min_windows"]
    return y, voice_session.runtime_answers(window_p, head_p, voice_session.positions(sessions), min_windows)


def score_folder(models: Path, cache: Path, data: Path, seed: int) -> dict:
    utts = audio_data.load_ravdess(data)
    s_utts = voice_session.session_utterances(data, quick=False)
    out = {}
    for split in ("val", "test"):
        for kind, (y, p) in (("clips", clip_probs(models, cache, utts, split)),
                             ("sessions", session_probs(models, cache, s_utts, split, seed))):
            if len(y) == 0:
                raise SystemExit(f"no cached {kind} for {split} under {cache}: build the cache first "
                                 f"(python -m export.build_engines --only audio)")
            out[f"{split}_{kind}_8class"] = scores(y, p)
            out[f"{split}_{kind}_4class"] = scores(y, p, FOUR)
    out["val_mean_macro_f1"] = round((out["val_clips_8class"]["macro_f1"] + out["val_sessions_8class"]["macro_f1"]) / 2, 4)
    return out


def markdown(rows: dict[str, dict], key: str) -> str:
    lines = [
        "# Audio model folders on the same de-identified audio",
        "",
        (f"Command: `python benchmarks/audio_models_compare.py {' '.join(rows)}`; feature cache `{key}` "
        "(the de-identifier and feature code as they are now). Runtime audio answer without the LLM; "
        "8-class accuracy / macro-F1 (4-class accuracy). Validation actors 19-20 (120 clips), test 21-24 (240 clips)."),
        "",
        "| models | val clips | val sessions | val mean macro-F1 | test clips | test sessions |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        cell = [f"{r[f'{k}_8class']['accuracy']:.1%} / {r[f'{k}_8class']['macro_f1']:.3f} ({r[f'{k}_4class']['accuracy']:.1%})"
                for k in ("val_clips", "val_sessions", "test_clips", "test_sessions")]
        lines.append(f"| `{name}` | {cell[0]} | {cell[1]} | {r['val_mean_macro_f1']:.4f} | {cell[2]} | {cell[3]} |")
    return "\n".join(lines).replace("%", " %") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+", help="model folders (each with manifest.json)")
    ap.add_argument("--data", type=Path, default=default_data(), help="shared data (default: $DEEMO_DATA, else ../shared/data)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="feature cache (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="session order seed, as the build's (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=RESULTS / "audio_models_compare", help="results stem (default: %(default)s)")
    a = ap.parse_args(argv)
    rows = {str(m): score_folder(m, a.cache, a.data, a.seed) for m in a.models}
    a.out.with_suffix(".json").write_text(json.dumps({"cache_key": audio_data.cache_key(), "rows": rows}, indent=2) + "\n")
    text = markdown(rows, audio_data.cache_key())
    a.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
