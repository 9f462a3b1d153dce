"""RAVDESS -> augmented, DE-IDENTIFIED audio -> cached frame features (.npy).

Chain per utterance (what a device sees): room (synthetic RIR) -> microphone
(gain, band-limiting, codec-like low-pass) -> noise -> VoiceDeidentifier with
random per-utterance parameters -> `edge_app.encoders.features.audio_features`, and the
pooled hidden states of Whisper's encoder on the same audio (`edge_app.encoders.whisper`).
Validation / test copies get no augmentation, only the de-identifier.
Raw audio is only read here; what is cached (and what calibration/ keeps) are features.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python export/<name>.py`: the repo root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import csv
import dataclasses
import functools
import hashlib
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from edge_app.encoders.features import SR, audio_features, audio_features_and_levels
from edge_app.encoders.whisper import N_LAYERS, POOLED_DIM, pooled_states
from edge_app.records import LABELS
from export import default_data

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ACTORS = tuple(range(1, 19))
VAL_ACTORS = (19, 20)
TEST_ACTORS = (21, 22, 23, 24)
BABBLE_P = 0.3  # share of augmented copies with other people talking (training actors' clips)


@dataclass(frozen=True)
class Utterance:
    path: Path
    label: int
    actor: int
    statement: str

    @property
    def stem(self) -> str:
        return self.path.stem


def load_ravdess(data: Path) -> list[Utterance]:
    root = data / "ravdess_speech"
    with open(root / "labels.csv", newline="") as f:
        return [
            Utterance(root / r["path"], LABELS.index(r["emotion"]), int(r["actor"]), r["statement"])
            for r in csv.DictReader(f)
        ]


# actor-grouped cross-validation on the development actors (train + validation, 1-20): five
# folds of four; the benchmarks that compare recipes this way share them
CV_FOLDS = [list(range(k, k + 4)) for k in range(1, 21, 4)]


def split_of(actor: int) -> str:
    return "train" if actor in TRAIN_ACTORS else "val" if actor in VAL_ACTORS else "test"


def cached_copies(actor: int, train_copies: int) -> range:
    """The copies cached for an actor's clips: 0 (clean) for everyone, 1..train_copies
    (augmented) too for training actors."""
    return range(train_copies + 1) if split_of(actor) == "train" else range(1)


def room_impulse_response(rng: np.random.Generator, rt60: float | None = None) -> np.ndarray:
    """Synthetic room impulse response: direct path + exponentially decaying noise tail
    (reverberation time `rt60` seconds, drawn from 0.15-0.8 when not given)."""
    rt60 = rng.uniform(0.15, 0.8) if rt60 is None else rt60
    n = int(SR * rt60)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.003 * SR)] = 0.0  # first reflections arrive a few ms late
    h = tail * rng.uniform(0.1, 0.5)
    h[0] = 1.0
    return h / np.sqrt(np.sum(h**2))


def babble_talkers(src: str) -> tuple[str, ...]:
    """The clips that may talk over `src` in the babble augmentation: every training actor's
    but `src`'s own speaker's (RAVDESS layout: <root>/Actor_NN/<clip>.flac)."""
    return _babble_talkers(str(Path(src).parents[1]), int(Path(src).parent.name.split("_")[-1]))


@functools.lru_cache(maxsize=32)
def _babble_talkers(root: str, actor: int) -> tuple[str, ...]:
    return tuple(str(p) for a in TRAIN_ACTORS if a != actor
                 for p in sorted(Path(root, f"Actor_{a:02d}").glob("*.flac")))


def babble(x: np.ndarray, rng: np.random.Generator, talkers: Sequence[str], n: int, snr_db: float) -> np.ndarray:
    """`x` with `n` clips drawn from `talkers` talking over it, each at a random offset,
    the sum `snr_db` below it."""
    noise = np.zeros(len(x))
    for path in rng.choice(len(talkers), n, replace=False):
        t = read_clip(talkers[path]).astype(np.float64)
        t = np.roll(np.pad(t, (0, max(0, len(x) - len(t))))[: len(x)], int(rng.integers(len(x))))
        noise += t / (np.std(t) + 1e-9)
    p = np.mean(x**2) + 1e-12
    return x + noise * np.sqrt(p / (np.mean(noise**2) + 1e-12) / 10 ** (snr_db / 10))


def augment(x: np.ndarray, rng: np.random.Generator, talkers: Sequence[str] = (),
            babble_rng: np.random.Generator | None = None) -> np.ndarray:
    """Room, channel and noise conditions drawn at random (train copies only); with
    `talkers`, sometimes other people talking in the same room (babble: which clips and
    where they start come from `babble_rng`, default `rng`, so a session can keep one
    condition while its babble changes from clip to clip)."""
    y = x.astype(np.float64)
    if talkers and rng.random() < BABBLE_P:  # before the room: the talkers are in it too
        n, snr = int(rng.integers(1, 7)), rng.uniform(0, 20)
        y = babble(y, babble_rng or rng, talkers, n, snr)
    if rng.random() < 0.5:
        y = fftconvolve(y, room_impulse_response(rng))[: len(y)]
    if rng.random() < 0.5:  # band-limited microphone / speaker
        lo, hi = rng.uniform(80, 300), rng.uniform(3400, 7500)
        y = sosfilt(butter(4, [lo, hi], btype="band", fs=SR, output="sos"), y)
    if rng.random() < 0.2:  # narrow-band codec: 8 kHz round trip
        y = resample_poly(resample_poly(y, 1, 2), 2, 1)[: len(y)]
    if rng.random() < 0.6:  # white / brown-ish noise at 5-35 dB SNR
        noise = rng.standard_normal(len(y))
        if rng.random() < 0.5:
            noise = np.cumsum(noise)
            noise -= np.convolve(noise, np.ones(400) / 400, mode="same")
        snr = rng.uniform(5, 35)
        p_sig = np.mean(y**2) + 1e-12
        y = y + noise * np.sqrt(p_sig / (np.mean(noise**2) + 1e-12) / 10 ** (snr / 10))
    y *= 10 ** (rng.uniform(-15, 6) / 20)  # gain
    peak = np.max(np.abs(y))
    return (y / peak * 0.99 if peak > 0.99 else y).astype(np.float32)


@functools.lru_cache(maxsize=1)
def augment_fingerprint() -> str:
    """Short hash of the augmentation's code (`augment` and what it calls): augmented
    copies are cached under it, so a change to it recomputes them and reuses copy 0."""
    import inspect

    src = "".join(inspect.getsource(f) for f in (augment, babble, room_impulse_response, babble_talkers, _babble_talkers))
    return hashlib.sha1((code_only(src) + f"{BABBLE_P}").encode()).hexdigest()[:6]


def deidentify(x: np.ndarray, seed: int, **options):
    """The project's voice de-identifier, one session with random parameters from `seed`
    (`options`: VoiceDeidOptions fields other than the defaults, for benchmarks)."""
    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
    from edge_app.records import AudioChunk

    return VoiceDeidentifier(VoiceDeidOptions(seed=seed, **options)).process(AudioChunk(0.0, x, SR))


def read_clip(path: str) -> np.ndarray:
    """A RAVDESS file as mono float32 at SR."""
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != SR:
        x = resample_poly(x, SR, sr).astype(np.float32)
    return x


def deidentified_copy(src: str, seed: int, aug: bool) -> np.ndarray:
    """One cached copy's audio: the clip, augmented (train copies), de-identified, all
    drawn from `seed` (every cache of that copy sees the same audio)."""
    x = read_clip(src)
    rng = np.random.default_rng(seed)
    if aug:
        x = augment(x, rng, babble_talkers(src))
    return deidentify(x, seed=int(rng.integers(2**31))).samples


def _job(args: tuple[str, str, str, int, bool]) -> str:
    """One utterance: augment (train copies), de-identify, then whichever of its cached
    frame features and pooled Whisper states is missing (the same audio for both)."""
    src, dst, states_dst, seed, aug = args
    if os.path.exists(dst) and os.path.exists(states_dst):
        return dst
    y = deidentified_copy(src, seed, aug)
    if not os.path.exists(dst):
        _save(dst, audio_features(y).astype(np.float16))
    if not os.path.exists(states_dst):
        _save(states_dst, pooled_states(y, depth=N_LAYERS))  # all layers: see states_path
    return dst


def _save(dst: str, a: np.ndarray) -> None:
    tmp = dst + ".tmp.npy"
    np.save(tmp, a)
    os.replace(tmp, dst)


@functools.lru_cache(maxsize=1)
def deid_fingerprint() -> str:
    """Short hash of the voice de-identifier as training runs it (default options and
    code). Cached features live under it, so changing the de-identifier (its default
    method, a parameter, its code) recomputes them instead of reusing stale ones."""
    from edge_app.deid.voice import SOURCE_FILES, VoiceDeidOptions

    h = hashlib.sha1(json.dumps(dataclasses.asdict(VoiceDeidOptions()), sort_keys=True, default=str).encode())
    for name in SOURCE_FILES:  # the code, not its prose: a rebuilt cache costs about 40 minutes
        h.update(code_only((ROOT / "edge_app" / "deid" / name).read_text()).encode())
    return h.hexdigest()[:10]


def code_only(source: str) -> str:
    """The code of a Python source without its comments and docstrings (the AST with the
    docstrings removed): a fingerprint of it ignores edits to the prose."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@functools.lru_cache(maxsize=1)
