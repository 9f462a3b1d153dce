"""One configuration tree: dataclasses with documented defaults, loaded from TOML.

    [analysis]  window_s = 4.0
    [video]     mask = "pixelate"
    [voice]     method = "mcadams"
    [cues]      pose_fps = 10.0

Unknown sections or keys, wrong types and values outside a field's allowed set
raise `UsageError` naming the key and what is allowed, so `serve` on a device
fails at start rather than hours later. CLI flags override the file.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_app.answer import REASONING_POLICIES, AnswerOptions
from edge_app.cues import CueOptions
from edge_app.deid.video import VideoDeidOptions
from edge_app.deid.voice import VoiceDeidOptions
from edge_app.errors import UsageError
from edge_app.live import LiveOptions
from edge_app.sinks import OutputOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class AnalysisOptions:
    """How a clip is cut into windows and how big frames may be."""

    # Length of one analysis window in seconds; each window gets its own cues.
    window_s: float = 4.0
    # Step between window starts in seconds; None means window_s (no overlap).
    hop_s: float | None = None
    # Frames larger than this (longer side, pixels) are downscaled after decoding.
    max_side: int = 1280

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise UsageError(f"analysis.window_s must be > 0, got {self.window_s}")
        if self.hop_s is not None and self.hop_s <= 0:
            raise UsageError(f"analysis.hop_s must be > 0, got {self.hop_s}")
        if self.max_side < 64:
            raise UsageError(f"analysis.max_side must be >= 64, got {self.max_side}")

    @property
    def step_s(self) -> float:
        return self.hop_s or self.window_s


@dataclass
class Config:
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    video: VideoDeidOptions = field(default_factory=VideoDeidOptions)
    voice: VoiceDeidOptions = field(default_factory=VoiceDeidOptions)
    cues: CueOptions = field(default_factory=CueOptions)
    answer: AnswerOptions = field(default_factory=AnswerOptions)
    live: LiveOptions = field(default_factory=LiveOptions)
    output: OutputOptions = field(default_factory=OutputOptions)


# Values a string field may take; checked for TOML and CLI alike.
CHOICES: dict[str, tuple[str, ...]] = {
    "video.mask": ("solid", "pixelate", "blur"),
    "video.face_backend": ("auto", "mediapipe", "centerface", "both"),
    "voice.method": ("mcadams+pitch", "pitch+vtl", "mcadams"),
    "answer.reasoning": REASONING_POLICIES,
    "live.reasoning": REASONING_POLICIES,
}


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the TOML file at `path`, then `overrides` ("section.key": value,
    or deeper, e.g. "answer.llm.n_threads"; None values are skipped)."""
    table: dict[str, dict[str, Any]] = {}
    if path:
        table = _read_toml(path)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *tables, key = dotted.split(".")
        target = table
        for name in tables:
            target = target.setdefault(name, {})
        if isinstance(value, dict):  # a nested table, e.g. answer.llm
            target.setdefault(key, {}).update(value)
        else:
            target[key] = value
    return build_config(table)


def build_config(table: dict[str, dict[str, Any]]) -> Config:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = set(table) - set(sections)
    if unknown:
        raise UsageError(
            f"config: unknown section [{sorted(unknown)[0]}]; allowed: {', '.join(sections)}"
        )
    built = {}
    for name, fld in sections.items():
        cls = fld.default_factory  # type: ignore[misc]
        built[name] = _build_section(name, cls, table.get(name, {}))
    return Config(**built)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config: {path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"config: {path}: not valid TOML ({err})") from None
    for section, value in data.items():
        if not isinstance(value, dict):
            raise UsageError(f"config: top-level key '{section}' must be a [section]")
    return data


def _build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{section}.{key}"
        if key not in names:
            raise UsageError(f"config: unknown key '{dotted}'; allowed: {', '.join(names)}")
        if dataclasses.is_dataclass(hints[key]):  # a nested table such as [cues.body]
            if not isinstance(value, dict):
                raise UsageError(f"config: '{dotted}' must be a [{dotted}] table")
            kwargs[key] = _build_section(dotted, hints[key], value)
        else:
            kwargs[key] = _coerce(dotted, hints[key], value)
    try:
        built = cls(**kwargs)
        if hasattr(built, "validate"):  # range checks at start, not when the first input arrives
            built.validate()
    except (ValueError, TypeError, UsageError) as err:
        raise UsageError(f"config: [{section}] {err}") from None
    return built


def _coerce(dotted: str, hint: Any, value: Any) -> Any:
    allowed = _allowed_types(hint)
    if value is None and type(None) in allowed:
        return None
    if Path in allowed and isinstance(value, str):
        return Path(value)
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if tuple in allowed and isinstance(value, list):  # TOML arrays -> fixed-size tuples
        value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
    if not any(_is_instance(value, t) for t in allowed if t is not type(None)):
        names = "/".join(t.__name__ for t in allowed if t is not type(None))
        raise UsageError(f"config: '{dotted}' must be {names}, got {value!r}")
    choices = CHOICES.get(dotted)
    if choices and value not in choices:
        raise UsageError(f"config: '{dotted}' = {value!r}; allowed: {', '.join(choices)}")
    return value


def _allowed_types(hint: Any) -> tuple[type, ...]:
    origin = typing.get_origin(hint)
    if origin in (tuple, list):  # tuple[float, float]: the container is what is checked
        return (origin,)
    args = typing.get_args(hint)
    if args:  # Optional[X] / X | None / Literal
        if origin is typing.Literal:
            return tuple({type(a) for a in args})
        return tuple(t for a in args for t in _allowed_types(a))
    return (hint,) if isinstance(hint, type) else (object,)


def _is_instance(value: Any, t: type) -> bool:
    if t is int and isinstance(value, bool):
        return False
    return isinstance(value, t)


def dump_config(config: Config) -> str:
    """The config as TOML text, with every key (None values commented out)."""
    lines: list[str] = []
    for section in dataclasses.fields(config):
        _dump_table(section.name, getattr(config, section.name), lines)
    return "\n".join(lines)


def _dump_table(name: str, obj: Any, lines: list[str]) -> None:
    lines.append(f"[{name}]")
    nested = []
    for fld in dataclasses.fields(obj):
        value = getattr(obj, fld.name)
        if dataclasses.is_dataclass(value):
            nested.append((f"{name}.{fld.name}", value))
        elif _is_secret(fld.name) and value is not None:
            lines.append(f'{fld.name} = "***"')  # never print a secret (logs, bug reports)
        else:
            lines.append(_toml_line(fld.name, value))
    lines.append("")
    for sub_name, sub in nested:
        _dump_table(sub_name, sub, lines)


def _is_secret(key: str) -> bool:
    return "password" in key and not key.endswith("_file")


def _toml_line(key: str, value: Any) -> str:
    if value is None:
        return f"# {key} = (unset)"
    if isinstance(value, bool):
        return f"{key} = {'true' if value else 'false'}"
    if isinstance(value, (str, Path)):
        return f'{key} = "{value}"'
    if isinstance(value, (tuple, list)):
        return f"{key} = [{', '.join(repr(v) for v in value)}]"
    return f"{key} = {value}"
