"""Variants of the Whisper-states head, on validation speakers only: what else was tried.

The shipped head (export/states_head.py) is one logistic regression on the mean and spread
of the hidden states of Whisper's encoder (tiny.en then: 4 states, 3072 numbers), fitted on every training copy:
each clip de-identified on its own and again inside one session per speaker. This measures
the obvious alternatives the same way (logistic regression, C chosen on validation macro-F1
over 120 clips + 120 session clips, as the shipped head):

- fewer states: the lower layers carry more voice quality and less wording;
- one regression per state, their log-probabilities summed (a product of experts);
- fitted on one kind of copy only (clips, or sessions: a device always de-identifies as a session);
- speaker-normalised states: each clip's states minus its session's running mean (the
  plain mean of the first 10 clips, then an exponential average over about 10, as the voice
  session head's levels; causal, what a device has), and, as an upper bound no device has,
  minus the mean of the whole session. Sessions only (a clip alone has no speaker context).

Validation actors 19-20 only; test actors 21-24 are not loaded. Reads the feature cache
(export/audio_data.py: `python -m export.states_head` builds it).

    python benchmarks/states_head_variants.py     # about 15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from edge_app.encoders.whisper import N_STATES, POOLED_DIM, WIDTH
from edge_app.records import LABELS
from export import audio_data, default_data, voice_session
from export.models import StatesHead
from export.train import fit_logistic, scores

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "states_head_variants"
HORIZON = 10  # EncoderOptions.voice_session_horizon


def state_cols(*states: int) -> np.ndarray:
    """Columns of the pooled vector that hold the given states (each: WIDTH means, WIDTH spreads)."""
    return np.concatenate([np.arange(s * 2 * WIDTH, (s + 1) * 2 * WIDTH) for s in states])


def running_relative(states: np.ndarray, horizon: int = HORIZON) -> np.ndarray:
    """Each row minus the running mean of the rows so far (itself included)."""
    out, mean = np.empty_like(states), None
    for i, s in enumerate(states):
        mean = s.copy() if mean is None else mean + max(1.0 / (i + 1), 1.0 / horizon) * (s - mean)
        out[i] = s - mean
    return out


def fit_logp(xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray) -> tuple[np.ndarray, float]:
    head = StatesHead(xt.shape[1], len(LABELS))
    info = fit_logistic(xt, yt, xv, yv, head)
    with torch.no_grad():
        return head(torch.from_numpy(xv)).numpy(), info["C"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="feature cache (default: .cache/features)")
    a = ap.parse_args(argv)
    utts = audio_data.load_ravdess(a.data)

    def load(split: str, copies: range) -> tuple[np.ndarray, np.ndarray, list]:
        items = audio_data.split_items(utts, a.cache, split, copies)
        return (audio_data.load_states(utts, a.cache, split, copies), np.array([u.label for u, _ in items]),
                audio_data.load_sessions(utts, a.cache, split, copies))

    tc, tcy, tsess = load("train", range(3))
    vc, vcy, vsess = load("val", range(1))
    if len(tc) == 0 or not tsess or not vsess:
        raise SystemExit("the feature cache is empty: run `python -m export.states_head` first")
    ts, tsy = voice_session.session_states(tsess), voice_session.session_labels(tsess)
    vs, vsy = voice_session.session_states(vsess), voice_session.session_labels(vsess)
    n = len(vcy)
    both_t, both_ty = np.concatenate([tc, ts]), np.concatenate([tcy, tsy])
    both_v, both_vy = np.concatenate([vc, vs]), np.concatenate([vcy, vsy])
    rows = []

    def record(name: str, lp_clips: np.ndarray | None, lp_sessions: np.ndarray, C: float | str) -> None:
        row = {"variant": name, "C": C, "sessions": scores(vsy, np.exp(lp_sessions))}
        if lp_clips is not None:
            row["clips"] = scores(vcy, np.exp(lp_clips))
        rows.append(row)
        print(json.dumps(row), flush=True)

    subsets = {"all 4 states (shipped)": tuple(range(N_STATES)), "states 0-1": (0, 1), "states 0-2": (0, 1, 2),
               "states 1-2": (1, 2)} | {f"state {s} alone": (s,) for s in range(N_STATES)}
    per_state = {}
    for name, states in subsets.items():
        cols = state_cols(*states)
        lp, C = fit_logp(both_t[:, cols], both_ty, both_v[:, cols], both_vy)
        record(name, lp[:n], lp[n:], C)
        if len(states) == 1:
            per_state[states[0]] = lp
    total = sum(per_state.values())
    record("product of the 4 one-state regressions", total[:n], total[n:], "per state")
    for name, (xt, yt) in {"fitted on clips only": (tc, tcy), "fitted on sessions only": (ts, tsy)}.items():
        lp_c, C = fit_logp(xt, yt, both_v, both_vy)
        record(name, lp_c[:n], lp_c[n:], C)
    rel_t = np.concatenate([running_relative(s.states.astype(np.float64)) for s in tsess]).astype(np.float32)
    rel_v = np.concatenate([running_relative(s.states.astype(np.float64)) for s in vsess]).astype(np.float32)
    lp, C = fit_logp(rel_t, tsy, rel_v, vsy)
    record("speaker-normalised, running mean (causal)", None, lp, C)
    full_t = np.concatenate([s.states - s.states.mean(0) for s in tsess]).astype(np.float32)
    full_v = np.concatenate([s.states - s.states.mean(0) for s in vsess]).astype(np.float32)
    lp, C = fit_logp(full_t, tsy, full_v, vsy)
    record("speaker-normalised, whole-session mean (not causal)", None, lp, C)

    OUT.with_suffix(".json").write_text(json.dumps({"dim": POOLED_DIM, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Whisper-states head variants (validation actors 19-20 only)",
        "",
        "Written by `python benchmarks/states_head_variants.py` (see its docstring). Logistic regression on",
        "pooled Whisper states, C chosen on validation macro-F1; 8-class accuracy / macro-F1 on 120 validation",
        "clips de-identified one by one and the same 120 clips de-identified as one session per speaker.",
        "Training: actors 1-18, clean + 2 augmented copies, per clip and per session (6480) unless the row says",
        "otherwise. Differences of 2-3 points are within what 120 clips can tell apart.",
        "",
        "| variant | C | clips | sessions |",
        "|---|---|---|---|",
    ]
    for r in rows:
        cell = (lambda s: f"{s['accuracy']:.1%} / {s['macro_f1']:.3f}")
        lines.append(f"| {r['variant']} | {r['C']} | {cell(r['clips']) if 'clips' in r else '-'} | {cell(r['sessions'])} |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
