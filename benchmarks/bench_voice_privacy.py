"""Voice de-identification benchmark: privacy (speaker verification EER),
emotion retention (speaker-independent classifier) and real-time factor.

Privacy (RAVDESS actors 19-24, measurement only, nothing is trained):
  each actor is enrolled with the mean Resemblyzer embedding of 10 utterances
  (a fixed random pick); every other utterance of those actors is scored against
  every enrolled actor; EER over all trials for
    original       enrol original,   test original   (sanity check)
    lazy-informed  enrol original,   test anonymised
    semi-informed  enrol anonymised, test anonymised, with sessions (seeds)
                   different from the test side's.
Sessions (--sessions, each protocol gets its own rows): "speaker" = all clips of
an actor go through one session per side (one alpha, one running speaker-F0
estimate), as in live use; "utterance" = every clip is its own session.

Emotion retention: log-mel / MFCC / F0 / energy statistics, StandardScaler +
LogisticRegression or RBF SVM; train on actors 1-18, hyper-parameters picked on
19-20, accuracy reported on 21-24 (8 classes, and 4 classes neutral/happy/sad/
angry), once on original audio and once on anonymised audio (train and test).

Real-time factor: CPU seconds of the anonymiser (one thread) / audio seconds.

Results: benchmarks/results/voice_privacy.{json,md,png}. Per-utterance embeddings
and features are cached in .cache/voice_privacy (keyed by method, side and a
hash of the de-identifier's source), so a re-run only redoes what changed.

    python benchmarks/bench_voice_privacy.py            # full run, both protocols
    python benchmarks/bench_voice_privacy.py --quick    # small subset, ~2 min
    python benchmarks/bench_voice_privacy.py --methods default --no-emotion --sessions speaker --input-gain-db -30
        # a quiet microphone: every clip 30 dB quieter before de-identification (the enrolment
        # side of the lazy-informed attacker stays as recorded); voice_privacy_gain-30.{json,md,png}
"""

from __future__ import annotations

import os

# One core per worker: the RTF is a one-core figure and the machine is shared.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import csv
import dataclasses
import hashlib
import json
import pickle
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_app.deid.voice import PITCH_METHODS, SOURCE_FILES, VoiceDeidentifier, VoiceDeidOptions
from edge_app.eval.emotion_probe import prosody_features, session_normalise
from edge_app.eval.speaker import det_curve, eer, enrol, trial_scores

TRAIN_ACTORS = range(1, 19)
VAL_ACTORS = (19, 20)
TEST_ACTORS = (21, 22, 23, 24)
PRIVACY_ACTORS = VAL_ACTORS + TEST_ACTORS
FOUR_CLASSES = ("neutral", "happy", "sad", "angry")

