"""Which de-identified RAVDESS clips does `silence_peak_hold_s` change at all?

Every clip is de-identified twice with the same seed, with the silence reference held for
good (None, the behaviour until 2026-12-06) and held `--hold` seconds then falling, and the
two outputs are compared sample by sample. `--sessions utterance`: each clip is its own
session, as `export.evaluate` and the per-clip training copies de-identify it; `speaker`:
each actor's clips, in a random order, go through one session (bench_voice_privacy.py's
speaker protocol). Measures; chooses nothing.

    python benchmarks/silence_hold_footprint.py --sessions utterance   # 2 min on 2 cores
    python benchmarks/silence_hold_footprint.py --sessions speaker
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
from edge_app.records import AudioChunk
from export import audio_data, default_data


def differences(job: tuple[int, list[str], float, str]) -> list[float]:
    """Largest sample difference per clip between the two references."""
    actor, paths, hold, sessions = job
    clips = [AudioChunk(0.0, audio_data.read_clip(p), 16_000) for p in paths]
    outs = []
    for h in (None, hold):
        if sessions == "speaker":
            deid = VoiceDeidentifier(VoiceDeidOptions(seed=actor, silence_peak_hold_s=h))
            outs.append([deid.process(c).samples for c in clips])
        else:
            outs.append([VoiceDeidentifier(VoiceDeidOptions(seed=1000 * actor + i, silence_peak_hold_s=h)).process(c).samples
                         for i, c in enumerate(clips)])
    return [float(np.abs(a - b).max()) for a, b in zip(*outs, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hold", type=float, default=5.0, help="hold in seconds (default: %(default)s)")
    ap.add_argument("--sessions", choices=("utterance", "speaker"), default="utterance")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    by_actor: dict[int, list[str]] = {}
    for u in audio_data.load_ravdess(default_data()):
        by_actor.setdefault(u.actor, []).append(str(u.path))
    rng = np.random.default_rng(0)
    jobs = [(actor, [p[i] for i in rng.permutation(len(p))], a.hold, a.sessions) for actor, p in sorted(by_actor.items())]
    with ProcessPoolExecutor(a.workers) as pool:
        diffs = np.concatenate(list(pool.map(differences, jobs)))
    changed = int((diffs > 1e-6).sum())
    print(f"hold {a.hold:g} s, {a.sessions} sessions: {changed} of {len(diffs)} clips differ "
          f"(largest sample difference {diffs.max():.3g})")


if __name__ == "__main__":
    main()
