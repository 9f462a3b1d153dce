"""Audio / body encoders at run time: de-identified cues in, LLM-space tokens out.

    enc = AudioEncoder()                       # models/ next to the package, backend auto
    out = enc.encode(deid_audio)               # DeidAudio only, never raw audio
    out.tokens  # (K, 576) float32, ready for LlmSession embedding injection
    out.probs   # class probabilities over out.labels

Feature extraction is `edge_app.encoders.features`, the very code training used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from edge_app.encoders.backend import Backend, Runner, open_runner
from edge_app.encoders.dereverb import dereverberate
from edge_app.encoders.features import (
    AUDIO_DIM,
    BODY_DIM,
    BODY_FPS,
    SR,
    SessionLevels,
    audio_features_and_levels,
    body_features,
    relative_to_session,
)
from edge_app.errors import ModelError, UsageError
from edge_app.records import LABELS, DeidAudio

log = logging.getLogger(__name__)

DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "models"


@dataclass
class EncoderOptions:
    """Where the models are and how they run."""

    # folder with *.onnx, optional *.engine and manifest.json
    models_dir: Path = DEFAULT_MODELS
    # "auto" | "tensorrt" | "cuda" | "cpu" (see edge_app.encoders.backend)
    backend: str = "auto"
    # on CPU, run the statically quantised INT8 model (smaller, usually faster)
    int8: bool = False
    # ORT intra-op threads
    threads: int = 1
    # shortest input worth encoding, seconds; shorter windows return None
    min_duration_s: float = 0.3
    # once one voice session (a file, or a live run) has had the manifest's `min_windows`
    # speech windows, the voice label comes from the session head, which reads each
    # window relative to the speaker's running average (export/voice_session.py);
    # False: every window on its own, as for a single short clip
    voice_session: bool = True
    # the session's levels: the plain mean of its first N speech windows, then an
    # exponential average over about the last N, so a new speaker or room is followed;
    # 10 was chosen on validation speakers, alone and after another speaker in the same
    # session (benchmarks/voice_session_switch.py)
    voice_session_horizon: int = 10
    # fuse the Whisper-states head (manifest models.audio.states_head) into the voice
    # scores: +5 to +9 points 8-class on RAVDESS test speakers for about 50 ms more per
    # window on one core (README "Whisper encoder states"); False: the encoders alone
    whisper_states: bool = True
    # experimental: WPE dereverberation of the de-identified audio before both audio encoders
    # (edge_app/encoders/dereverb.py, about 0.03 x real time on one core). Off: the shipped
    # models were trained without it, and at inference only it made no measurable difference
    # on the test speakers, reverberant room included (benchmarks/results/dereverb.md)
    dereverb: bool = False


@dataclass(frozen=True)
class EncoderOutput:
    tokens: np.ndarray = field(repr=False)  # (K, llm_dim) float32
    probs: np.ndarray  # (len(labels),)
    labels: tuple[str, ...]
    backend: str
    # "window": the window encoder's own head; "session": the voice session head
    # (after `session_windows` speech windows of this session)
    source: str = "window"
    session_windows: int = 0

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    def probs8(self) -> np.ndarray:
        """Probabilities in `edge_app.records.LABELS` order (classes the model lacks = 0)."""
        out = np.zeros(len(LABELS), np.float32)
        for lab, p in zip(self.labels, self.probs):
            out[LABELS.index(lab)] = p
        return out


class _Encoder:
    name = ""
    feature_dim = 0  # the feature channels this code computes for the model

    def __init__(self, options: EncoderOptions | None = None) -> None:
        self.options = options or EncoderOptions()
        d = Path(self.options.models_dir)
        manifest = d / "manifest.json"
        if not manifest.exists():
            raise UsageError(f"no {manifest}: run `python -m export.build_engines` first")
        self.manifest = json.loads(manifest.read_text())
        entry = self.manifest["models"][self.name]
        self.entry = entry
        takes = entry.get("input", {}).get("shape", [None, None, self.feature_dim])[2]
        if int(takes) != self.feature_dim:  # e.g. models built before the speech-embedding channels
            raise ModelError(f"{manifest}: the {self.name} encoder takes {takes} feature channels, this version "
                             f"computes {self.feature_dim}: rebuild with `python -m export.build_engines`")
        self.labels: tuple[str, ...] = tuple(entry["labels"])
        onnx = d / (entry["onnx_int8"] if self.options.int8 and entry.get("onnx_int8") else entry["onnx"])
        engine = d / entry["engine"] if entry.get("engine") else None
        self.runner: Runner = open_runner(onnx, engine, Backend(self.options.backend), self.options.threads)

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def token_width(self) -> int:
        """Width of the projected tokens: the n_embd of the LLM the projector was trained for."""
        return int(self.entry["outputs"]["tokens"][1])

    def _run(self, feats: np.ndarray) -> EncoderOutput:
        tokens, probs = self.runner.run(feats[None])
        return EncoderOutput(tokens.astype(np.float32), probs.astype(np.float32), self.labels, self.backend)


def fuse_states(probs: np.ndarray, states_logp: np.ndarray, weight: float) -> np.ndarray:
    """Class probabilities (..., C) fused with the Whisper-states head's log-probabilities by
    log-linear pooling: softmax((log probs + weight x states log-probs) / (1 + weight)), a
    weighted geometric mean of the two classifiers (weight 0: probs unchanged). Same argmax
    as their plain product (which chose the weight on validation), but not sharper than
    either: the product of two confident heads was over-confident
    (benchmarks/results/score_calibration.md)."""
    w = float(weight)
    z = (np.log(np.asarray(probs, np.float64) + 1e-9) + w * np.asarray(states_logp, np.float64)) / (1.0 + w)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


class StatesHead:
    """Linear classifier on pooled Whisper encoder states (edge_app.encoders.whisper),
    export/states_head.py: (POOLED_DIM,) -> class log-probabilities. Tiny: ONNX Runtime
    on the CPU whatever the backend. Its weights in the fusion, per audio model, are in the
    manifest (models.audio.states_head.weight, models.audio_session.states_weight)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        from edge_app.encoders import whisper

        whisper.model_files()  # a missing Whisper package fails here, at start-up, in one line
        whisper.runtime_encoder()  # read the weights and build the ONNX session now (cached), not on the first window
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        width = self.session.get_inputs()[0].shape[-1]
        if width != whisper.POOLED_DIM:  # fitted on another Whisper or depth (tiny.en: 3072, base's 6 layers: 6144)
            raise ModelError(f"{path}: this states head reads {width} numbers, but {whisper.MODEL_NAME} "
                             f"({whisper.DEPTH} layers) gives "
                             f"{whisper.POOLED_DIM}; rebuild it with `python -m export.states_head`")

    def logp(self, samples: np.ndarray) -> np.ndarray:
        """Log-probabilities for 16 kHz de-identified audio."""
        from edge_app.encoders.whisper import pooled_states

        return self.session.run(["logp"], {"states": pooled_states(samples)[None]})[0][0]