def features_fingerprint() -> str:
    """Short hash of the feature code (`audio_features` and the speech embedding it
    appends): cached features are recomputed when either's code changes (not its prose:
    a rebuilt cache costs about 12 minutes)."""
    return code_fingerprint("edge_app/encoders", ("features.py", "speech_embedding.py"))


def code_fingerprint(folder: str, names: tuple[str, ...]) -> str:
    """Six hex digits of sha1 over the code (not the prose) of `names` in `folder`, a path
    from the repository root, in that order."""
    h = hashlib.sha1()
    for name in names:
        h.update(code_only((ROOT / folder / name).read_text()).encode())
    return h.hexdigest()[:6]


def cache_key() -> str:
    """What the cached features depend on: the de-identifier and the feature code."""
    return f"{deid_fingerprint()}-f{features_fingerprint()}"


@functools.lru_cache(maxsize=1)
def states_fingerprint() -> str:
    """Short hash of what the pooled Whisper states ARE, measured instead of read from the
    code: the states of a fixed 3 s test signal, summed in 8 blocks, to 3 significant
    digits. A change to the weights, the front end or the encoder's arithmetic changes it;
    a refactor or a new function in whisper.py does not (rebuilding these caches costs
    about 40 minutes). Another machine's BLAS may round differently once in a while: that
    only rebuilds the cache."""
    t = np.arange(3 * SR) / SR
    chirp = np.sin(2 * np.pi * (150 + 100 * t) * t) * (1.2 + np.sin(2 * np.pi * 3 * t))
    x = 0.2 * chirp + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    blocks = pooled_states(x.astype(np.float32), depth=N_LAYERS).astype(np.float64).reshape(8, -1).sum(1)
    return hashlib.sha1(np.array([f"{b:.3g}" for b in blocks]).tobytes()).hexdigest()[:6]