# name -> VoiceDeidOptions overrides; "default" is VoiceDeidOptions() as shipped
METHODS: dict[str, dict] = {
    "mcadams_a0.8": {"method": "mcadams", "mcadams_alpha": 0.8},
    "mcadams_rand": {"method": "mcadams"},
    "default": {},
    "pitch_vtl": {"method": "pitch+vtl"},
    "pitch_vtl_f0": {"method": "pitch+vtl", "target_f0_range": (125.0, 205.0)},
    "pitch_s0.5": {"method": "mcadams+pitch", "pitch_norm_strength": 0.5},
    "pitch_only": {"method": "mcadams+pitch", "mcadams_alpha": 1.0},
    "pitch_ff0": {"method": "mcadams+pitch", "formant_follow": 0.0},
    "pitch_ff0.5": {"method": "mcadams+pitch", "formant_follow": 0.5},
    # the default until 2026-12-06: the silence reference is the session's loudest frame for good,
    # even a bang's (VoiceDeidOptions.silence_peak_hold_s)
    "no_hold": {"method": "mcadams+pitch", "silence_peak_hold_s": None},
}


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the data folder
    actor: int
    emotion: str


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = os.environ.get("DEEMO_DATA", str(ROOT.parent / "shared" / "data"))
    p.add_argument("--data", default=default_data, help="folder holding ravdess_speech/ (default: $DEEMO_DATA or ../shared/data)")
    p.add_argument("--methods", default="mcadams_a0.8,mcadams_rand,default,pitch_vtl",
                   help=f"comma-separated, from {', '.join(METHODS)} (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="small subset: 24 clips per privacy actor, 16 per other actor")
    p.add_argument("--no-emotion", action="store_true", help="skip the emotion-retention part (privacy and RTF only)")
    p.add_argument("--emotion-only", action="store_true",
                   help="skip the speaker-verification part: EERs (and DET plot) are copied from the earlier "
                        "results file --privacy-from, which is only valid when the de-identified audio is "
                        "unchanged (same de-identifier code and options); rows are marked as reused")
    p.add_argument("--privacy-from", default=None,
                   help="results JSON the EERs are reused from with --emotion-only (default: OUT/voice_privacy.json)")
    p.add_argument("--enrol-utts", type=int, default=10, help="enrolment utterances per speaker (default: 10)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each (default: 2)")
    p.add_argument("--cache", default=str(ROOT / ".cache" / "voice_privacy"), help="cache folder (default: .cache/voice_privacy)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder (default: benchmarks/results)")
    p.add_argument("--seed", type=int, default=0, help="seed of the enrolment pick and the subsets (default: 0)")
    p.add_argument("--sessions", default="speaker,utterance",
                   help="comma-separated protocols, each gets its own rows. speaker: all clips of an actor go, "
                        "in a random order, through one session per side, as in live use where one session "
                        "covers one speaker and the running F0 estimate carries over; utterance: every clip is "
                        "its own anonymisation session (random alpha, fresh F0 estimate) (default: %(default)s)")
    p.add_argument("--input-gain-db", type=float, default=0.0,
                   help="scale every clip by this gain before de-identification: a quieter or louder microphone "
                        "(the original voices the lazy-informed attacker enrols on stay as recorded; "
                        "results go to voice_privacy_gain<G>.*; default: 0)")
    p.add_argument("--bang-dbfs", type=float, default=None,
                   help="before its first clip, every de-identification session hears a bang: 0.3 s of white "
                        "noise at this RMS level, dBFS, decaying 60 dB over its length (a door slam; results go "
                        "to voice_privacy_bang<B>.*; default: none)")
    p.add_argument("--emotion-methods", default="mcadams_rand,default,pitch_vtl",
                   help="methods that also get the emotion-retention run (default: %(default)s)")
    return p.parse_args()


# --- data ------------------------------------------------------------------------


def load_clips(data: Path) -> list[Clip]:
    labels = data / "ravdess_speech" / "labels.csv"
    if not labels.exists():
        sys.exit(f"error: {labels} not found (set --data or DEEMO_DATA)")
    with open(labels, newline="") as f:
        return [Clip(r["path"], int(r["actor"]), r["emotion"]) for r in csv.DictReader(f)]


def subsample(clips: list[Clip], per_actor: int, rng: np.random.Generator) -> list[Clip]:
    out: list[Clip] = []
    for actor in sorted({c.actor for c in clips}):
        own = [c for c in clips if c.actor == actor]
        pick = rng.choice(len(own), size=min(per_actor, len(own)), replace=False)
        out.extend(own[i] for i in sorted(pick))
    return out


def pick_enrolment(clips: list[Clip], actors, n: int, rng: np.random.Generator) -> list[Clip]:
    """n enrolment utterances per actor, a fixed random pick (the rest are trials)."""
    out: list[Clip] = []
    for actor in actors:
        own = [c for c in clips if c.actor == actor]
        out += [own[i] for i in sorted(rng.choice(len(own), n, replace=False))]
    return out


# --- per-utterance work (runs in worker processes) --------------------------------

_ENCODER = None


def _encoder():
    global _ENCODER
    if _ENCODER is None:
        from edge_app.eval.speaker import load_encoder

        _ENCODER = load_encoder(threads=1)
    return _ENCODER


def session_seed(method: str, key: str, side: str) -> int:
    """A distinct, reproducible anonymisation session per (utterance or actor, side).

    The same for every method (a paired comparison: an actor gets the same alpha
    draw and clip order under each method); `method` is kept for the call sites."""
    return zlib.crc32(f"{key}|{side}".encode())


def work(job: tuple) -> list[tuple[str, dict]]:
    """Anonymise clips in order through one session (unless method is "original");
    embed and/or featurise each."""
    import soundfile as sf

    from edge_app.records import AudioChunk
    from edge_app.synth import door_slam

    data, paths, method, side, want_emb, want_feat, key, gain_db, bang_dbfs = job
    deid = None
    if method != "original":
        deid = VoiceDeidentifier(VoiceDeidOptions(**METHODS[method], seed=session_seed(method, key, side)))
        if bang_dbfs is not None:
            deid.process(AudioChunk(0.0, door_slam(bang_dbfs), 16_000))  # its output is not scored
    out = []
    for path, emb_wanted, feat_wanted in zip(paths, want_emb, want_feat):
        x, sr = sf.read(os.path.join(data, "ravdess_speech", path), dtype="float32")
        rec: dict = {"dur": len(x) / sr, "cpu": 0.0}
        if deid is not None:
            x = (x * 10 ** (gain_db / 20)).astype(np.float32)  # the microphone's level, before de-identification
            t = time.process_time()
            x = deid.process(AudioChunk(0.0, x, sr)).samples
            rec["cpu"] = time.process_time() - t
            rec["alpha"] = deid.alpha
        if emb_wanted:
            from edge_app.eval.speaker import embed

            rec["emb"] = embed(_encoder(), x, sr)
        if feat_wanted:
            rec["feat"] = emotion_features(x, sr)
            rec["pfeat"] = prosody_features(x, sr)
        out.append((path, rec))
    return out


def emotion_features(x: np.ndarray, sr: int) -> np.ndarray:
    """Utterance statistics: log-mel, MFCC(+delta), F0 contour, energy, spectral shape."""
    import librosa

    from edge_app.deid.pitch import F0_WIN, estimate_f0

    x = np.asarray(x, dtype=np.float32)
    mel = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=512, hop_length=160, n_mels=40)
    logmel = np.log(mel + 1e-8)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=20)
    dmfcc = librosa.feature.delta(mfcc)
    rms_db = 20 * np.log10(librosa.feature.rms(y=x, frame_length=512, hop_length=160)[0] + 1e-5)
    active = rms_db > rms_db.max() - 40  # statistics over speech, not leading silence
    flat = librosa.feature.spectral_flatness(y=x, n_fft=512, hop_length=160)[0]
    n = (len(x) - F0_WIN) // 160
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), F0_WIN)[::160][:n]
    f0, voiced = estimate_f0(frames) if n > 0 else (np.zeros(0), np.zeros(0, bool))
    lf0 = np.log2(f0[voiced]) if voiced.sum() >= 3 else np.zeros(3)
    t = np.flatnonzero(voiced) if voiced.sum() >= 3 else np.arange(3)
    slope = np.polyfit(t / 100.0, lf0, 1)[0] if len(lf0) >= 3 else 0.0
    pitch = [
        np.median(lf0), lf0.std(), np.percentile(lf0, 10), np.percentile(lf0, 90),
        np.percentile(lf0, 90) - np.percentile(lf0, 10), slope, voiced.mean() if n > 0 else 0.0,
        np.abs(np.diff(lf0)).mean() if len(lf0) > 1 else 0.0,
    ]
    a = active if active.sum() >= 3 else np.ones_like(active)
    stats = lambda m: np.concatenate([m[:, a].mean(axis=1), m[:, a].std(axis=1)])
    energy = [rms_db[a].mean(), rms_db[a].std(), np.percentile(rms_db[a], 90), a.mean() * len(x) / sr]
    return np.concatenate([
        stats(logmel), stats(mfcc), stats(dmfcc), pitch, energy,
        [np.log(flat[a] + 1e-8).mean(), np.log(flat[a] + 1e-8).std()],
    ]).astype(np.float32)


