"""The local reasoning judge (export/judge.py) and the stage-3 reasoning targets (export/llm_lora.py)."""

from __future__ import annotations

import csv
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from edge_app.llm.reasoning import filter_reasoning, invented_cue_words, template_reasoning
from edge_app.records import LABELS
from export.judge import judge, judge_items, measured_kinds, named_emotions
from export.llm_lora import cue_name, reasoning_target, target_text

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEEMO_DATA", ROOT / "../shared/data"))

CUES = ["voice: flat pitch (2.3 st range)", "voice: long pauses (longest 1.2 s)"]
# every voice phrase edge_app.cues can produce (numbers vary at run time)
ALL_VOICE = [
    "voice: raised pitch variability (+17.8 st range)", "voice: flat pitch (2.3 st range)",
    "voice: rising pitch (+3.4 st/s)", "voice: falling pitch (-7.5 st/s)",
    "voice: strong loudness variation (7.1 dB)", "voice: fast speaking rate (6.1 syll/s)",
    "voice: slow speaking rate (2.1 syll/s)", "voice: long pauses (longest 1.0 s)",
    "voice: irregular voice quality (high jitter/shimmer)", "voice: little or no speech",
]  # fmt: skip
# every body phrase edge_app.cues can produce (events with time spans, some values a number)
ALL_BODY = [
    "body: hand to face 1.2-2.0 s", "body: hand to head 0.3-1.1 s", "body: hand to neck 2.0-2.6 s",
    "body: hand on arm 0.4-0.7 s", "body: hands together / rubbing 0.4-2.9 s, 3.2-4.0 s", "body: gesturing 0.0-4.0 s",
    "body: arms crossed 0.5-3.5 s", "body: hunched shoulders 0.0-0.4 s", "body: hands shielding the body 1.0-2.2 s",
    "body: head down 0.7-1.9 s", "body: leaning forward 0.9-2.0 s", "body: leaning back", "body: arms held close to the body",
    "body: open, expansive arms", "body: uneven shoulders", "body: very still", "body: high motion energy (1.4)",
    "body: frequent hand movements (4.0/s)", "body: person mostly out of view (28% of the window)",
]  # fmt: skip


def test_measured_phrases_map_to_their_own_kind() -> None:
    kinds = [measured_kinds([c]) for c in ALL_VOICE]
    assert all(len(k) == 1 for k in kinds), kinds
    assert len(set().union(*kinds)) == len(ALL_VOICE)  # no two phrases collapse


def test_perfect_reasoning_scores_ten() -> None:
    j = judge("The voice has flat pitch and long pauses, which suggests sad.", CUES, "sad", "sad")
    assert j.clue == pytest.approx(10.0) and j.label == pytest.approx(10.0)
    assert j.cited == {"flat pitch", "long pauses"} and not j.hallucinated


def test_partial_and_invented_cues() -> None:
    # one of two measured cues named: P = 1, R = 1/2 -> F1 = 2/3
    j = judge("The voice has long pauses.", CUES, "sad", "sad")
    assert j.clue == pytest.approx(10 * 2 / 3)
    # one right, one invented (loud is never measured): P = R = 1/2
    j = judge("There are long pauses and the voice is loud.", CUES, "sad", "sad")
    assert j.clue == pytest.approx(5.0) and j.hallucinated == {"loud voice (level)"}
    # only invented cues: face, pitch level, a body cue not measured
    j = judge("She smiles, her hands on her face, and the pitch is high.", CUES, "happy", "happy")
    assert j.clue == 0.0
    assert j.hallucinated == {"facial expression", "hand to face", "high pitch (level)"}
    # a measured-sounding but different kind is still a hallucination
    j = judge("The pitch is rising.", ["voice: falling pitch (-7.5 st/s)"], "sad", "sad")
    assert j.hallucinated == {"rising pitch"} and j.clue == 0.0


def test_nothing_measured_has_no_clue_score() -> None:
    j = judge("The voice is loud.", [], "angry", "angry")
    assert j.clue is None and j.hallucinated == {"loud voice (level)"}


