"""A new speaker in the middle of a voice session: what it costs the session head, by horizon.

A live run is one de-identification session however many people talk. Here speaker B talks
after speaker A in ONE `VoiceDeidentifier` session (same warp, the running F0 estimate
carries over), each clip one window, and B's clips are answered as the runtime does
(window encoder, then the session head from `min_windows`) with the session levels'
running average at several horizons (`SessionLevels`, answer.encoders.voice_session_horizon).
Reference: B alone in a fresh session. Pairs: validation actors 19 -> 20 and 20 -> 19
(where a horizon may be chosen), test actors 21 -> 22, 22 -> 21, 23 -> 24, 24 -> 23 (reported).

    python benchmarks/voice_session_switch.py        # about 3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from edge_app.encoders.features import SR, audio_features_and_levels
from export import audio_data, default_data, voice_session
from export.onnx_export import run_onnx, runtime_probs
from export.train import scores

ROOT = Path(__file__).resolve().parents[1]
PAIRS = {"val": ((19, 20), (20, 19)), "test": ((21, 22), (22, 21), (23, 24), (24, 23))}
HORIZONS = (10, 30, 60, 200)


def _session(args: tuple[list[str], int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Clips in order through one de-identifier session -> (features, levels, pooled
    Whisper states) per clip."""
    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
    from edge_app.encoders.whisper import pooled_states
    from edge_app.records import AudioChunk

    paths, seed = args
    deid = VoiceDeidentifier(VoiceDeidOptions(seed=seed))
    out = []
    for p in paths:
        y = deid.process(AudioChunk(0.0, audio_data.read_clip(p), SR)).samples
        out.append((*audio_features_and_levels(y), pooled_states(y)))
    return out


def answers(items: list[tuple[np.ndarray, np.ndarray, np.ndarray]], horizon: int, models: Path, head: dict,
            window: dict) -> np.ndarray:
    """Runtime voice probabilities per clip, causal, one running average at `horizon`
    (both heads pooled with the Whisper-states head when one is registered, as at run time)."""
    feats, levels, states = [i[0] for i in items], [i[1] for i in items], np.stack([i[2] for i in items])
    rel = voice_session.relative_running(feats, levels, horizon)
    pw = runtime_probs(models, "audio", run_onnx(models / window["onnx"], feats), states)
    pc = runtime_probs(models, voice_session.NAME, run_onnx(models / head["onnx"], rel), states)
    return voice_session.runtime_answers(pw, pc, np.arange(len(items)), head["min_windows"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/voice_session_switch.md")
    a = ap.parse_args()
    manifest = json.loads((a.models / "manifest.json").read_text())
    head, window = manifest["models"][voice_session.NAME], manifest["models"]["audio"]
    by_actor: dict[int, list] = {}
    for u in audio_data.load_ravdess(a.data):
        if u.actor >= 19:
            by_actor.setdefault(u.actor, []).append(u)
    order = {k: [v[i] for i in np.random.default_rng(k).permutation(len(v))] for k, v in by_actor.items()}
    jobs = {(pa, pb): ([str(u.path) for u in order[pa] + order[pb]], zlib.crc32(f"switch:{pa}:{pb}".encode()))
            for pairs in PAIRS.values() for pa, pb in pairs}  # fmt: skip
    jobs.update({(b, None): ([str(u.path) for u in order[b]], zlib.crc32(f"alone:{b}".encode())) for b in by_actor})
    with ProcessPoolExecutor(2) as ex:
        done = dict(zip(jobs, ex.map(_session, jobs.values())))
    res: dict[str, dict] = {}
    for split, pairs in PAIRS.items():
        y = np.concatenate([[u.label for u in order[b]] for _, b in pairs])
        res[split] = {}
        for h in HORIZONS:
            p = np.concatenate([answers(done[(b, None)], h, a.models, head, window) for _, b in pairs])
            res[split][f"B alone (fresh session), horizon {h}"] = scores(y, p)
        for h in HORIZONS:
            p = np.concatenate([answers(done[(pa, pb)], h, a.models, head, window)[len(order[pa]):] for pa, pb in pairs])
            res[split][f"B after A, horizon {h}"] = scores(y, p)
    lines = ["# A new speaker mid-session: speaker B's clips after speaker A's, one de-identification session", "",
             "Command: `python benchmarks/voice_session_switch.py`. Each clip one window, the runtime's voice head "
             f"(window encoder, session head from window {head['min_windows']}), 8-class. Pairs: "
             + "; ".join(f"{s} {', '.join(f'{x}->{z}' for x, z in p)}" for s, p in PAIRS.items()) + ".", "",
             "| B's clips answered | val acc | val macro-F1 | test acc | test macro-F1 |", "|---|---|---|---|---|"]  # fmt: skip
    for row in res["val"]:
        v, t = res["val"][row], res["test"][row]
        lines.append(f"| {row} | {v['accuracy']:.3f} | {v['macro_f1']:.3f} | {t['accuracy']:.3f} | {t['macro_f1']:.3f} |")
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
