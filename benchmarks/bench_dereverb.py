"""WPE dereverberation speed and agreement: edge_app/encoders/dereverb.py against nara_wpe.

    python benchmarks/bench_dereverb.py            # one core, 4 s windows, both in one run

Both run the same WPE (30 taps, delay 3, 3 iterations, full statistics) on the same reverberated
RAVDESS validation clips (RT60 0.8 s), interleaved, on one BLAS thread; the table gives the
real-time factor (seconds of CPU per second of audio, wall clock on one thread) of each and the
ratio, and how far apart the two outputs are relative to what they remove. nara_wpe gets our
STFT's spectrogram so only the WPE step differs; our figure includes our STFT and inverse.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy loads BLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import report  # benchmarks/report.py (this script's folder is on sys.path)
from scipy.signal import fftconvolve, stft

from edge_app.encoders.dereverb import DereverbOptions, dereverberate, wpe
from export import audio_data, default_data

OUT = Path(__file__).resolve().parent / "results" / "dereverb_speed"
WINDOW_S = 4.0


def windows(data: Path, n: int) -> list[np.ndarray]:
    """`n` 4 s windows of reverberated validation speech (two clips end to end, cut)."""
    utts = [u for u in audio_data.load_ravdess(data) if audio_data.split_of(u.actor) == "val"][: 2 * n]
    rng = np.random.default_rng(0)
    out = []
    for a, b in zip(utts[::2], utts[1::2], strict=True):
        x = np.concatenate([audio_data.read_clip(a.path), audio_data.read_clip(b.path)])[: int(WINDOW_S * 16_000)]
        wet = fftconvolve(x, audio_data.room_impulse_response(rng, 0.8))[: len(x)]
        out.append(wet.astype(np.float32))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--windows", type=int, default=20, help="4 s windows timed (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=OUT, help="output path without suffix (default: %(default)s)")
    a = ap.parse_args()
    from nara_wpe.wpe import wpe as nara_wpe  # test/benchmark-only reference (make install)

    o = DereverbOptions()
    ours_s, nara_s, apart = [], [], []
    for x in windows(a.data, a.windows):
        t = time.perf_counter()
        dereverberate(x, o)
        ours_s.append(time.perf_counter() - t)
        spec = stft(x, fs=16_000, window="hann", nperseg=o.frame, noverlap=o.frame - o.hop)[2]
        t = time.perf_counter()
        ref = nara_wpe(spec[:, None, :], taps=o.taps, delay=o.delay, iterations=o.iterations,
                       statistics_mode="full")[:, 0, :]
        nara_s.append(time.perf_counter() - t)
        apart.append(float(np.linalg.norm(wpe(spec, o) - ref) / np.linalg.norm(ref - spec)))
    ours, nara = float(np.median(ours_s)) / WINDOW_S, float(np.median(nara_s)) / WINDOW_S
    result = {"windows": a.windows, "window_s": WINDOW_S, "threads": os.environ["OMP_NUM_THREADS"],
              "options": vars(o), "rtf_ours": round(ours, 4), "rtf_nara_wpe_step_only": round(nara, 4),
              "ratio_nara_over_ours": round(nara / ours, 2),
              "apart_over_removed_median": round(float(np.median(apart)), 3),
              "load_average": os.getloadavg()}  # fmt: skip
    report.write(a.out, result, markdown)


def markdown(r: dict) -> str:
    return "\n".join([
        "# WPE dereverberation: speed against nara_wpe", "",
        (f"`python benchmarks/bench_dereverb.py`: {r['windows']} reverberated 4 s validation windows, "
         f"one BLAS thread (OMP_NUM_THREADS={r['threads']}), median; load average {r['load_average']}."), "",
        "| implementation | real-time factor (1 core) | x ours |", "|---|---|---|",
        f"| ours (`edge_app/encoders/dereverb.py`, STFT + WPE + inverse) | {r['rtf_ours']:.4f} | 1.00 |",
        (f"| nara_wpe 0.0.11 (`wpe`, WPE step only) | {r['rtf_nara_wpe_step_only']:.4f} | "
         f"{r['ratio_nara_over_ours']:.2f} |"), "",
        f"Outputs apart (median over windows): {r['apart_over_removed_median']:.1%} of what WPE removes.", "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