class AudioEncoder(_Encoder):
    """De-identified speech window -> tokens + 8-class emotion probabilities.

    Keeps the running levels of the current voice session; call `reset_session()`
    whenever the de-identifier starts a new one (a new file)."""

    name = "audio"
    feature_dim = AUDIO_DIM

    def __init__(self, options: EncoderOptions | None = None) -> None:
        super().__init__(options)
        self.levels = SessionLevels(self.options.voice_session_horizon)
        self.session_head: SessionHead | None = None
        if self.options.voice_session and SessionHead.name in self.manifest["models"]:
            self.session_head = SessionHead(self.options)
        sh = self.entry.get("states_head") if self.options.whisper_states else None
        self.states_head = StatesHead(Path(self.options.models_dir) / sh["onnx"]) if sh else None
        self.states_weight = float(sh["weight"]) if sh else 0.0

    def reset_session(self) -> None:
        self.levels.reset()

    def encoder_input(self, audio: DeidAudio) -> np.ndarray:
        """The 16 kHz samples both audio encoders read (dereverberated if asked)."""
        x = np.asarray(audio.samples, np.float32)
        if audio.sr != SR:
            x = resample_poly(x, SR, int(audio.sr)).astype(np.float32)
        return dereverberate(x) if self.options.dereverb else x

    def encode(self, audio: DeidAudio) -> EncoderOutput | None:
        if not isinstance(audio, DeidAudio):
            raise TypeError(f"AudioEncoder takes DeidAudio (de-identified), got {type(audio).__name__}")
        if audio.duration < self.options.min_duration_s:
            return None
        x = self.encoder_input(audio)
        feats, levels = audio_features_and_levels(x)
        out = self._run(feats)
        states_logp = self.states_head.logp(x) if self.states_head else None
        if states_logp is not None:
            out = replace(out, probs=fuse_states(out.probs, states_logp, self.states_weight))
        self.levels.add(levels)
        head = self.session_head
        if head is None or self.levels.windows < head.min_windows:
            return replace(out, session_windows=self.levels.windows)
        rel = head._run(relative_to_session(feats, levels, self.levels.mean()))
        if states_logp is not None:
            rel = replace(rel, probs=fuse_states(rel.probs, states_logp, head.states_weight))
        # the tokens stay the window encoder's: the LLM was aligned and tuned on those
        return replace(out, probs=rel.probs, source="session", session_windows=self.levels.windows)


class SessionHead(_Encoder):
    """The voice session head (classification only), see export/voice_session.py."""

    name = "audio_session"
    feature_dim = AUDIO_DIM

    def __init__(self, options: EncoderOptions | None = None) -> None:
        super().__init__(options)
        self.min_windows = int(self.entry.get("min_windows", 1))
        # the label fusion's prior weight while this head answers, chosen with the default
        # adapter (export/voice_session.choose_prior_weight); None: not recorded
        pw = self.entry.get("prior_weight", {}).get("value")
        self.prior_weight: float | None = None if pw is None else float(pw)
        # this head's weight for the window encoder's Whisper-states head (0: not fused)
        self.states_weight = float(self.entry.get("states_weight", 0.0))


class BodyEncoder(_Encoder):
    """Pose samples (MediaPipe-33, head already masked) -> tokens + 4-class probabilities."""

    name = "body"
    feature_dim = BODY_DIM

    def encode(self, samples: Sequence[object]) -> EncoderOutput | None:
        grid = resample_to_fps(samples, BODY_FPS)
        if len(grid) * (1.0 / BODY_FPS) < self.options.min_duration_s:
            return None
        return self._run(body_features(grid))


def resample_to_fps(samples: Sequence[object], fps: float) -> list[object]:
    """Nearest sample at each 1/fps step (the model was trained on a 10 fps grid)."""
    if not samples:
        return []
    t = np.array([float(s.t) for s in samples])
    grid = np.arange(t[0], t[-1] + 0.5 / fps, 1.0 / fps)
    idx = np.clip(np.searchsorted(t, grid), 0, len(t) - 1)
    prev = np.clip(idx - 1, 0, len(t) - 1)
    idx = np.where(np.abs(t[prev] - grid) < np.abs(t[idx] - grid), prev, idx)
    return [samples[i] for i in idx]
