"""The reasoning the runtime writes for windows with a person and no speech, on held-out motion.

`python -m export.evaluate --llm` judges reasoning on RAVDESS voice clips and
`benchmarks/reasoning_video.py` on synthetic clips whose body cues come from camera motion;
neither has a body that shows a true emotion. Here the bodies are the motion-capture takes of
the held-out test contents (bye, run, walk-left, walk take 002: never seen by the body
encoder or stage 3), 4 s windows through a random virtual camera with detector jitter, as
`export/body_items.py` builds them; each window is answered by the runtime's `Answerer` (the
shipped body encoder, the measured body cue lines, the body head's prior, llama.cpp, the
reasoning filter), with no audio. Per window the local judge (export/judge.py) scores clue
overlap against the cue lines the LLM was given and label overlap against the take's emotion.

Adapters are compared in one run, on the same windows, at the same prior weight (the
manifest's, so the label is the same and only the reasoning differs):

    python benchmarks/reasoning_body.py                                   # the shipped adapter
    python benchmarks/reasoning_body.py --baseline old.gguf none          # ... against others
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import report  # benchmarks/report.py (this script's folder is on sys.path)
from tqdm import tqdm

from edge_app.answer import Answerer, llm_cue_lines
from edge_app.config import load_config
from edge_app.cues import extract_cues
from edge_app.llm import reasoning
from edge_app.llm.model import default_prior_weight
from export import body_data, body_items, default_data

ROOT = Path(__file__).resolve().parents[1]
WINDOWS_PER_TAKE = 2


def test_windows(data: Path, cache: Path, seed: int) -> list[tuple[str, str, list]]:
    """(name, true emotion, pose samples) for WINDOWS_PER_TAKE windows of each test emotion take."""
    clips, _ = body_data.load_clips(data, cache)
    rng = np.random.default_rng(seed)
    out = []
    for c in clips:
        if c.split == "test" and c.emotion >= 0:
            for k in range(WINDOWS_PER_TAKE):
                out.append((f"{Path(c.file).stem}-w{k}", body_data.EMOTIONS4[c.emotion], body_items.pose_window(c, rng)))
    return out


def run(answerer: Answerer, windows: list[tuple[str, str, list]], desc: str) -> list[dict]:
    per_modality = answerer.options.max_cues_per_modality
    rows = []
    for name, truth, poses in tqdm(windows, desc=desc):
        cues = extract_cues(0.0, body_data.WINDOW_S, poses, None)
        a = answerer.answer(cues, poses, None)
        lines = llm_cue_lines(cues.describe_body(), [], per_modality)
        rows.append({
            "window": name, "truth": truth, "label": a.label, "source": a.reasoning_source, "reasoning": a.reasoning,
            "cues": lines, **report.judged(a.reasoning, a.label, lines, truth),
            "names_answer": a.label in reasoning.named_emotions(a.reasoning),
            "names_voice": any(w in a.reasoning.lower() for w in ("voice", "speaker", "speech", "pitch")),
        })  # fmt: skip
    return rows


def summary(rows: list[dict]) -> dict:
    figures = report.judged_figures(rows)
    return {
        "windows": len(rows),
        "llm_text_share": round(sum(r["source"] == "llm" for r in rows) / max(1, len(rows)), 3),
        "clue_overlap": figures["clue_overlap"],
        "label_overlap": figures["label_overlap"],
        "with_hallucinated_cue": report.share(rows, "hallucinated"),
        "names_another_emotion": report.share(rows, "other_emotion"),
        "names_the_answer": report.share(rows, "names_answer"),
        "speaks_of_a_voice": report.share(rows, "names_voice"),
        "label_accuracy_4class": round(float(np.mean([r["label"] == r["truth"] for r in rows])), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/features", help="forward-kinematics cache (default: %(default)s)")
    ap.add_argument("--baseline", nargs="*", default=[], help="other adapter GGUFs to compare ('none': the base model)")
    ap.add_argument("--seed", type=int, default=0, help="camera and jitter draws (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reasoning_body.json")
    a = ap.parse_args()
    windows = test_windows(a.data, a.cache, a.seed)
    runs = {}
    for name, overrides in report.adapter_runs(a.baseline):
        with contextlib.closing(Answerer(load_config(None, overrides).answer)) as answerer:
            runs[name] = run(answerer, windows, name)
    command = " ".join(["python benchmarks/reasoning_body.py", *(["--baseline", *a.baseline] if a.baseline else [])])
    result = {"command": command,
              "prior_weight": default_prior_weight(), "summary": {k: summary(v) for k, v in runs.items()}, "windows": runs}
    report.write(a.out.with_suffix(""), result, markdown)


def markdown(result: dict) -> str:
    first = next(iter(result["windows"].values()))
    lines = [
        "# Reasoning on held-out motion (a person, no speech)", "",
        (f"Written by `{result['command']}`: {len(first)} windows of 4 s, {WINDOWS_PER_TAKE} per emotion take of the "
         "held-out test contents (bye, run, walk-left, walk take 002), random virtual camera with detector jitter, "
         f"answered by the runtime's Answerer without audio; every adapter at prior weight {result['prior_weight']:g} "
         "on the same windows."), "",
        *report.rows_table(result["summary"], "adapter"),
    ]  # fmt: skip
    lines += report.reasoning_side_by_side(
        result["windows"], lambda r: f"{r['window']}, {r['truth']}, answer {r['label']}, cues {'; '.join(r['cues']) or 'none'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