def copy_dir(copy: int) -> str:
    """A cached copy's folder: copy 0 is the clean clip, the others are augmented and so
    also depend on the augmentation's code."""
    return f"copy{copy}" if copy == 0 else f"copy{copy}-a{augment_fingerprint()}"


def feature_path(cache: Path, u: Utterance, copy: int) -> Path:
    return cache / "audio" / f"deid-{cache_key()}" / copy_dir(copy) / f"{u.stem}.npy"


def states_path(cache: Path, u: Utterance, copy: int) -> Path:
    """The pooled Whisper states of the same de-identified copy as `feature_path`'s: of all
    N_LAYERS layers, cut to the runtime's whisper.DEPTH when loaded (the first k states do
    not depend on the depth), so a change of depth needs no pass of the encoder over the cache."""
    return cache / "audio" / f"whisper-{deid_fingerprint()}-w{states_fingerprint()}" / copy_dir(copy) / f"{u.stem}.npy"


def build_cache(
    utts: list[Utterance], cache: Path, train_copies: int, workers: int = 2, seed: int = 0, progress: bool = True
) -> None:
    """Cache copy 0 (clean, de-identified) for every utterance and augmented copies 1..n for
    train: frame features and pooled Whisper states of the same de-identified audio."""
    jobs = []
    for u in utts:
        copies = cached_copies(u.actor, train_copies)
        for c in copies:
            dst, states_dst = feature_path(cache, u, c), states_path(cache, u, c)
            dst.parent.mkdir(parents=True, exist_ok=True)
            states_dst.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(u.path), str(dst), str(states_dst), clip_seed(seed, u, c), c > 0))
    todo = [j for j in jobs if not (os.path.exists(j[1]) and os.path.exists(j[2]))]
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="audio features (de-identified)", disable=not progress)
    if workers <= 1:
        for j in todo:
            _job(j)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as ex:
            for _ in ex.map(_job, todo, chunksize=8):
                bar.update()
    bar.close()


