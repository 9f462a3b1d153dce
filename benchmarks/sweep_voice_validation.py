"""Validation sweep for the voice de-identifier (how its default was chosen).

Never touches the test actors 21-24. Privacy: Resemblyzer EER (lazy / semi) over actors
1-20 (a pre-trained verifier, nothing trained on RAVDESS). Emotion: 5-fold actor-grouped
cross-validation over actors 1-20 with fixed classifiers (the same for original and
anonymised features). One variant per run; results are appended to --out as JSON lines.

    python benchmarks/sweep_voice_validation.py default '{"method": "mcadams+pitch"}' speaker
    python benchmarks/sweep_voice_validation.py s05 '{"method": "mcadams+pitch", "pitch_norm_strength": 0.5}'

Environment: DEEMO_DATA (default ../shared/data), JOBS (worker processes, default 2),
SWEEP_OUT (default .cache/voice_sweep.jsonl). Uses the benchmark's feature cache.
"""
import json, os, sys, time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1"); os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
import numpy as np
import bench_voice_privacy as b
from edge_app.eval.speaker import eer, enrol, trial_scores

name, spec = sys.argv[1], json.loads(sys.argv[2])
sessions = sys.argv[3] if len(sys.argv) > 3 else "speaker"
b.METHODS[name] = spec
args = type("A", (), {})()
args.data = os.environ.get("DEEMO_DATA", str(ROOT.parent / "shared" / "data"))
args.jobs = int(os.environ.get("JOBS", "2")); args.cache = str(ROOT / ".cache" / "voice_privacy")
ACT = range(1, 21)
clips = [c for c in b.load_clips(b.Path(args.data)) if c.actor in ACT]
rng = np.random.default_rng(0)
enrol_clips = []
for a in ACT:
    own = [c for c in clips if c.actor == a]
    enrol_clips += [own[i] for i in sorted(rng.choice(len(own), 10, replace=False))]
eset = {c.path for c in enrol_clips}
test_clips = [c for c in clips if c.path not in eset]
allp = {c.path for c in clips}
t0 = time.time()
orig = b.run_jobs(args, "original", "test", clips, allp, allp)
if name == "original":
    test, enr = orig, orig
else:
    test = b.run_jobs(args, name, "test", clips, allp, allp, sessions)
    enr = b.run_jobs(args, name, "enrol", enrol_clips, eset, set(), sessions)

def priv(er, te):
    models = {a: enrol(np.stack([er[c.path]["emb"] for c in enrol_clips if c.actor == a])) for a in ACT}
    emb = np.stack([te[c.path]["emb"] for c in test_clips]); spk = np.array([c.actor for c in test_clips])
    s, t = trial_scores(emb, spk, models)
    return eer(s, t)

def emo(recs, classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    use = [c for c in clips if classes is None or c.emotion in classes]
    X = np.stack([recs[c.path]["feat"] for c in use]); y = np.array([c.emotion for c in use])
    g = np.array([c.actor for c in use])
    out = {}
    for mname, make in (("lr0.1", lambda: LogisticRegression(C=0.1, max_iter=3000)), ("svm3", lambda: SVC(C=3.0))):
        correct = 0
        for k in range(5):
            te = (g - 1) % 5 == k
            m = make_pipeline(StandardScaler(), make()).fit(X[~te], y[~te])
            correct += (m.predict(X[te]) == y[te]).sum()
        out[mname] = correct / len(y)
    return out

res = {"name": name, "spec": spec, "sessions": sessions,
       "eer_lazy": priv(orig, test), "eer_semi": priv(enr, test),
       "emo8": emo(test, None), "emo4": emo(test, b.FOUR_CLASSES)}
cpu = sum(test[c.path]["cpu"] for c in clips); dur = sum(test[c.path]["dur"] for c in clips)
res["rtf"] = cpu / dur; res["wall"] = time.time() - t0
print(json.dumps(res))
out = Path(os.environ.get("SWEEP_OUT", ROOT / ".cache" / "voice_sweep.jsonl"))
out.parent.mkdir(parents=True, exist_ok=True)
with open(out, "a") as f:
    f.write(json.dumps(res) + "\n")