def test_label_overlap() -> None:
    assert judge("", CUES, "angry", "angry").label == 10.0
    assert judge("", CUES, "angry", "fearful").label == 5.0  # same group (negative, aroused)
    assert judge("", CUES, "angry", "happy").label == 0.0
    # the reasoning's emotion words count too: angry (1) + sad (0) -> 5
    assert judge("It sounds sad.", CUES, "angry", "angry").label == 5.0
    assert named_emotions("He is furious, almost scared.") == {"angry", "fearful"}
    assert judge("No emotion word.", CUES, "calm", None).label == 0.0


def test_judge_items_means() -> None:
    r = judge_items([
        ("The voice has flat pitch and long pauses.", CUES, "sad", "sad"),
        ("The voice is loud.", CUES, "sad", "angry"),
        ("Nothing stood out.", [], "sad", "sad"),
    ])  # fmt: skip
    assert r["n"] == 3 and r["n_no_cues"] == 1
    assert r["clue_overlap"] == pytest.approx(5.0)  # (10 + 0) / 2 items with cues
    assert r["label_overlap"] == pytest.approx(round(20 / 3, 2))
    assert r["hallucinated_cues_per_item"] == pytest.approx(round(1 / 3, 3))


def test_template_reasoning_is_judged_perfect_on_clues() -> None:
    for n in range(1, 4):
        for cues in itertools.combinations(ALL_VOICE, n):
            j = judge(template_reasoning("sad", cues), cues, "sad", "sad")
            assert j.clue == pytest.approx(10.0) and not j.hallucinated, (cues, j)


def test_reasoning_target_never_names_unmeasured_cues() -> None:
    """Stage-3 targets: only measured cues, passes the runtime filter, names the true label."""
    for n in range(4):
        for cues in itertools.combinations(ALL_VOICE, n):
            for label in LABELS:
                key = f"{label}:{n}:{cues[:1]}"
                t = reasoning_target(label, list(cues), key)
                j = judge(t, cues, label, label)
                assert not j.hallucinated, (t, cues)
                assert j.label == 10.0 and label in t
                if cues:
                    assert j.clue == pytest.approx(10.0), (t, cues)
                    assert filter_reasoning(t, cues) == t  # the runtime keeps it whole
                    assert not invented_cue_words(t, cues)
                assert "\n" not in t and t.count(".") == 1 and t.endswith(".")
                assert target_text(label, list(cues), key).startswith(f" {label}. Reasoning: ")


def test_reasoning_target_with_body_lines() -> None:
    """Runtime order is body lines then voice lines; both kinds are named, nothing else."""
    rng = np.random.default_rng(0)
    for k in range(200):
        body = [ALL_BODY[i] for i in rng.choice(len(ALL_BODY), int(rng.integers(1, 3)), replace=False)]
        voice = list(ALL_VOICE[k % 5 : k % 5 + k % 3])
        cues = body + voice
        label = LABELS[k % len(LABELS)]
        t = reasoning_target(label, cues, str(k))
        j = judge(t, cues, label, label)
        assert not j.hallucinated and j.clue == pytest.approx(10.0), (t, cues, j)
        assert filter_reasoning(t, cues) == t  # the runtime keeps it whole
        assert body and all(c.startswith("body: ") and cue_name(c) in t for c in body)
        assert all(cue_name(c) in t for c in voice) and label in t


@pytest.mark.skipif(not (DATA / "emer_text/EMER_dataset-v1_gt-eng.csv").exists(), reason="EMER text not found")
def test_emer_reasons_name_their_labels() -> None:
    """Text-only sanity check on EMER's own clue -> emotion rationales: the label judge
    finds their annotated emotion, and the cue judge sees face clues (never measured here)."""
    rows = list(csv.DictReader(open(DATA / "emer_text/EMER_dataset-v1_gt-eng.csv", encoding="utf-8")))
    mapping = {"worried": "fearful", "surprise": "surprised"}
    items = [(r["reasons"], [], mapping.get(r["emotions"], r["emotions"]), None) for r in rows]
    items = [it for it in items if it[2] in LABELS]
    r = judge_items(items)
    assert len(items) >= 90 and r["label_overlap"] >= 6.0
    assert r["items_with_hallucinated_cue"] >= 0.5  # EMER cites faces: none is measured on this device
