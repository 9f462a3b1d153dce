"""What every result sink shares: the `ResultSink` protocol and the media check.

A result is a dict of labels, scores, reasoning text, cue summaries and
timings. Sinks send results off the device, so they are the last place where
media could leak: `encode_result` refuses (TypeError) any value that is an
array or a byte buffer, at any depth, before anything is written or sent.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Protocol, runtime_checkable

# Raw bytes of any kind are refused: a frame or an audio buffer is one of these.
_MEDIA_TYPES: tuple[type, ...] = (bytes, bytearray, memoryview)
# A result is a small tree; deeper nesting is a bug (or a cycle), not a result.
MAX_DEPTH = 32


@runtime_checkable
class ResultSink(Protocol):
    """Where results go. Implementations send each result as one JSON object."""

    def publish(self, result: dict) -> None:
        """Send one result; TypeError if it is not a JSON-serialisable dict or holds media."""

    def close(self) -> None:
        """Flush what can be flushed and release files, sockets and threads."""


def encode_result(result: Any) -> str:
    """`result` as one line of compact JSON (no newline), after the media check.

    Numpy scalars (np.float32 scores and the like) become Python numbers; NaN
    and infinities are refused because strict JSON parsers on the receiving
    side reject them.
    """
    if not isinstance(result, dict):
        raise TypeError(f"a result must be a dict, got {type(result).__name__}")
    plain = _plain(result, "result", 0)
    return json.dumps(plain, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _plain(value: Any, where: str, depth: int) -> Any:
    """A copy of `value` made of JSON types only; TypeError names the offending key."""
    if depth > MAX_DEPTH:
        raise TypeError(f"{where}: nested deeper than {MAX_DEPTH} levels (a cycle?)")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where}: {value} is not valid JSON; use null for a missing number")
        return value
    if _is_media(value):
        raise TypeError(
            f"{where}: {type(value).__name__} values are refused; "
            "sinks send results only, never media"
        )
    if isinstance(value, dict):
        return {_key(k, where): _plain(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    scalar = _numpy_scalar(value)
    if scalar is not None:
        return _plain(scalar, where, depth)
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable")


def _key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}; result keys must be str")


def _is_media(value: Any) -> bool:
    if isinstance(value, _MEDIA_TYPES):
        return True
    # numpy is only looked up, never imported: if it is not loaded, no array exists.
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)


def _numpy_scalar(value: Any) -> int | float | bool | None:
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    return None