def session_feature_path(cache: Path, u: Utterance, copy: int) -> Path:
    return cache / "audio" / f"sessions-{cache_key()}-w{states_fingerprint()}" / copy_dir(copy) / f"{u.stem}.npz"


def session_order(seed: int, actor: int, copy: int, n: int) -> tuple[int, np.ndarray]:
    """A session's de-identifier seed and the order its n clips are heard in (the cache
    builder and the loader must agree on both)."""
    s = zlib.crc32(f"{seed}:session:{actor}:{copy}".encode())
    return s, np.random.default_rng(s).permutation(n)


def sessions_heard(utts: list[Utterance], seed: int, copies: Callable[[int], Iterable[int]]
                   ) -> Iterator[tuple[int, int, int, list[Utterance]]]:
    """(actor, copy, de-identifier seed, the actor's clips in the order heard) of every
    speaker session of `utts`, actors in order, `copies(actor)` each: the one ordering the
    session caches are built and read in."""
    by_actor: dict[int, list[Utterance]] = {}
    for u in utts:
        by_actor.setdefault(u.actor, []).append(u)
    for actor, us in sorted(by_actor.items()):
        for c in copies(actor):
            s, order = session_order(seed, actor, c, len(us))
            yield actor, c, s, [us[i] for i in order]


def session_audio(clips: list[tuple[str, str]], seed: int, aug: bool) -> Iterator[tuple[str, np.ndarray]]:
    """(dst, de-identified audio) of each clip not yet at its dst, the clips heard in the
    given order through ONE de-identifier session (one warp, one running F0 estimate: what
    a device does while one person talks); with `aug`, one room / microphone / noise
    condition for the whole session. Clips already cached are still de-identified (the
    session's state depends on every earlier clip)."""
    from edge_app.deid.voice import VoiceDeidentifier, VoiceDeidOptions
    from edge_app.records import AudioChunk

    deid = VoiceDeidentifier(VoiceDeidOptions(seed=seed))
    for i, (src, dst) in enumerate(clips):
        x = read_clip(src)
        if aug:  # same draws = same channel all session; other talkers' clips change
            x = augment(x, np.random.default_rng(seed), babble_talkers(src), np.random.default_rng([seed, i]))
        y = deid.process(AudioChunk(0.0, x, SR)).samples
        if not os.path.exists(dst):
            yield dst, y