# --- cache ----------------------------------------------------------------------


def code_hash() -> str:
    """Fingerprint of everything that changes anonymised audio or features (the
    de-identifier's source and this file's per-utterance code, not the report)."""
    import inspect
    import re

    h = hashlib.sha1()
    for name in SOURCE_FILES:
        text = (ROOT / "edge_app" / "deid" / name).read_text()
        # the option defaults are not code: the resolved options are part of the cache key
        text = re.sub(r"class VoiceDeidOptions:.*?\n    def validate", "", text, flags=re.DOTALL)
        h.update(text.encode())
    for fn in (session_seed, work, emotion_features, prosody_features):
        h.update(inspect.getsource(fn).encode())
    h.update((ROOT / "edge_app/eval/emotion_probe.py").read_bytes())
    return h.hexdigest()[:10]


def session_groups(method: str, side: str, clips: list[Clip], sessions: str) -> list[tuple[list[Clip], str]]:
    """The anonymisation sessions: (clips in the order heard, session key for `session_seed`)."""
    if sessions == "utterance":
        return [([c], c.path) for c in clips]
    groups = []  # one session per actor, its clips in a fixed random order
    for actor in sorted({c.actor for c in clips}):
        own = [c for c in clips if c.actor == actor]
        order = np.random.default_rng(session_seed(method, str(actor), side)).permutation(len(own))
        groups.append(([own[i] for i in order], f"actor{actor}"))
    return groups


