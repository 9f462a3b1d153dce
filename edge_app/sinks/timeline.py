"""A file's analysis as one picture: emotion over time, and the cues that led to it.

Drawn from the result record alone (what `deemo-edge file` writes as JSON), never from media:
the same privacy boundary as every other sink.

    plot_timeline(result.to_dict(), "clip.timeline.png")

Panels, sharing the time axis:
1. the answer's probability per label in each window (stacked), the window's label on top;
2. the voice and body heads' own answers (each head's top label and its probability);
3. body-language events (self-touch, self-protection, posture, hand activity) as bars;
4. voice loudness (mean dB) and pitch variability (semitones) per window.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.errors import InputError, UsageError
from edge_app.records import LABELS

log = logging.getLogger("deemo_edge.sinks")

# one colour per label, fixed so plots of different files compare at a glance
LABEL_COLOURS = {
    "neutral": "#9e9e9e", "calm": "#80cbc4", "happy": "#ffd54f", "sad": "#5c6bc0",
    "angry": "#e53935", "fearful": "#8e24aa", "disgust": "#7cb342", "surprised": "#fb8c00",
}  # fmt: skip
CATEGORY_COLOURS = {
    "self_manipulation": "#ef6c00", "self_protection": "#6a1b9a", "posture": "#1565c0",
    "hand_activity": "#2e7d32",
}  # fmt: skip


def plot_timeline(result: dict[str, Any], path: str | Path) -> Path:
    """Write the timeline of one analysed file as PNG; returns the path."""
    plt = _pyplot()
    windows = result.get("windows") or []
    events = [e for w in windows for e in ((w.get("cues") or {}).get("body") or {}).get("events", [])]
    names = sorted({e["name"] for e in events})
    fig, axes = plt.subplots(4, 1, figsize=(10, 7.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.4, max(1.0, 0.35 * len(names)), 1.4]})
    _answer_panel(axes[0], windows)
    _heads_panel(axes[1], windows)
    _events_panel(axes[2], _unique(events), names)
    _prosody_panel(axes[3], windows)
    start = min((w["start"] for w in windows), default=0.0)  # a live run's lines may start late
    axes[3].set_xlim(start, max(float(result.get("duration_s") or 0), max((w["end"] for w in windows), default=1.0)))
    axes[3].set_xlabel("time (s)")
    label = result.get("label")
    if not label:  # a live run has no overall label, only its windows'
        label = f"{len(windows)} windows" if any(w.get("label") for w in windows) else "cues only"
    title = f"{Path(str(result.get('input', ''))).name}: {label}"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# per-window text (a window's label, each head's answer) only while it can be read: a long
# live run draws colours alone
MAX_TEXT_WINDOWS = 40


def _answer_panel(ax: Any, windows: list[dict]) -> None:
    scored = [w for w in windows if w.get("scores")]
    starts = np.array([w["start"] for w in scored], float)
    widths = np.array([w["end"] - w["start"] for w in scored], float)
    probs = np.array([[float(w["scores"].get(label, 0.0)) for label in LABELS] for w in scored]).reshape(-1, len(LABELS))
    bottoms = np.cumsum(probs, axis=1) - probs  # each label's bar stacks on the ones before it
    for k, label in enumerate(LABELS):
        _rectangles(ax, starts, widths, bottoms[:, k], probs[:, k], [LABEL_COLOURS[label]] * len(scored))
    if len(scored) <= MAX_TEXT_WINDOWS:
        for w in scored:
            ax.text((w["start"] + w["end"]) / 2, 1.02, w.get("label", ""), ha="center", va="bottom", fontsize=8)
    handles = [_patch(LABEL_COLOURS[k], k) for k in LABELS]
    ax.legend(handles=handles, ncol=4, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.04), frameon=False)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("answer")
    if not scored:
        ax.text(0.5, 0.5, "no labels (--cues-only)", transform=ax.transAxes, ha="center", color="grey")


def _heads_panel(ax: Any, windows: list[dict]) -> None:
    """Each head's own answer per window: a lane per head, coloured by its top label,
    stronger the more confident it is."""
    for row, head in enumerate(("voice", "body")):
        lane = [(w, ((w.get("heads") or {}).get(head) or {}).get("probs") or {}) for w in windows]
        lane = [(w, probs, max(probs, key=probs.get)) for w, probs in lane if probs]
        if not lane:
            continue
        colours = [_with_alpha(LABEL_COLOURS.get(top, "#546e7a"), 0.25 + 0.75 * float(probs[top])) for _, probs, top in lane]
        _rectangles(ax, np.array([w["start"] for w, _, _ in lane], float), np.array([w["end"] - w["start"] for w, _, _ in lane], float),
                    np.full(len(lane), row - 0.35), np.full(len(lane), 0.7), colours)  # fmt: skip
        if len(lane) <= MAX_TEXT_WINDOWS:
            for w, probs, top in lane:
                ax.text((w["start"] + w["end"]) / 2, row, f"{top} {probs[top]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_yticks([0, 1], ["voice head", "body head"], fontsize=7)
    ax.set_ylim(-0.6, 1.6)


def _rectangles(ax: Any, x: np.ndarray, width: np.ndarray, y: np.ndarray, height: np.ndarray, colours: list) -> None:
    """Many rectangles as one artist (a bar per window and label made a long live run's
    picture take seconds: one patch each)."""
    from matplotlib.collections import PolyCollection

    corners = np.stack([np.stack([x, y], 1), np.stack([x + width, y], 1),
                        np.stack([x + width, y + height], 1), np.stack([x, y + height], 1)], 1)
    ax.add_collection(PolyCollection(corners, facecolors=colours, edgecolors="white", linewidths=0.5))


def _with_alpha(colour: str, alpha: float) -> tuple[float, ...]:
    from matplotlib.colors import to_rgba

    return to_rgba(colour, alpha)


def _events_panel(ax: Any, events: list[dict], names: list[str]) -> None:
    for row, name in enumerate(names):
        spans = [(e["start"], e["end"] - e["start"]) for e in events if e["name"] == name]
        colour = CATEGORY_COLOURS.get(next(e["category"] for e in events if e["name"] == name), "#546e7a")
        ax.broken_barh(spans, (row - 0.35, 0.7), color=colour)
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=7)
    ax.set_ylim(-0.6, max(len(names), 1) - 0.4)
    ax.set_ylabel("body", fontsize=8)
    if not names:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no body-language events (nobody in frame, or audio only)",
                transform=ax.transAxes, ha="center", va="center", color="grey", fontsize=8)


def _prosody_panel(ax: Any, windows: list[dict]) -> None:
    rows = [(w["start"], w["end"], (w.get("cues") or {}).get("prosody") or {}) for w in windows]
    rows = [(s, e, p) for s, e, p in rows if p.get("voiced_ratio", 0) > 0]
    if not rows:
        ax.text(0.5, 0.5, "no voiced speech", transform=ax.transAxes, ha="center", va="center",
                color="grey", fontsize=8)
        ax.set_yticks([])
        return
    starts, ends = [s for s, _, _ in rows], [e for _, e, _ in rows]
    ax.hlines([p["energy_db_mean"] for _, _, p in rows], starts, ends, color="#37474f", linewidth=2)
    ax.set_ylabel("loudness\n(dB)", fontsize=8)
    twin = ax.twinx()
    pitch = [(s, e, p["f0_std_st"]) for s, e, p in rows if p.get("f0_std_st") is not None]
    if pitch:
        twin.hlines([v for _, _, v in pitch], [s for s, _, _ in pitch], [e for _, e, _ in pitch],
                    color="#00897b", linewidth=2, linestyles="dotted")
    twin.set_ylabel("pitch var.\n(st)", fontsize=8, color="#00897b")


def _unique(events: list[dict]) -> list[dict]:
    """Overlapping windows report the same event twice; keep one."""
    seen, out = set(), []
    for e in events:
        key = (e["name"], round(e["start"], 2), round(e["end"], 2))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The results in a saved file, each as `plot_timeline` takes it: a `file` result (JSON
    object), several (JSON Lines; lines with an `error` key are skipped), or a live run's JSON
    Lines (one window per line), gathered into one result. InputError if unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read ({err})") from None
    try:
        records = [json.loads(text)]  # one JSON document (a `file` result)
    except json.JSONDecodeError:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                records += [json.loads(line)] if line.strip() else []
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: line {number}: not JSON ({err.msg})") from None
    if not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path}: expected JSON objects (results written by deemo-edge)")
    results = [r for r in records if "windows" in r]
    windows = [r for r in records if "start" in r and "end" in r]
    if windows:  # a live run: its windows make one timeline
        results.append({"input": path.name, "duration_s": max(w["end"] for w in windows), "windows": windows})
    if not results:
        raise InputError(f"{path}: no deemo-edge results in it (neither `windows` nor window lines)")
    return results


class TimelineSink:
    """A live run's timeline, redrawn as its windows arrive: a `ResultSink`.

    Keeps the last `max_windows` window results (JSON copies, after the media check) and
    redraws `path` when `every_s` seconds have passed since the last drawing, and once more
    on close. The picture is written to a temporary name and renamed, so a viewer never
    reads half a PNG. Drawing runs on the analysis thread (0.4-0.7 s of one core here, 2 to 600 windows), which
    is why it is rate-limited; a failed drawing is logged and the run goes on."""

    def __init__(self, path: str | Path, every_s: float = 10.0, max_windows: int = 600,
                 title: str = "live") -> None:
        check_plotting()
        self.path, self.every_s, self.max_windows, self.title = Path(path), every_s, max_windows, title
        self.windows: list[dict[str, Any]] = []
        self._drawn_at: float | None = None
        self._dirty = False

    def publish(self, result: dict) -> None:
        from edge_app.sinks.base import encode_result

        self.windows.append(json.loads(encode_result(result)))
        del self.windows[: -self.max_windows]
        self._dirty = True
        now = time.monotonic()
        if self._drawn_at is None or now - self._drawn_at >= self.every_s:
            self._draw(now)

    def close(self) -> None:
        if self._dirty:
            self._draw(time.monotonic())

    def _draw(self, now: float) -> None:
        self._drawn_at, self._dirty = now, False
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.png")
        try:
            plot_timeline({"input": self.title, "windows": self.windows}, tmp)
            os.replace(tmp, self.path)
        except (OSError, ValueError) as err:
            log.warning("timeline %s not drawn: %s", self.path, err)
            tmp.unlink(missing_ok=True)


def check_plotting() -> None:
    """UsageError now if plots cannot be drawn (matplotlib missing)."""
    _pyplot()


def _patch(colour: str, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=colour, label=label)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'deemo-edge[plot]'") from None
    matplotlib.use("Agg")  # files only; a device has no display
    import matplotlib.pyplot as plt

    return plt
