"""The runtime's label (SmolLM2 + adapter, llama.cpp) with the voice session head vs without.

Test actors 21-24, one de-identification session per actor (export/voice_session.py's cache);
a random subset of clips, each answered the way `Answerer` does: the window encoder's voice
tokens and the measured voice cue lines in the prompt, the label fused with a head prior
(weight from the manifest, as `LlmOptions(prior_weight="auto")`). Two priors, same items:
the window encoder's probabilities (every window on its own) and what the runtime uses in a
session (the session head once `min_windows` windows were heard, causal running average,
with the head's own fusion weight, manifest models.audio_session.prior_weight).
The cue lines are those export/llm_lora measures on a per-clip de-identification of the
same clip (a session changes the warp, not the cue phrases' relative measures much).

    python benchmarks/voice_session_llm.py            # 120 items, about 3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm import tqdm

from edge_app.records import LABELS
from export import audio_data, default_data, voice_session
from export.onnx_export import run_onnx, runtime_probs
from export.train import scores

ROOT = Path(__file__).resolve().parents[1]
FOUR = voice_session.FOUR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features")
    ap.add_argument("--items", type=int, default=120, help="test clips answered (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/voice_session_llm.md")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from edge_app.llm import LlmOptions, LlmSession
    from export.llm_lora import runtime_cue_lines, voice_cues

    manifest = json.loads((a.models / "manifest.json").read_text())
    window, head = manifest["models"]["audio"], manifest["models"][voice_session.NAME]
    utts = [u for u in audio_data.load_ravdess(a.data) if audio_data.split_of(u.actor) == "test"]
    audio_data.build_session_cache(utts, a.cache, 0, seed=a.seed)
    sessions = audio_data.load_sessions(utts, a.cache, "test", range(1), a.seed)
    feats = voice_session.window_inputs(sessions)
    y = np.concatenate([s.labels for s in sessions])
    stems = [st for s in sessions for st in s.stems]
    states = voice_session.session_states(sessions)  # both heads as the runtime fuses them with the Whisper-states head
    pw = runtime_probs(a.models, "audio", run_onnx(a.models / window["onnx"], feats), states)
    pc = runtime_probs(a.models, voice_session.NAME, run_onnx(a.models / head["onnx"], voice_session.flatten(sessions, causal=True)[0]), states)
    pos = voice_session.positions(sessions)
    pr = voice_session.runtime_answers(pw, pc, pos, head["min_windows"])
    session_weight = head.get("prior_weight", {}).get("value")  # as Answerer: only with the default adapter
    cues = voice_cues([{u.stem: u for u in utts}[s] for s in stems], a.cache, a.seed, workers=2)
    pick = np.sort(np.random.default_rng(a.seed).permutation(len(y))[: a.items])
    tokens = voice_session.run_tokens(a.models / window["onnx"], [feats[i] for i in pick])
    got: dict[str, list[np.ndarray]] = {"window_prior": [], "session_prior": []}
    t0 = time.perf_counter()
    with LlmSession(LlmOptions(n_threads=a.threads)) as llm:
        for i, tok in zip(tqdm(pick, desc="LLM answers"), tokens):
            lines = runtime_cue_lines(cues[stems[i]])
            in_session = pos[i] + 1 >= head["min_windows"] and session_weight is not None
            for key, prior, w in (("window_prior", pw[i], None), ("session_prior", pr[i], session_weight if in_session else None)):
                ans = llm.answer({"voice": tok}, lines, prior=np.log(prior + 1e-6), prior_weight=w, reason=False)
                got[key].append(np.array([ans.scores[lab] for lab in LABELS]))
        weight, lora = llm.prior_weight, llm.lora_path
    rows = {
        "window encoder head alone": pw[pick], "runtime voice head (session head from window "
        f"{head['min_windows']})": pr[pick], "LLM + window-encoder prior (every window on its own)":
        np.stack(got["window_prior"]), "**LLM + runtime voice prior (session head's prior, weight "
        f"{session_weight} once it answers: the runtime)**": np.stack(got["session_prior"]),
    }  # fmt: skip
    res = {k: {"8class": scores(y[pick], p), "4class": scores(y[pick], p, FOUR)} for k, p in rows.items()}
    lines = [
        "# The runtime's label with and without the voice session head", "",
        (f"Command: `python benchmarks/voice_session_llm.py --items {a.items}`. RAVDESS test actors 21-24, one "
         f"de-identification session per actor; {len(pick)} random clips; SmolLM2 Q4_1 via llama.cpp, adapter "
         f"`{Path(str(lora)).name if lora else 'none'}`, prior weight {weight}; {time.perf_counter() - t0:.0f} s."), "",
        "| answer | 8-class acc | 8-class macro-F1 | 4-class acc | 4-class macro-F1 |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for k, v in res.items():
        lines.append(f"| {k} | {v['8class']['accuracy']:.3f} | {v['8class']['macro_f1']:.3f} | "
                     f"{v['4class']['accuracy']:.3f} | {v['4class']['macro_f1']:.3f} |")
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps({"items": len(pick), "prior_weight": weight, "results": res}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