def run_jobs(args, method: str, side: str, clips: list[Clip], emb_paths: set[str], feat_paths: set[str],
             sessions: str = "utterance") -> dict:
    """Records for `clips` under (method, side, sessions), computing only what the cache lacks."""
    # keyed by what decides the audio (resolved options, side, protocol, code), not
    # the method's name: rows with the same options share one cache file
    sessions = "utterance" if method == "original" else sessions
    spec = "original" if method == "original" else json.dumps(
        dataclasses.asdict(VoiceDeidOptions(**METHODS[method])), sort_keys=True, default=str)
    gain = "" if method == "original" or not args.input_gain_db else f"|gain{args.input_gain_db:g}"
    gain += "" if method == "original" or args.bang_dbfs is None else f"|bang{args.bang_dbfs:g}"
    key = hashlib.sha1(f"{spec}|{side}|{sessions}|{code_hash()}{gain}".encode()).hexdigest()[:12]
    cache_file = Path(args.cache) / f"{side}-{sessions}-{key}.pkl"
    recs: dict = pickle.loads(cache_file.read_bytes()) if cache_file.exists() else {}

    def missing(c: Clip) -> tuple[bool, bool]:
        have = recs.get(c.path, {})
        return c.path in emb_paths and "emb" not in have, c.path in feat_paths and "pfeat" not in have

    todo = []
    for group, gkey in session_groups(method, side, clips, sessions):
        flags = [missing(c) for c in group]
        if any(e or f for e, f in flags):
            want_emb = tuple(c.path in emb_paths for c in group)
            want_feat = tuple(c.path in feat_paths for c in group)
            todo.append((args.data, tuple(c.path for c in group), method, side, want_emb, want_feat, gkey,
                         0.0 if method == "original" else args.input_gain_db, args.bang_dbfs))
    if todo:
        t = time.time()
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for results in pool.map(work, todo, chunksize=1 if sessions == "speaker" else 4):
                for path, rec in results:
                    recs.setdefault(path, {}).update(rec)
        print(f"  {method}/{side}/{sessions}: {sum(len(j[1]) for j in todo)} clips in {time.time() - t:.0f} s", flush=True)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(pickle.dumps(recs))
    return recs


# --- privacy --------------------------------------------------------------------


def privacy_eval(enrol_recs: dict, test_recs: dict, enrol_clips: list[Clip], test_clips: list[Clip]):
    models = {}
    for actor in PRIVACY_ACTORS:
        embs = np.stack([enrol_recs[c.path]["emb"] for c in enrol_clips if c.actor == actor])
        models[actor] = enrol(embs)
    emb = np.stack([test_recs[c.path]["emb"] for c in test_clips])
    spk = np.array([c.actor for c in test_clips])
    scores, target = trial_scores(emb, spk, models)
    return eer(scores, target), scores, target


# --- emotion --------------------------------------------------------------------


# Emotion probes: (feature set, per-session normalisation). The same probe is applied
# to the original and to every de-identified row; "full / none" is the original protocol.
PROBES = {
    "full": ("feat", "none"),
    "full+norm": ("feat", "session"),
    "prosody+norm": ("pfeat", "session"),
}


