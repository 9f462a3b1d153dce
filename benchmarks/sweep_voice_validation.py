"""Validation sweep for the voice de-identifier (how its default was chosen).

Never touches the test actors 21-24. Privacy: Resemblyzer EER (lazy / semi) over actors
1-20 (a pre-trained verifier, nothing trained on RAVDESS). Emotion: 5-fold actor-grouped
cross-validation over actors 1-20 with fixed classifiers (the same for original and
anonymised features). One variant per run; results are appended to --out as JSON lines.

    python benchmarks/sweep_voice_validation.py default '{"method": "mcadams+pitch"}' speaker
    python benchmarks/sweep_voice_validation.py s05 '{"method": "mcadams+pitch", "pitch_norm_strength": 0.5}'

Emotion probes (each applied identically to original and anonymised features):
  emo8 / emo4            full features (log-mel / MFCC / F0 / energy statistics), as before
  emo8_norm / emo4_norm  the same, z-normalised per actor (= per anonymisation session under
                         speaker sessions) with the mean / std of all of that actor's utterances
                         (all 8 emotions, no labels), before the class subset is taken
  emo8_pros_norm / ...   prosody only (edge_app/eval/emotion_probe.prosody_features), normalised so
  *_run                  "running" normalisation: utterances in session order, statistics of those
                         heard so far, shrunk to a prior from the training folds (what a live loop can do)
  mc_*                   AUG=k > 0: one classifier per fold trained on the training actors' original
                         features plus k de-identified copies (fresh sessions, sides aug1..augk), then
                         scored on the held-out actors' original AND de-identified audio (multi-condition)

Environment: DEEMO_DATA (default ../shared/data), JOBS (worker processes, default 2),
SWEEP_OUT (default .cache/voice_sweep.jsonl), EMOTION_ONLY=1 (skip the EERs), AUG (default 0).
Uses the benchmark's feature cache.
"""
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
import bench_voice_privacy as b
import numpy as np

from edge_app.eval.emotion_probe import running_prior, session_normalise
from edge_app.eval.speaker import eer, enrol, trial_scores

name, spec = sys.argv[1], json.loads(sys.argv[2])
sessions = sys.argv[3] if len(sys.argv) > 3 else "speaker"
emotion_only = os.environ.get("EMOTION_ONLY") == "1"
n_aug = int(os.environ.get("AUG", "0"))
b.METHODS[name] = spec
args = type("A", (), {})()
args.data = os.environ.get("DEEMO_DATA", str(ROOT.parent / "shared" / "data"))
args.jobs = int(os.environ.get("JOBS", "2"))
args.cache = str(ROOT / ".cache" / "voice_privacy")
args.input_gain_db, args.bang_dbfs = 0.0, None  # recorded levels, no bang (bench_voice_privacy's options)
ACT = range(1, 21)
clips = [c for c in b.load_clips(b.Path(args.data)) if c.actor in ACT]
enrol_clips = b.pick_enrolment(clips, ACT, 10, np.random.default_rng(0))
eset = {c.path for c in enrol_clips}
test_clips = [c for c in clips if c.path not in eset]
allp = {c.path for c in clips}
embp = set() if emotion_only else allp
t0 = time.time()
orig = b.run_jobs(args, "original", "test", clips, embp, allp)
if name == "original":
    test, enr = orig, orig
else:
    test = b.run_jobs(args, name, "test", clips, embp, allp, sessions)
    enr = None if emotion_only else b.run_jobs(args, name, "enrol", enrol_clips, eset, set(), sessions)
augs = [b.run_jobs(args, name, f"aug{k}", clips, set(), allp, sessions) for k in range(1, n_aug + 1)]

def priv(er, te):
    models = {a: enrol(np.stack([er[c.path]["emb"] for c in enrol_clips if c.actor == a])) for a in ACT}
    emb = np.stack([te[c.path]["emb"] for c in test_clips])
    spk = np.array([c.actor for c in test_clips])
    s, t = trial_scores(emb, spk, models)
    return eer(s, t)

G = np.array([c.actor for c in clips])
# session order for the running normalisation: the benchmark's per-actor clip order, the same for every row
ORDER = np.empty(len(clips), int)
for a in ACT:
    idx = np.flatnonzero(G == a)
    ORDER[idx[np.random.default_rng(b.session_seed(name, str(a), "test")).permutation(len(idx))]] = np.arange(len(idx))

def matrix(recs, key, norm, train_mask):
    X = np.stack([recs[c.path][key] for c in clips]).astype(np.float64)
    if norm == "session":
        return session_normalise(X, G)
    if norm == "running":
        return session_normalise(X, G, "running", ORDER, running_prior(X[train_mask], G[train_mask]))
    return X

def emo(recs, classes, key="feat", norm="none", train_sets=None, eval_sets=None):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    sel = np.array([classes is None or c.emotion in classes for c in clips])
    y = np.array([c.emotion for c in clips])
    train_sets = train_sets or [recs]
    eval_sets = eval_sets or {"": recs}
    out = {}
    for mname, make in (("lr0.1", lambda: LogisticRegression(C=0.1, max_iter=3000)), ("svm3", lambda: SVC(C=3.0))):
        correct = dict.fromkeys(eval_sets, 0)
        for k in range(5):
            te = (G - 1) % 5 == k
            trm = sel & ~te
            Xtr = np.concatenate([matrix(r, key, norm, ~te)[trm] for r in train_sets])
            m = make_pipeline(StandardScaler(), make()).fit(Xtr, np.concatenate([y[trm]] * len(train_sets)))
            for ek, er in eval_sets.items():
                correct[ek] += (m.predict(matrix(er, key, norm, ~te)[sel & te]) == y[sel & te]).sum()
        for ek, v in correct.items():
            out[mname + (f"_{ek}" if ek else "")] = v / sel.sum()
    return out

res = {"name": name, "spec": spec, "sessions": sessions}
if not emotion_only:
    res["eer_lazy"], res["eer_semi"] = priv(orig, test), priv(enr, test)
for tag, cls in (("8", None), ("4", b.FOUR_CLASSES)):
    res[f"emo{tag}"] = emo(test, cls)
    res[f"emo{tag}_norm"] = emo(test, cls, "feat", "session")
    res[f"emo{tag}_run"] = emo(test, cls, "feat", "running")
    res[f"emo{tag}_pros_norm"] = emo(test, cls, "pfeat", "session")
    res[f"emo{tag}_pros_run"] = emo(test, cls, "pfeat", "running")
    if augs:
        for key, norm in (("feat", "session"), ("pfeat", "session")):
            res[f"mc{tag}_{key}_{norm}"] = emo(None, cls, key, norm, [orig] + augs, {"orig": orig, "deid": test})
cpu = sum(test[c.path]["cpu"] for c in clips)
dur = sum(test[c.path]["dur"] for c in clips)
res["rtf"] = cpu / dur
res["wall"] = time.time() - t0
print(json.dumps(res))
out = Path(os.environ.get("SWEEP_OUT", ROOT / ".cache" / "voice_sweep.jsonl"))
out.parent.mkdir(parents=True, exist_ok=True)
with open(out, "a") as f:
    f.write(json.dumps(res) + "\n")
