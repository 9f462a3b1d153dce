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
import subprocess
import sys
import threading
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
    """Write the timeline of one analysed file as PNG; returns the path.

    Drawn on a bare `Figure` (no pyplot, its global figure list or its backend switch): the
    same code runs in `deemo-edge file --plot` and in the live sink's drawing process."""
    figure_class = _figure_class()
    windows = result.get("windows") or []
    events = [e for w in windows for e in ((w.get("cues") or {}).get("body") or {}).get("events", [])]
    names = sorted({e["name"] for e in events})
    fig = figure_class(figsize=(10, 7.5))
    axes = fig.subplots(4, 1, sharex=True,
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
    on close. `publish` hands a copy of the window list to a thread of the sink's own and
    returns: the analysis loop never waits for a picture. That thread has the picture drawn
    (0.4-0.7 s of one core, 2 to 600 windows) in a separate process, started at the first
    drawing, because drawing in this process would hold the GIL that the analysis needs
    (benchmarks/bench_timeline.py: a window's analysis took 4-6x longer while a thread here drew).
    A drawing in progress is not queued behind: the newest copy replaces any not yet started.
    The picture is written to a temporary name and renamed, so a viewer never reads half a
    PNG; a failed drawing is logged and the run goes on, and `close` waits at most
    CLOSE_WAIT_S for the last picture (then ends the drawing process), so a stop stays quick."""

    def __init__(self, path: str | Path, every_s: float = 10.0, max_windows: int = 600,
                 title: str = "live") -> None:
        check_plotting()
        self.path, self.every_s, self.max_windows, self.title = Path(path), every_s, max_windows, title
        self.windows: list[dict[str, Any]] = []
        self._handed_at: float | None = None
        self._dirty = False
        self._wake = threading.Condition()
        self._waiting: dict[str, Any] | None = None  # the newest copy not yet drawn
        self._busy = False
        self._closing = False
        self._drawer = threading.Thread(target=self._draw_loop, name="timeline", daemon=True)
        self._drawer.start()
        self._process = DrawingProcess()

    def publish(self, result: dict) -> None:
        from edge_app.sinks.base import encode_result

        self.windows.append(json.loads(encode_result(result)))
        del self.windows[: -self.max_windows]
        self._dirty = True
        now = time.monotonic()
        if self._handed_at is None or now - self._handed_at >= self.every_s:
            self._hand_over(now)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every copy handed over is drawn; False if `timeout` passed first."""
        with self._wake:
            return self._wake.wait_for(lambda: self._waiting is None and not self._busy, timeout)

    # how long close() waits for the last picture (a drawing takes under a second, the
    # drawing process's start about one more) before it gives up on it: a live run stops in time
    CLOSE_WAIT_S = 5.0

    def close(self) -> None:
        if self._dirty:
            self._hand_over(time.monotonic())
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self._drawer.join(self.CLOSE_WAIT_S)
        if self._drawer.is_alive():  # a drawing that hangs must not hold up a stop
            log.warning("timeline %s: the last drawing did not finish within %g s; not drawn", self.path, self.CLOSE_WAIT_S)
            with self._wake:
                self._waiting = None
            self._process.kill()
            self._drawer.join(self.CLOSE_WAIT_S)
        self._process.close()

    def _hand_over(self, now: float) -> None:
        self._handed_at, self._dirty = now, False
        with self._wake:
            self._waiting = {"input": self.title, "windows": list(self.windows)}
            self._wake.notify_all()

    def _draw_loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._waiting is not None or self._closing)
                if self._waiting is None:  # closing, and nothing left to draw
                    return
                snapshot, self._waiting, self._busy = self._waiting, None, True
            try:
                self._draw(snapshot)
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()

    def _draw(self, snapshot: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.png")
        try:
            self._render(snapshot, tmp)
            os.replace(tmp, self.path)
        except (OSError, ValueError) as err:
            log.warning("timeline %s not drawn: %s", self.path, err)
            tmp.unlink(missing_ok=True)

    def _render(self, snapshot: dict[str, Any], path: Path) -> None:
        self._process.draw(snapshot, path)


class DrawingProcess:
    """`plot_timeline` in a child Python (`python -m edge_app.sinks.timeline`) that imports
    matplotlib and this module only: one JSON request per line on its stdin, one reply per
    line on its stdout. Started at the first drawing, started again if it has ended.
    (multiprocessing's spawn would also re-import the parent's main module and everything it
    imported: 193 MB resident instead of 90, benchmarks/bench_timeline.py.)"""

    def __init__(self) -> None:
        self._child: subprocess.Popen | None = None

    def draw(self, result: dict[str, Any], path: Path) -> None:
        """Draw `result` to `path`; OSError or ValueError as `plot_timeline` raised them there."""
        child = self._running()
        try:
            child.stdin.write(json.dumps({"result": result, "path": str(path)}) + "\n")
            child.stdin.flush()
            reply = child.stdout.readline()
        except BrokenPipeError:
            reply = ""
        if not reply:
            raise OSError(f"the drawing process ended (exit code {child.wait()})")
        answer = json.loads(reply)
        if "error" in answer:
            raise (ValueError if answer.get("kind") == "ValueError" else OSError)(answer["error"])

    def kill(self) -> None:
        """End the drawing process now (a drawing waiting for it then fails with OSError)."""
        if self._child is not None:
            self._child.kill()

    def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.stdin.close()  # end of requests: it returns
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()

    def _running(self) -> subprocess.Popen:
        if self._child is None or self._child.poll() is not None:
            package_root = str(Path(__file__).resolve().parents[2])  # found even when not installed
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
            self._child = subprocess.Popen([sys.executable, "-m", "edge_app.sinks.timeline"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, env=env)
        return self._child


def serve_drawings() -> None:
    """The drawing process: requests from stdin until it closes (see `DrawingProcess`)."""
    replies, sys.stdout = sys.stdout, sys.stderr  # a stray print must not corrupt the replies
    for line in sys.stdin:
        request = json.loads(line)
        try:
            plot_timeline(request["result"], request["path"])
            answer: dict[str, Any] = {"ok": True}
        except (OSError, ValueError) as err:
            answer = {"error": str(err), "kind": type(err).__name__}
        replies.write(json.dumps(answer) + "\n")
        replies.flush()


def check_plotting() -> None:
    """UsageError now if plots cannot be drawn (matplotlib missing)."""
    _figure_class()


def _patch(colour: str, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=colour, label=label)


def _figure_class() -> Any:
    try:
        import matplotlib  # noqa: F401  first: a missing package must fail even if a submodule is cached
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'deemo-edge[plot]'") from None
    return Figure  # renders with Agg when saved: files only, a device has no display


if __name__ == "__main__":
    serve_drawings()