def emotion_eval(recs: dict, clips: list[Clip], classes: tuple[str, ...] | None,
                 probe: str = "full") -> dict:
    """Train on 1-18, choose the model on 19-20, report accuracy on 21-24.

    Per-session normalisation (probe "...+norm"): each actor's utterances are
    z-normalised with the mean / std of all of that actor's utterances in `clips`
    (all emotions, no labels used; the statistics come from unlabelled audio of the
    same speaker, i.e. of the same anonymisation session under speaker sessions),
    before the class subset is taken. Identical for original and de-identified rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    key, norm = PROBES[probe]
    X = np.stack([recs[c.path][key] for c in clips]).astype(np.float64)
    if norm == "session":
        X = session_normalise(X, np.array([c.actor for c in clips]))
    row = {c.path: i for i, c in enumerate(clips)}
    use = [c for c in clips if classes is None or c.emotion in classes]

    def split(actors) -> tuple[np.ndarray, np.ndarray]:
        sel = [c for c in use if c.actor in actors]
        return X[[row[c.path] for c in sel]], np.array([c.emotion for c in sel])

    xtr, ytr = split(TRAIN_ACTORS)
    xva, yva = split(VAL_ACTORS)
    xte, yte = split(TEST_ACTORS)
    candidates = [("logreg", C, lambda C=C: LogisticRegression(C=C, max_iter=3000)) for C in (0.01, 0.03, 0.1, 0.3, 1.0)]
    candidates += [("svm_rbf", C, lambda C=C: SVC(C=C, gamma="scale")) for C in (1.0, 3.0, 10.0)]
    best = None
    for name, C, make in candidates:
        model = make_pipeline(StandardScaler(), make()).fit(xtr, ytr)
        val = float((model.predict(xva) == yva).mean())
        if best is None or val > best[0]:
            best = (val, name, C, model)
    val, name, C, model = best
    return {"model": name, "C": C, "val_acc": val, "test_acc": float((model.predict(xte) == yte).mean()),
            "n_train": len(ytr), "n_test": len(yte)}


def add_emotion(row: dict, recs: dict, emo_clips: list[Clip]) -> None:
    """emotion8 / emotion4: the original protocol (full features, no normalisation);
    probes: every entry of PROBES, 8 and 4 classes."""
    row["emotion8"] = emotion_eval(recs, emo_clips, None)
    row["emotion4"] = emotion_eval(recs, emo_clips, FOUR_CLASSES)
    row["probes"] = {p: {"emotion8": emotion_eval(recs, emo_clips, None, p),
                         "emotion4": emotion_eval(recs, emo_clips, FOUR_CLASSES, p)} for p in PROBES if p != "full"}


# --- report ---------------------------------------------------------------------


KEEP_MARKER = "<!-- everything below is kept when the benchmark rewrites this file -->"


def write_report(out: Path, stem: str, res: dict, curves: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# Voice de-identification: privacy, emotion retention, speed",
        "",
        f"Command: `{res['command']}`  ",
        (f"Privacy: Resemblyzer speaker verification on RAVDESS actors {PRIVACY_ACTORS[0]}-{PRIVACY_ACTORS[-1]}, "
        f"{res['config']['enrol_utts']} enrolment utterances per speaker, {res['config']['n_trials']} trials "
        f"({res['config']['n_target']} target). Emotion: train actors 1-18, model picked on 19-20, "
        "accuracy on test actors 21-24. RTF: anonymiser CPU time on one thread / audio duration "
        "(measured inside the benchmark's worker processes, so on a busy machine it is pessimistic).  "),
        "",
        ("Sessions (the `sessions` column): **speaker** = each actor's clips go, in a random order, through one "
        "anonymisation session per side (one random alpha, one running speaker-F0 estimate), as in live use, "
        "where one session covers one speaker for a long time. This is the realistic protocol and the one "
        "the default is judged on: the running median F0 converges to the speaker's own level, so an "
        "utterance that is higher or lower than the speaker's usual pitch (an arousal cue) stays so. "
        "**utterance** = every clip is its own session (own alpha, F0 estimate from that clip alone): a "
        "stress test, not a use case; full pitch normalisation then removes each utterance's own pitch "
        "level. The enrolment side of the semi-informed attack always uses different sessions (seeds) "
        "from the test side. The emotion classifier and its features are identical for every row; "
        "only the audio differs."),
        "",
        "| method | sessions | EER lazy-informed | EER semi-informed | emotion 8-class | emotion 4-class | RTF (1 core) |",
        "|---|---|---|---|---|---|---|",
    ]
    o = res["original"]
    lines.append(f"| original (no anonymisation) | - | {100 * o['eer']:.1f} % (orig vs orig) | - | "
                 f"{_acc(o, 'emotion8')} | {_acc(o, 'emotion4')} | - |")
    for r in res["methods"].values():
        lines.append(f"| {r['name']}: `{r['options']}` | {r['sessions']} | {100 * r['eer_lazy']:.1f} % | "
                     f"{100 * r['eer_semi']:.1f} % | {_acc(r, 'emotion8', o)} | {_acc(r, 'emotion4', o)} | "
                     f"{r['rtf']:.4f} |")
    lines += ["", ("Emotion accuracy in brackets: change against the original audio (points). Targets for "
                   "the default: lazy EER >= 45 %, semi EER >= 35 %, at most 3 points of emotion accuracy "
                   "lost, RTF <= 0.02."), ""]
    if "privacy_reused_from" in res:
        lines += [(f"EERs (and the DET plot) of this file are reused from the earlier full run "
                   f"(`{res['privacy_reused_from']['command']}`, code hash {res['privacy_reused_from']['code_hash']}): "
                   "this run (`--emotion-only`) changed only the emotion probes, not the de-identifier, so the "
                   "de-identified audio and thus the EERs are the same. RTF is re-measured for rows with an "
                   "emotion run."), ""]
    probes = [p for p in PROBES if p != "full"]
    rows = [("original (no anonymisation)", "-", res["original"])]
    rows += [(r["name"], r["sessions"], r) for r in res["methods"].values() if "probes" in r]
    if len(rows) > 1 and "probes" in res["original"]:
        o = res["original"]
        lines += ["### Emotion retention by probe (test actors 21-24)", "",
                  ("Probes: **full** = the classifier above (log-mel / MFCC / F0 / energy statistics); "
                   "**full+norm** = the same features z-normalised per speaker (each actor's utterances with "
                   "the mean / std of all of that actor's utterances, all emotions, no labels: under speaker "
                   "sessions one actor = one anonymisation session, under utterance sessions the actor's "
                   "clips each have their own warp and are pooled anyway); **prosody+norm** = F0-contour and "
                   "energy-envelope statistics only (`edge_app/eval/emotion_probe.py`), normalised the same "
                   "way. Each probe: train 1-18, model picked on 19-20, test 21-24, identical for every row."),
                  "",
                  "| audio | sessions | " + " | ".join(f"{p} 8-class | {p} 4-class" for p in ["full"] + probes) + " |",
                  "|---|---|" + "---|---|" * (1 + len(probes))]
        for name, sess, r in rows:
            cells = [_acc(r, "emotion8", o if r is not o else None), _acc(r, "emotion4", o if r is not o else None)]
            for p in probes:
                cells += [_acc(r["probes"][p], k, o["probes"][p] if r is not o else None) for k in ("emotion8", "emotion4")]
            lines.append(f"| {name} | {sess} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += res.get("notes", [])
    md = out / f"{stem}.md"
    # the validation sweeps and probes below the marker are written by hand: keep them
    kept = md.read_text().partition(KEEP_MARKER) if md.exists() else ("", "", "")
    md.write_text("\n".join(lines) + ("\n" + kept[1] + kept[2] if kept[1] else ""))
    if curves:
        _plot(out / f"{stem}.png", res, curves)


def _acc(r: dict, key: str, orig: dict | None = None) -> str:
    if key not in r:
        return "-"
    delta = f" ({100 * (r[key]['test_acc'] - orig[key]['test_acc']):+.1f})" if orig and key in orig else ""
    return f"{100 * r[key]['test_acc']:.1f} %{delta}"


def _plot(path: Path, res: dict, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    names = list(res["methods"])
    pos = np.arange(len(names))
    ax1.bar(pos - 0.2, [100 * res["methods"][n]["eer_lazy"] for n in names], 0.4, label="lazy-informed")
    ax1.bar(pos + 0.2, [100 * res["methods"][n]["eer_semi"] for n in names], 0.4, label="semi-informed")
    ax1.axhline(100 * res["original"]["eer"], color="k", ls=":", label="original voices")
    ax1.set_xticks(pos, [n.replace(" [", "\n[") for n in names], fontsize=7)
    ax1.set_ylabel("speaker-verification EER (%)")
    ax1.set_ylim(0, 55)
    ax1.legend(loc="upper left")
    ax1.set_title("Privacy (higher is better)")
    lim = (0.01, 0.6)
    for label, (fa, fr) in curves.items():
        ok = (fa > 1e-4) & (fr > 1e-4) & (fa < 0.9999) & (fr < 0.9999)
        ax2.plot(norm.ppf(fa[ok]), norm.ppf(fr[ok]), label=label)
    ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6]
    ax2.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax2.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax2.set_xlim(norm.ppf(lim))
    ax2.set_ylim(norm.ppf(lim))
    ax2.set_xlabel("false accept (%)")
    ax2.set_ylabel("false reject (%)")
    ax2.set_title("DET curves")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --- main -----------------------------------------------------------------------


def describe(opts: VoiceDeidOptions) -> str:
    """The options that decide a row's audio, as one short line."""
    parts = [f"method={opts.method}"]
    if opts.method != "pitch+vtl":
        parts.append(f"alpha={opts.mcadams_alpha or 'random'}")
    if opts.method in PITCH_METHODS:
        target = f"{opts.target_f0_hz:g}"
        if opts.target_f0_range is not None:
            target = "{:g}-{:g} (random)".format(*opts.target_f0_range)
        parts += [f"target_f0={target}", f"strength={opts.pitch_norm_strength:g}",
                  f"formant_follow={opts.formant_follow:g}"]
    lo, hi = opts.vtl_range
    if (lo, hi) != (1.0, 1.0):
        parts.append(f"formant_scale={lo:g}-{hi:g}")
    if opts.ltas_strength:
        parts.append(f"ltas_eq={opts.ltas_strength:g}")
    return ", ".join(parts)