def _session_job(args: tuple[list[tuple[str, str]], int, bool]) -> int:
    """One speaker's session (`session_audio`): frame features, levels and pooled states."""
    clips, seed, aug = args
    for dst, y in session_audio(clips, seed, aug):
        feats, levels = audio_features_and_levels(y)
        tmp = dst + ".tmp.npz"
        np.savez(tmp, feats=feats.astype(np.float16), levels=levels, states=pooled_states(y, depth=N_LAYERS))
        os.replace(tmp, dst)
    return len(clips)


def session_jobs(utts: list[Utterance], train_copies: int, seed: int, dst: Callable[[Utterance, int], Path]
                 ) -> list[tuple[list[tuple[str, str]], int, bool]]:
    """(clips as (source, dst) in the order heard, session seed, augmented) of every session
    copy (one per actor, train actors `train_copies` more) with any dst missing; makes
    the dst folders."""
    jobs = []
    for _, c, s, heard in sessions_heard(utts, seed, lambda actor: cached_copies(actor, train_copies)):
        clips = [(str(u.path), str(dst(u, c))) for u in heard]
        if not all(os.path.exists(d) for _, d in clips):
            Path(clips[0][1]).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((clips, s, c > 0))
    return jobs


def clip_seed(seed: int, u: Utterance, copy: int) -> int:
    """The seed of one per-clip copy (augmentation and de-identifier draws)."""
    return zlib.crc32(f"{seed}:{u.stem}:{copy}".encode())


def build_session_cache(
    utts: list[Utterance], cache: Path, train_copies: int, workers: int = 2, seed: int = 0, progress: bool = True
) -> None:
    """Per actor and copy, one de-identification session over all of the actor's clips
    in a random order; features + levels (.npz). Copy 0 is clean, train copies 1..n
    get one random channel each. A session is redone as a whole if any clip is missing
    (its de-identifier state depends on every earlier clip)."""
    jobs = session_jobs(utts, train_copies, seed, lambda u, c: session_feature_path(cache, u, c))
    for clips, _, _ in jobs:
        for _, d in clips:
            Path(d).unlink(missing_ok=True)
    from tqdm import tqdm

    bar = tqdm(total=sum(len(j[0]) for j in jobs), desc="audio sessions (de-identified)", disable=not progress)
    if workers <= 1:
        for j in jobs:
            bar.update(_session_job(j))
    else:
        with ProcessPoolExecutor(workers) as ex:
            for n in ex.map(_session_job, jobs):
                bar.update(n)
    bar.close()


@functools.lru_cache(maxsize=1)
def mel_fingerprint() -> str:
    """Short hash of Whisper's log-mel front end (its code only)."""
    import inspect

    from edge_app.encoders import whisper

    src = "".join(code_only(inspect.getsource(f)) for f in (whisper.log_mel, whisper.mel_filters))
    return hashlib.sha1(src.encode()).hexdigest()[:6]


def mel_path(cache: Path, u: Utterance, copy: int, session: bool = False) -> Path:
    """Whisper log-mel (float16) of the same de-identified copy as `feature_path`'s, or with
    `session` as `session_feature_path`'s: what export/whisper_tune.py fine-tunes on."""
    kind = "sessmel" if session else "mel"
    return cache / "audio" / f"{kind}-{deid_fingerprint()}-m{mel_fingerprint()}" / copy_dir(copy) / f"{u.stem}.npy"


def _mel_job(args: tuple[str, str, int, bool]) -> int:
    src, dst, seed, aug = args
    from edge_app.encoders.whisper import log_mel

    _save(dst, log_mel(deidentified_copy(src, seed, aug)).astype(np.float16))
    return 1


def _session_mel_job(args: tuple[list[tuple[str, str]], int, bool]) -> int:
    from edge_app.encoders.whisper import log_mel

    clips, seed, aug = args
    for dst, y in session_audio(clips, seed, aug):
        _save(dst, log_mel(y).astype(np.float16))
    return len(clips)


