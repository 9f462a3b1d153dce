"""The long-term spectrum target of the voice equaliser (edge_app/deid/spectrum.py).

Mean band log-power of RAVDESS actors 1-20 (never the test actors 21-24): every clip
of each actor through one pitch-normalising session (alpha 1, no equalisation), the
session's average read from the equaliser's own analysis at strength 0+, then the
mean over the 20 actors (10 men, 10 women). Prints the array to paste into
TARGET_LOG_POWER.

    python benchmarks/ltas_target.py
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edge_app.deid import spectrum
from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
from edge_app.records import AudioChunk


def main() -> None:
    data = Path(os.environ.get("DEEMO_DATA", ROOT.parent / "shared" / "data")) / "ravdess_speech"
    rows = list(csv.DictReader(open(data / "labels.csv")))
    spectrum.TARGET_LOG_POWER = np.zeros(spectrum.N_BANDS)  # measure, do not equalise towards it
    per_actor = []
    for actor in range(1, 21):
        deid = VoiceDeidentifier(VoiceDeidOptions(mcadams_alpha=1.0, ltas_norm_strength=1e-9, seed=actor))
        for r in rows:
            if int(r["actor"]) == actor:
                x, sr = sf.read(data / r["path"], dtype="float32")
                deid.process(AudioChunk(0.0, x, sr))
        per_actor.append(deid.speaker.ltas.ltas)
    target = np.mean(per_actor, axis=0)
    spread = np.std(per_actor, axis=0)
    print("between-actor std per band:", np.round(spread, 2).tolist())
    print("TARGET_LOG_POWER = np.array([" + ", ".join(f"{v:.3f}" for v in target) + "])")


if __name__ == "__main__":
    main()
