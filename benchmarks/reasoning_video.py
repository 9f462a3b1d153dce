"""The reasoning the runtime writes for windows with body AND voice cues (video files).

`python -m export.evaluate --llm` judges the reasoning on RAVDESS audio only: no clip here has
both a person and emotional speech. This benchmark builds such clips from what exists: the
package photos of `edge_app.synth` (people filmed by a moving camera; the body cues come from
that motion, not from an emotion) with two RAVDESS utterances of one emotion from the
validation actors 19-20 as the sound track, and runs `deemo-edge file`'s Analyzer on each,
windows of 4 s. Per window: whether the reasoning is the LLM's own text or the template, the
local judge's clue overlap (against the cue lines the LLM was given) and label overlap
(against the utterances' emotion: the only true label these clips have), and whether the
reasoning names an emotion other than the window's answer.

Each clip runs once per adapter in one process, same encoders, same de-identification seed,
every adapter at the manifest's prior weight, so the rows differ by the adapter alone;
`--without-label-check` adds a row with the shipped adapter and the runtime filter's label
check turned off (`filter_reasoning` without the answer's label, the filter before
2026-12-07). The clips live in a temporary folder and are deleted afterwards.

    python benchmarks/reasoning_video.py                         # 16 clips x 2 windows, about 3 min on 2 cores
    python benchmarks/reasoning_video.py --baseline old.gguf     # ... and another adapter on the same clips
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import report  # benchmarks/report.py (this script's folder is on sys.path)
from tqdm import tqdm

from edge_app import synth
from edge_app.answer import llm_cue_lines
from edge_app.config import load_config
from edge_app.llm import reasoning
from edge_app.llm.model import default_prior_weight
from edge_app.pipeline import Analyzer
from edge_app.records import LABELS
from export import audio_data, default_data

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 8.0  # two 4 s windows


def build_clips(data: Path, folder: Path) -> list[tuple[Path, str]]:
    """One clip per validation actor and emotion: a synth scene and two of the actor's
    utterances of that emotion (the first two in labels.csv order)."""
    utts = [u for u in audio_data.load_ravdess(data) if audio_data.split_of(u.actor) == "val"]
    clips = []
    for i, (actor, label) in enumerate((a, lab) for a in sorted({u.actor for u in utts}) for lab in range(len(LABELS))):
        two = [u for u in utts if u.actor == actor and u.label == label][:2]
        audio = np.concatenate([synth.read_mono(str(u.path)) for u in two] + [np.zeros(8000, np.float32)])
        path = folder / f"actor{actor}_{LABELS[label]}.mp4"
        synth.make_clip(str(path), seconds=SECONDS, scene=synth.SCENES[i % len(synth.SCENES)], audio=audio, seed=i)
        clips.append((path, LABELS[label]))
    return clips


def run(analyzer: Analyzer, clips: list[tuple[Path, str]], desc: str) -> list[dict]:
    per_modality = analyzer.config.answer.max_cues_per_modality  # what the LLM was given
    rows = []
    for path, truth in tqdm(clips, desc=desc):
        result = analyzer.analyse(str(path))
        for w in result.windows:
            if w.answer is None:
                continue
            lines = llm_cue_lines(w.cues.describe_body(), w.cues.describe_voice(), per_modality)
            rows.append({
                "clip": path.name, "start": w.start, "truth": truth, "label": w.answer.label,
                "source": w.answer.reasoning_source, "reasoning": w.answer.reasoning,
                "has_body": any(c.startswith("body:") for c in lines), "has_voice": any(c.startswith("voice:") for c in lines),
                **report.judged(w.answer.reasoning, w.answer.label, lines, truth),
            })  # fmt: skip
    return rows


def summary(rows: list[dict]) -> dict:
    llm = [r for r in rows if r["source"] == "llm"]
    figures = report.judged_figures(rows)
    return {
        "windows": len(rows),
        "windows_with_body_and_voice_cues": sum(r["has_body"] and r["has_voice"] for r in rows),
        "llm_text_share": round(len(llm) / max(1, len(rows)), 3),
        "names_another_emotion": report.share(rows, "other_emotion"),
        "llm_text_names_another_emotion": report.share(llm, "other_emotion"),
        "with_hallucinated_cue": report.share(rows, "hallucinated"),
        "clue_overlap": figures["clue_overlap"],
        "label_overlap": figures["label_overlap"],
        "label_accuracy_vs_voice_emotion": round(float(np.mean([r["label"] == r["truth"] for r in rows])), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data(), help="default: $DEEMO_DATA or ../shared/data")
    ap.add_argument("--baseline", nargs="*", default=[], help="other adapter GGUFs to compare ('none': the base model)")
    ap.add_argument("--without-label-check", action="store_true",
                    help="also run the shipped adapter with the filter's label check off (default: off)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reasoning_video.json")
    a = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = build_clips(a.data, Path(tmp))
        for name, overrides in report.adapter_runs(a.baseline):
            with Analyzer(load_config(None, {"voice.seed": 0, **overrides})) as analyzer:
                runs[name] = run(analyzer, clips, name)
                if a.without_label_check and not overrides:
                    runs[f"{name}, without the label check"] = run_without_label_check(analyzer, clips)
    command = " ".join(["python benchmarks/reasoning_video.py", *(["--baseline", *a.baseline] if a.baseline else []),
                        *(["--without-label-check"] if a.without_label_check else [])])  # fmt: skip
    result = {"command": command, "clips": len(clips), "prior_weight": default_prior_weight(),
              "summary": {k: summary(v) for k, v in runs.items()}, "windows": runs}
    report.write(a.out.with_suffix(""), result, markdown)


def run_without_label_check(analyzer: Analyzer, clips: list[tuple[Path, str]]) -> list[dict]:
    """The same clips with the filter before its label check (session.py calls it through the module)."""
    shipped = reasoning.filter_reasoning
    reasoning.filter_reasoning = lambda text, cues, label=None: shipped(text, cues)
    try:
        return run(analyzer, clips, "without label check")
    finally:
        reasoning.filter_reasoning = shipped


def markdown(result: dict) -> str:
    lines = [
        "# Reasoning on windows with body and voice cues", "",
        (f"Written by `{result['command']}`: {result['clips']} synthetic clips (package photos filmed by a moving camera, "
         "two RAVDESS utterances of one emotion from validation actors 19-20), 4 s windows, the file pipeline. "
         "The body cues come from camera motion, so the only true label is the voice's emotion. Same encoders, "
         f"same de-identification seed and prior weight ({result['prior_weight']:g}) in every row."), "",
        *report.rows_table(result["summary"], "run"),
    ]  # fmt: skip
    lines += report.reasoning_side_by_side(
        result["windows"], lambda r: f"{r['clip']} {r['start']:.0f} s, answer {r['label']}, voice {r['truth']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