def build_mel_cache(utts: list[Utterance], session_utts: list[Utterance], cache: Path, train_copies: int,
                    workers: int = 2, seed: int = 0, progress: bool = True) -> None:
    """Whisper log-mels of every per-clip copy (as `build_cache`) and session copy (as
    `build_session_cache`): the same de-identified audio, drawn from the same seeds."""
    clip_jobs = []
    for u in utts:
        for c in cached_copies(u.actor, train_copies):
            dst = mel_path(cache, u, c)
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                clip_jobs.append((str(u.path), str(dst), clip_seed(seed, u, c), c > 0))
    sessions = session_jobs(session_utts, train_copies, seed, lambda u, c: mel_path(cache, u, c, session=True))
    from tqdm import tqdm

    total = len(clip_jobs) + sum(len(j[0]) for j in sessions)
    with tqdm(total=total, desc="Whisper log-mels (de-identified)", disable=not progress) as bar, \
            ProcessPoolExecutor(max(1, workers)) as ex:
        for n in ex.map(_session_mel_job, sessions):
            bar.update(n)
        for n in ex.map(_mel_job, clip_jobs, chunksize=8):
            bar.update(n)


@dataclass
class Session:
    """One speaker's de-identified clips in the order the session heard them."""

    actor: int
    copy: int
    feats: list[np.ndarray]
    levels: np.ndarray  # (n, LEVELS_DIM)
    labels: np.ndarray
    stems: list[str]
    states: np.ndarray  # (n, whisper.POOLED_DIM) pooled Whisper states of each clip


def load_sessions(utts: list[Utterance], cache: Path, split: str, copies: range, seed: int = 0) -> list[Session]:
    out = []
    for actor, c, _, heard in sessions_heard([u for u in utts if split_of(u.actor) == split], seed, lambda actor: copies):
        paths = [session_feature_path(cache, u, c) for u in heard]
        if not all(p.exists() for p in paths):
            continue
        zs = [np.load(p) for p in paths]
        out.append(Session(actor, c, [z["feats"].astype(np.float32) for z in zs], np.stack([z["levels"] for z in zs]),
                           np.array([u.label for u in heard]), [u.stem for u in heard],
                           np.stack([z["states"][:POOLED_DIM] for z in zs])))  # fmt: skip
    return out


def load_split(utts: list[Utterance], cache: Path, split: str, copies: range) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    xs, ys, actors = [], [], []
    for u, c in split_items(utts, cache, split, copies):
        xs.append(np.load(feature_path(cache, u, c)).astype(np.float32))
        ys.append(u.label)
        actors.append(u.actor)
    return xs, np.array(ys), np.array(actors)


def split_items(utts: list[Utterance], cache: Path, split: str, copies: range) -> list[tuple[Utterance, int]]:
    """(utterance, copy) of every cached item of a split, in `load_split`'s order."""
    return [(u, c) for u in utts if split_of(u.actor) == split for c in copies if feature_path(cache, u, c).exists()]


def load_state(cache: Path, u: Utterance, copy: int) -> np.ndarray:
    """(whisper.POOLED_DIM,) pooled states of one cached copy, cut to the runtime's depth."""
    return np.load(states_path(cache, u, copy))[:POOLED_DIM]


def load_states(utts: list[Utterance], cache: Path, split: str, copies: range) -> np.ndarray:
    """(N, whisper.POOLED_DIM) pooled Whisper states, row for row with `load_split`."""
    rows = [load_state(cache, u, c) for u, c in split_items(utts, cache, split, copies)]
    return np.stack(rows) if rows else np.zeros((0, POOLED_DIM), np.float32)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=default_data(), help="shared data (default: $DEEMO_DATA, else ../shared/data)")
    ap.add_argument("--cache", type=Path, default=Path(__file__).parents[1] / ".cache/features")
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    build_cache(load_ravdess(a.data), a.cache, a.copies, a.workers)
