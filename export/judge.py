"""A local, deterministic reasoning judge: clue overlap and label overlap, 0-10.

DEEMO (arXiv 2504.19549) scores reasoning with a GPT judge on EMER: clue overlap 6.20,
label overlap 7.66. No hosted judge is used here; this module is a documented rule
set that reads the reasoning text and compares it with what was *measured*.

Text normalisation: parenthesised details removed ("flat pitch (2.3 st range)" ->
"flat pitch"), lower case, split into clauses at ".!?;,:" and at the words and / but /
while / with / whereas / or (cue phrases are short noun phrases, often listed), and
into words [a-z]+. Matching is on whole words (no stemming: the word lists below name the
variants).

Cue kinds (CATALOGUE): every phrase edge_app.cues can produce (voice prosody:
raised pitch variability, flat/rising/falling pitch, strong loudness variation,
fast/slow speaking rate, long pauses, irregular voice quality, little or no speech;
body: the NFBL events and posture/motion phrases), plus cues this system can NEVER
measure (voice level: loud / quiet; pitch level: high / low; anything about the face,
tears, the words spoken). A kind is *cited* by a text when, inside one clause, each
of its word groups has a word present (and none of its `unless` words is): e.g.
"flat pitch" = {pitch, intonation, tone} + {flat, monotone, ...}.

Measured kinds M: the kinds that each measured cue phrase itself matches (its
parenthesised numbers removed). A phrase no kind matches becomes its own kind,
cited when at least half of its content words occur in one clause.

Clue overlap (per item) = 10 x F1(C, M), C = kinds cited by the reasoning,
P = |C & M| / |C|, R = |C & M| / |M| (0 when C is empty). Items with nothing
measured (M empty) have no clue score (they are counted as `n_no_cues`).
Hallucinated cues (per item) = |C - M|: kinds cited that were not measured
(all never-measurable kinds included).

Label overlap (per item): E = emotions named in the answer's label and reasoning
(the runtime filter's EMOTION_WORDS lexicon, edge_app.llm.reasoning; negation is not
parsed). Each named emotion earns 1 if it is the true label, 0.5 if it lies in the same valence/arousal group (GROUPS:
{happy, surprised}, {neutral, calm}, {angry, fearful, disgust}, {sad}), else 0;
the score is 10 x the mean credit over E (0 when E is empty). So "angry" for a
true "angry" = 10, "fearful" for "angry" = 5, "angry ... and sad" for "angry" = 5.

Both scores are averaged over items (`judge_items`). They are not comparable in
absolute terms with DEEMO's GPT-judged 6.20 / 7.66 (other data, other judge); those
are printed as a reference only. Baselines that give the numbers meaning are
computed by export/evaluate.py: the template sentence (restates the measured cues),
and a shuffled-cue answer (another item's cues and label).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from edge_app.llm.reasoning import named_emotions
from edge_app.records import LABELS

DEEMO_REFERENCE = {"clue_overlap": 6.20, "label_overlap": 7.66}

_W = lambda s: frozenset(s.split())
_PAREN = re.compile(r"\s*\([^)]*\)")
_CLAUSE = re.compile(r"[.!?;,:]+(?:\s+|$)|\b(?:and|but|while|with|whereas|or)\b")
_WORD = re.compile(r"[a-z]+")

_PITCH = _W("pitch intonation tone f0 melody")
_VARY = _W("variability variation variations varied varies vary varying variable range expressive lively")


@dataclass(frozen=True)
class CueKind:
    name: str
    modality: str  # voice | body | never (not measurable by this system)
    alternatives: tuple[tuple[frozenset[str], ...], ...]
    unless: frozenset[str] = frozenset()

    def cited_in(self, words: set[str]) -> bool:
        if words & self.unless:
            return False
        return any(all(words & g for g in alt) for alt in self.alternatives)


def _k(name: str, modality: str, *alts: tuple[str, ...] | str, unless: str = "") -> CueKind:
    groups = []
    for alt in alts:
        alt = (alt,) if isinstance(alt, str) else alt
        groups.append(tuple(_W(g) if isinstance(g, str) else g for g in alt))
    return CueKind(name, modality, tuple(groups), _W(unless))


CATALOGUE: tuple[CueKind, ...] = (
    # voice prosody (edge_app/cues/__init__.py: _describe_prosody)
    _k("raised pitch variability", "voice", (_PITCH, _VARY), unless="flat monotone monotonous narrow"),
    _k("flat pitch", "voice", (_PITCH, "flat monotone monotonous"), "monotone monotonous"),
    _k("rising pitch", "voice", (_PITCH, "rising rises rise rose upward")),
    _k("falling pitch", "voice", (_PITCH, "falling falls fall fell downward dropping drops")),
    _k("strong loudness variation", "voice", ("loudness volume intensity energy", _VARY | _W("fluctuating fluctuates changes changing"))),
    _k("fast speaking rate", "voice", "fast faster quick quickly rapid rapidly hurried rushed"),
    _k("slow speaking rate", "voice", "slow slower slowly sluggish unhurried"),
    _k("long pauses", "voice", "pause pauses paused pausing silence silences hesitation hesitations hesitant"),
    _k("irregular voice quality", "voice", "irregular jitter shimmer trembling tremor shaky quivering hoarse rough breathy creaky cracking"),
    _k("little or no speech", "voice", ("little no barely hardly", "speech speaking talking")),
    # body (edge_app/cues/__init__.py: _EVENT_PHRASES, _describe_body)
    _k("hand to face", "body", ("hand hands", "face")),
    _k("hand to head", "body", ("hand hands", "head")),
    _k("hand to neck", "body", ("hand hands", "neck")),
    _k("hand on arm", "body", ("hand hands", "arm")),
    _k("hands together", "body", ("hands", "together rubbing clasped")),
    _k("gesturing", "body", "gesturing gestures gesture gesticulating"),
    _k("arms crossed", "body", ("arms arm", "crossed folded")),
    _k("hunched shoulders", "body", "hunched hunching slumped slouched slumping"),
    _k("hands shielding the body", "body", "shielding shield shields"),
    _k("head down", "body", ("head", "down lowered bowed")),
    _k("leaning forward", "body", ("leaning leans lean", "forward")),
    _k("leaning back", "body", ("leaning leans lean", "back backward backwards")),
    _k("arms held close to the body", "body", ("arms", "close")),
    _k("open, expansive arms", "body", ("arms", "open expansive")),
    _k("uneven shoulders", "body", ("uneven asymmetric", "shoulders shoulder")),
    _k("high motion energy", "body", ("motion movement moving", "energy energetic")),
    _k("very still", "body", "still stillness motionless"),
    _k("frequent hand movements", "body", ("hand hands", "movements movement moving")),
    _k("person mostly out of view", "body", ("view visible", "out not")),
    # never measured: voice level, pitch level, face, words
    _k("loud voice (level)", "never", "loud louder loudly shouting shouts shout shouted yelling screaming screams"),
    _k("quiet voice (level)", "never", "quiet quietly soft softly whisper whispering whispers hushed faint"),
    _k("high pitch (level)", "never", ("high higher shrill squeaky", _PITCH | _W("pitched voice")), unless="variability variation range jitter shimmer motion"),
    _k("low pitch (level)", "never", ("low lower deep deeper", _PITCH | _W("pitched voice")), unless="variability variation range energy motion"),
    _k("facial expression", "never", "smile smiling smiles smiled frown frowning frowns eyes eye brow brows eyebrows mouth lips tears crying cries facial grin grinning", unless="hand hands"),
    _k("spoken words / content", "never", "subtitle subtitles sentence statement wording lyrics"),
)

GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"happy", "surprised"}),
    frozenset({"neutral", "calm"}),
    frozenset({"angry", "fearful", "disgust"}),
    frozenset({"sad"}),
)
assert set().union(*GROUPS) == set(LABELS)

_STOP = _W("a an the to of and or in on at for with from by is are was were be s st ms db syll")


def _clauses(text: str) -> list[set[str]]:
    """Word sets per clause; parenthesised details ("(2.3 st range)") are not cue names."""
    parts = _CLAUSE.split(_PAREN.sub("", text).lower())
    return [w for w in (set(_WORD.findall(p)) for p in parts) if w]


def _strip(phrase: str) -> str:
    head, sep, rest = phrase.partition(":")
    if sep and head.strip().lower() in ("voice", "body"):
        phrase = rest
    return _PAREN.sub("", phrase).strip()


def _content(words: set[str]) -> set[str]:
    return {w for w in words if w not in _STOP and len(w) > 2}


def measured_kinds(cues: Sequence[str]) -> set[str]:
    """Catalogue kinds named by the measured cue phrases (unknown phrases: their own kind)."""
    out: set[str] = set()
    for c in cues:
        words = set(_WORD.findall(_strip(c).lower()))
        hit = {k.name for k in CATALOGUE if k.cited_in(words)}
        out |= hit or ({"phrase:" + " ".join(sorted(_content(words)))} if _content(words) else set())
    return out


def cited_kinds(text: str, extra: Sequence[str] = ()) -> set[str]:
    """Kinds the text names, clause by clause; `extra` = unknown measured phrase kinds."""
    out: set[str] = set()
    for words in _clauses(text):
        out |= {k.name for k in CATALOGUE if k.cited_in(words)}
        for kind in extra:
            terms = set(kind.removeprefix("phrase:").split())
            if terms and len(terms & words) >= math.ceil(len(terms) / 2):
                out.add(kind)
    return out


def _credit(e: str, truth: str) -> float:
    if e == truth:
        return 1.0
    return 0.5 if any(e in g and truth in g for g in GROUPS) else 0.0


@dataclass(frozen=True)
class Judgement:
    clue: float | None  # 0-10, None when nothing was measured
    label: float  # 0-10
    cited: frozenset[str]
    measured: frozenset[str]
    hallucinated: frozenset[str]


def judge(reasoning: str, cues: Sequence[str], truth: str, label: str | None = None) -> Judgement:
    """Score one answer: `reasoning` text, the measured `cues` phrases, the true label,
    and the answer's label (its emotion word counts towards label overlap)."""
    m = measured_kinds(cues)
    c = cited_kinds(reasoning, [k for k in m if k.startswith("phrase:")])
    clue = None
    if m:
        tp = len(c & m)
        clue = 0.0 if tp == 0 else 10.0 * 2 * tp / (len(c) + len(m))  # = 10 x F1
    emos = named_emotions(reasoning) | ({label} if label in LABELS else named_emotions(label or ""))
    lab = 10.0 * sum(_credit(e, truth) for e in emos) / len(emos) if emos else 0.0
    return Judgement(clue, lab, frozenset(c), frozenset(m), frozenset(c - m))


def judge_items(items: Sequence[tuple[str, Sequence[str], str, str | None]]) -> dict:
    """Mean scores over (reasoning, cues, truth, label) items."""
    js = [judge(*it) for it in items]
    clues = [j.clue for j in js if j.clue is not None]
    return {
        "n": len(js),
        "clue_overlap": round(float(sum(clues) / len(clues)), 2) if clues else None,
        "label_overlap": round(float(sum(j.label for j in js) / max(1, len(js))), 2),
        "hallucinated_cues_per_item": round(sum(len(j.hallucinated) for j in js) / max(1, len(js)), 3),
        "items_with_hallucinated_cue": round(sum(bool(j.hallucinated) for j in js) / max(1, len(js)), 3),
        "n_no_cues": len(js) - len(clues),
    }
