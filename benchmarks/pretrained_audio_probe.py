"""Pretrained speech encoder vs the trained-from-scratch audio encoder (issue 3's question).

The only pretrained speech encoder whose weights ship inside a PyPI wheel here is
Resemblyzer's (GE2E speaker encoder, 3-layer LSTM on 40 mel bands, 256-d utterance
embedding, Apache-2.0). This probe asks how much emotion its embedding carries on
de-identified RAVDESS speech, on the benchmark's fixed split and with the benchmark's
classifier protocol (train actors 1-18, LR / RBF-SVM picked on 19-20, test 21-24):

    python benchmarks/pretrained_audio_probe.py            # default de-identifier, speaker sessions

Rows: the embedding alone, the benchmark's hand-made statistics alone, both concatenated;
on original and on de-identified audio. The scratch encoder's figure (models/manifest.json,
same test actors) is printed beside them. Uses the voice benchmark's cache (.cache/voice_privacy).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import bench_voice_privacy as b  # noqa: E402

b.PROBES.update({"emb": ("emb", "none"), "emb+feat": ("embfeat", "none")})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("DEEMO_DATA", str(ROOT.parent / "shared" / "data")),
                   help="folder holding ravdess_speech/ (default: $DEEMO_DATA or ../shared/data)")
    p.add_argument("--method", default="default", choices=sorted(b.METHODS),
                   help="de-identifier row of the voice benchmark (default: %(default)s)")
    p.add_argument("--sessions", default="speaker", choices=("speaker", "utterance"),
                   help="anonymisation sessions, as in the voice benchmark (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default: 2)")
    p.add_argument("--cache", default=str(ROOT / ".cache" / "voice_privacy"), help="cache folder (default: %(default)s)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pretrained_audio.json"),
                   help="results JSON (default: %(default)s)")
    args = p.parse_args()
    clips = b.load_clips(Path(args.data))
    paths = {c.path for c in clips}
    rows = {}
    for name, method in (("original", "original"), (f"{args.method} ({args.sessions} sessions)", args.method)):
        recs = b.run_jobs(args, method, "test", clips, paths, paths, args.sessions)
        for c in clips:
            r = recs[c.path]
            r["embfeat"] = np.concatenate([r["emb"], r["feat"]])
        rows[name] = {probe: {k: b.emotion_eval(recs, clips, classes, probe)
                              for k, classes in (("8-class", None), ("4-class", b.FOUR_CLASSES))}
                      for probe in ("emb", "full", "emb+feat")}
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    scratch = manifest["models"]["audio"]["metrics"]
    rows["scratch audio encoder (models/manifest.json)"] = {
        "encoder": {"8-class": {"test_acc": scratch["test_8class"]["accuracy"]},
                    "4-class": {"test_acc": scratch["test_4class"]["accuracy"]}}}
    Path(args.out).write_text(json.dumps(rows, indent=1))
    names = {"emb": "Resemblyzer embedding", "full": "hand-made statistics", "emb+feat": "both",
             "encoder": "trained from scratch"}
    print("| audio | features | 8-class test | 4-class test | model (8-class) |")
    print("|---|---|---|---|---|")
    for audio, probes in rows.items():
        for probe, r in probes.items():
            model = f"{r['8-class']['model']} C={r['8-class']['C']}" if "model" in r["8-class"] else "TCN"
            print(f"| {audio} | {names[probe]} | {100 * r['8-class']['test_acc']:.1f} % | "
                  f"{100 * r['4-class']['test_acc']:.1f} % | {model} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