def main() -> None:
    args = parse_args()
    methods = [m for m in args.methods.split(",") if m]
    emo_methods = {m for m in args.emotion_methods.split(",") if m}
    unknown = [m for m in methods + sorted(emo_methods) if m not in METHODS]
    if unknown:
        sys.exit(f"error: unknown method(s) {unknown}; choose from {list(METHODS)}")
    rng = np.random.default_rng(args.seed)
    clips = load_clips(Path(args.data))
    priv = [c for c in clips if c.actor in PRIVACY_ACTORS]
    other = [c for c in clips if c.actor not in PRIVACY_ACTORS]
    if args.quick:
        priv, other = subsample(priv, 24, rng), subsample(other, 16, rng)
    enrol_clips = pick_enrolment(priv, PRIVACY_ACTORS, args.enrol_utts, rng)
    enrol_set = {c.path for c in enrol_clips}
    test_clips = [c for c in priv if c.path not in enrol_set]
    emo_clips = [] if args.no_emotion else priv + other
    prev = None
    if args.emotion_only:
        if args.no_emotion:
            sys.exit("error: --emotion-only and --no-emotion exclude each other")
        prev_path = Path(args.privacy_from or Path(args.out) / "voice_privacy.json")
        prev = json.loads(prev_path.read_text())
        enrol_clips, enrol_set, test_clips = [], set(), []
    priv_paths = set() if prev else {c.path for c in priv}
    feat_paths = {c.path for c in emo_clips}
    all_clips = priv + ([] if args.no_emotion else other)

    print(f"clips: {len(priv)} privacy ({len(enrol_clips)} enrol), {len(emo_clips)} emotion; jobs={args.jobs}", flush=True)
    t_start = time.time()
    orig = run_jobs(args, "original", "test", all_clips, priv_paths, feat_paths)
    if prev:
        e_orig, curves = prev["original"]["eer"], {}
        n_trials, n_target = prev["config"]["n_trials"], prev["config"]["n_target"]
    else:
        e_orig, s, t = privacy_eval(orig, orig, enrol_clips, test_clips)
        curves = {"original": det_curve(s, t)}
        n_trials, n_target = int(len(t)), int(t.sum())
    res: dict = {
        "command": "python benchmarks/bench_voice_privacy.py " + " ".join(sys.argv[1:]),
        "config": {"quick": args.quick, "enrol_utts": args.enrol_utts, "n_privacy_clips": len(priv),
                   "n_trials": n_trials, "n_target": n_target, "n_emotion_clips": len(emo_clips),
                   "seed": args.seed, "sessions": args.sessions, "code_hash": code_hash(),
                   "input_gain_db": args.input_gain_db, "bang_dbfs": args.bang_dbfs},
        "original": {"eer": e_orig},
        "methods": {},
    }
    if prev:
        res["privacy_reused_from"] = prev.get("privacy_reused_from") or {
            "command": prev["command"], "code_hash": prev["config"]["code_hash"]}
    if emo_clips:
        add_emotion(res["original"], orig, emo_clips)
    print(f"original: EER {100 * e_orig:.1f} %" + (
        f", emo8 {100 * res['original']['emotion8']['test_acc']:.1f}, emo4 {100 * res['original']['emotion4']['test_acc']:.1f}"
        if emo_clips else ""), flush=True)
    protocols = [p for p in args.sessions.split(",") if p]
    if any(p not in ("speaker", "utterance") for p in protocols):
        sys.exit(f"error: --sessions takes speaker and/or utterance, got {args.sessions!r}")
    for sessions, m in [(p, m) for p in protocols for m in methods]:
        with_emo = bool(emo_clips) and m in emo_methods
        row = f"{m} [{sessions}]"
        if prev and not with_emo:  # nothing to measure: the earlier row as it was
            if row in prev["methods"]:
                res["methods"][row] = dict(prev["methods"][row], privacy_reused=True)
            continue
        test = run_jobs(args, m, "test", all_clips if with_emo else priv, priv_paths,
                        feat_paths if with_emo else set(), sessions)
        if prev:
            if row not in prev["methods"]:
                sys.exit(f"error: --emotion-only: {row} has no EERs in {args.privacy_from or 'the earlier results'}")
            e_lazy, e_semi = prev["methods"][row]["eer_lazy"], prev["methods"][row]["eer_semi"]
        else:
            enr = run_jobs(args, m, "enrol", enrol_clips, enrol_set, set(), sessions)
            e_lazy, s_l, t_l = privacy_eval(orig, test, enrol_clips, test_clips)
            e_semi, s_s, t_s = privacy_eval(enr, test, enrol_clips, test_clips)
        if sessions == protocols[0] and not prev:
            curves[f"{row} lazy"] = det_curve(s_l, t_l)
            curves[f"{row} semi"] = det_curve(s_s, t_s)
        cpu = sum(r["cpu"] for r in test.values())
        dur = sum(r["dur"] for r in test.values())
        r = {"options": describe(VoiceDeidOptions(**METHODS[m])), "name": m, "sessions": sessions,
             "eer_lazy": e_lazy, "eer_semi": e_semi, "rtf": cpu / dur, "audio_s": dur}
        if prev:
            r["privacy_reused"] = True
        if with_emo:
            add_emotion(r, test, emo_clips)
        res["methods"][row] = r
        print(f"{row}: lazy {100 * e_lazy:.1f} %, semi {100 * e_semi:.1f} %, RTF {r['rtf']:.4f}"
              + (f", emo8 {100 * r['emotion8']['test_acc']:.1f}, emo4 {100 * r['emotion4']['test_acc']:.1f}"
                 if with_emo else ""), flush=True)
    res["wall_s"] = time.time() - t_start
    stem = ("voice_privacy" + (f"_gain{args.input_gain_db:g}" if args.input_gain_db else "")
            + (f"_bang{args.bang_dbfs:g}" if args.bang_dbfs is not None else "") + ("_quick" if args.quick else ""))
    write_report(Path(args.out), stem, res, curves)
    print(f"wrote {args.out}/{stem}.json, .md, .png ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
