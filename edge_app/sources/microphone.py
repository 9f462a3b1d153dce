"""Raw audio capture: a PortAudio microphone (PyAudio), or an audio file replayed live.

Only `edge_app.deid` may use this module: it yields raw `AudioChunk`s.

    mic = open_microphone("default", clock)   # PortAudio default input device
    mic = open_microphone("2", clock)         # device index (see `list_input_devices`)
    mic = open_microphone("USB", clock)       # first input device whose name contains "USB"
    mic = open_microphone("speech.flac", clock)  # a file, at real-time pace
    chunk = mic.read()                         # AudioChunk (16 kHz mono float32) or None

Both kinds hand out mono float32 at 16 kHz in chunks of `chunk_s`, stamped with
the session clock. A microphone's stamps come from its sample count (no jitter),
anchored at the session time the stream started.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

import numpy as np
from scipy.signal import firwin, lfilter, lfilter_zi

from edge_app.errors import InputError, UsageError
from edge_app.records import AudioChunk
from edge_app.sources.media import read_audio

SR = 16_000
# Rates tried when a device cannot capture 16 kHz itself; each is a whole
# multiple of 16 kHz so the decimation below stays exact and stateful.
FALLBACK_RATES = (48_000, 32_000, 96_000)


class AudioSource:
    """What a microphone and a replayed file share."""

    description: str

    def read(self) -> AudioChunk | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class FileMicrophone(AudioSource):
    """An audio file (or a video's audio track) replayed in real time, chunk by chunk."""

    def __init__(
        self,
        path: str,
        clock: Callable[[], float],
        *,
        chunk_s: float = 0.1,
        loop: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        chunk = read_audio(path, SR)  # InputError for missing / broken files
        if chunk is None or len(chunk.samples) == 0:
            raise InputError(f"microphone {path}: file has no audio")
        self._samples = chunk.samples
        self.clock = clock
        self.loop = loop
        self.stop = stop or threading.Event()
        self.block = max(1, int(round(chunk_s * SR)))
        self.description = f"file {path} ({len(self._samples) / SR:.1f} s, replayed live)"
        self._pos = 0  # samples handed out so far (across loops)
        self._t0: float | None = None

    def read(self) -> AudioChunk | None:
        if self._t0 is None:
            self._t0 = self.clock()
        n = len(self._samples)
        if not self.loop and self._pos >= n:
            return None
        start = self._pos % n
        block = self._samples[start : start + self.block]
        t0 = self._t0 + self._pos / SR
        # A microphone delivers a chunk once its last sample was recorded.
        if self.stop.wait(max(0.0, t0 + len(block) / SR - self.clock())):
            return None
        self._pos += len(block)
        return AudioChunk(t0=t0, samples=block.copy(), sr=SR)

    def close(self) -> None:
        self._samples = np.zeros(0, np.float32)


class PortAudioMicrophone(AudioSource):
    """A live input device through PyAudio, read in blocking mode by one thread."""

    def __init__(
        self, device: str, clock: Callable[[], float], *, chunk_s: float = 0.1
    ) -> None:
        pyaudio = _import_pyaudio()
        self.clock = clock
        # PortAudio probes ALSA/JACK and prints a page of noise to fd 2; our
        # one-line errors say what matters.
        with _quiet_stderr():
            self._pa = pyaudio.PyAudio()
            try:
                info = _find_device(self._pa, device)
                self._stream, rate = _open_stream(self._pa, pyaudio, info, chunk_s)
            except BaseException:
                self._pa.terminate()
                raise
        self.description = f"microphone {info['name']!r} ({rate} Hz)"
        self._decimator = _Decimator(rate // SR) if rate != SR else None
        self._frames = int(round(chunk_s * rate))
        self._count = 0  # 16 kHz samples handed out
        self._t0: float | None = None

    def read(self) -> AudioChunk | None:
        try:
            if not self._stream.is_active():
                self._stream.start_stream()
            data = self._stream.read(self._frames, exception_on_overflow=False)
        except OSError as err:
            raise InputError(f"microphone stopped delivering audio ({err})") from None
        samples = np.frombuffer(data, dtype=np.float32)
        if self._decimator is not None:
            samples = self._decimator(samples)
        if self._t0 is None:  # the first block ended now
            self._t0 = self.clock() - len(samples) / SR
        chunk = AudioChunk(t0=self._t0 + self._count / SR, samples=samples.copy(), sr=SR)
        self._count += len(samples)
        return chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.stop_stream()
            self._stream.close()
        self._pa.terminate()


def open_microphone(
    spec: str,
    clock: Callable[[], float],
    *,
    chunk_s: float = 0.1,
    loop: bool = False,
    stop: threading.Event | None = None,
) -> AudioSource:
    """An existing file is replayed; anything else names a PortAudio input device."""
    if os.path.isfile(spec):
        return FileMicrophone(spec, clock, chunk_s=chunk_s, loop=loop, stop=stop)
    if _looks_like_path(spec):
        raise InputError(f"microphone {spec}: no such file")
    return PortAudioMicrophone(spec, clock, chunk_s=chunk_s)


def list_input_devices() -> list[tuple[int, str]]:
    """(index, name) of every PortAudio device that can record."""
    pyaudio = _import_pyaudio()
    with _quiet_stderr():
        pa = pyaudio.PyAudio()
    try:
        infos = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
        return [(int(d["index"]), str(d["name"])) for d in infos if d["maxInputChannels"] > 0]
    finally:
        pa.terminate()


# --- helpers ---------------------------------------------------------------------


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or os.path.splitext(spec)[1] != ""


def _import_pyaudio():
    try:
        import pyaudio
    except ImportError:
        raise UsageError(
            "live microphone capture needs PyAudio: pip install 'pyaudio>=0.2.13' "
            "(after apt-get install portaudio19-dev), or use --mic none"
        ) from None
    return pyaudio


def _find_device(pa, spec: str) -> dict:
    hint = " (list devices with `arecord -l`; use --mic none for video only)"
    if spec == "default":
        try:
            return pa.get_default_input_device_info()
        except OSError:
            raise InputError(f"microphone default: no input device available{hint}") from None
    infos = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    inputs = [d for d in infos if d["maxInputChannels"] > 0]
    if spec.isdigit():
        found = [d for d in inputs if int(d["index"]) == int(spec)]
    else:
        found = [d for d in inputs if spec.lower() in str(d["name"]).lower()]
    if not found:
        raise InputError(f"microphone {spec}: no such input device{hint}")
    return found[0]


def _open_stream(pa, pyaudio, info: dict, chunk_s: float):
    """Open mono float32 at 16 kHz, else at the first rate that is a multiple of it."""
    last: Exception | None = None
    for rate in (SR, *FALLBACK_RATES):
        try:
            stream = pa.open(
                format=pyaudio.paFloat32,
                channels=1,
                rate=rate,
                input=True,
                input_device_index=int(info["index"]),
                frames_per_buffer=int(round(chunk_s * rate)),
                start=False,  # started at the first read: nothing piles up while models load
            )
            return stream, rate
        except (OSError, ValueError) as err:
            last = err
    raise InputError(f"microphone {info['name']!r}: cannot record mono audio ({last})")


class _Decimator:
    """Integer-factor downsampling with a low-pass filter whose state spans chunks."""

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.taps = firwin(64 * factor + 1, 0.9 / factor)
        self.state = lfilter_zi(self.taps, 1.0) * 0.0
        self.phase = 0  # index of the next kept sample within the incoming chunk

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        filtered, self.state = lfilter(self.taps, 1.0, samples.astype(np.float64), zi=self.state)
        out = filtered[self.phase :: self.factor]
        self.phase = (self.phase - len(samples)) % self.factor
        return out.astype(np.float32)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (fd 2) for a moment; Python logging is unaffected after."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
