"""Keep the reasoning honest: it may only name cues the model was given.

A small model happily invents cues ("a smile", "tears"). The generated text is split
into sentences; a sentence is kept when it names at least one given cue, names no
known cue word that was *not* given (faces are never given: the video is
de-identified) and names no emotion but the answer's label. If nothing survives, a
template sentence is built from the cue list.
The template is an honest fallback: it restates the measured cues and the chosen
label, it does not claim to be the model's reasoning (`reasoning_source="template"`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that name an observable cue. Used to spot cues the model invented; a word in
# this list is allowed only when it also occurs in a given cue.
VOICE_WORDS = _words(
    "voice pitch loud loudness volume quiet soft tempo speech speaking rate pause pauses "
    "energy intensity jitter shimmer tone prosody whisper shout shouting trembling tremor "
    "monotone intonation breath breathing sigh"
)
BODY_WORDS = _words(
    "hand hands arm arms face head shoulder shoulders posture lean leaning fidget fidgeting "
    "gesture gestures leg legs foot feet fist fists crossed step nod nodding shake shaking "
    "slumped slump body torso chest neck touch touching still stillness movement motion"
)
# Never given (de-identified input), so always invented when named.
FACE_WORDS = _words("smile smiling frown frowning eye eyes brow brows mouth lips tears crying")
# Never given either: the device does not transcribe speech, so "matches the description of
# angry in the given sentence" cites content it never had (the stage-3 adapter of 2026-12-07
# wrote that on 11 of 240 test clips; export/judge.py counts it as "spoken words / content").
CONTENT_WORDS = _words("subtitle subtitles sentence sentences statement statements wording lyrics transcript")
_CUE_VOCAB = VOICE_WORDS | BODY_WORDS | FACE_WORDS | CONTENT_WORDS

# Words that name an emotion, by label (also export/judge.py's label lexicon). A sentence
# that names another emotion than the answer's label argues against the answer: with body
# and voice cues the adapter wrote "The hunched shoulders and hand to head convey anger, and the
# raised pitch variability and falling pitch convey disgust" for an answer of angry
# (benchmarks/results/reasoning_video.md).
EMOTION_WORDS: dict[str, str] = {
    w: lab
    for lab, words in {
        "neutral": "neutral neutrality",
        "calm": "calm calmness calmly relaxed peaceful serene composed",
        "happy": "happy happiness joy joyful cheerful glad delighted excited excitement pleased",
        "sad": "sad sadness unhappy sorrow sorrowful melancholy depressed grief gloomy upset",
        "angry": "angry anger furious rage annoyed irritated mad",
        "fearful": "fearful fear afraid scared anxious anxiety nervous frightened worried worry panic",
        "disgust": "disgust disgusted disgusting revulsion contempt",
        "surprised": "surprised surprise astonished amazed shocked startled",
    }.items()
    for w in words.split()
}

_STOP = _words(
    "a an the to of and or in on at for with from by is are was were be been s ms sec "
    "seconds high low very more less than some"
)
_WORD = re.compile(r"[a-z]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _stem(word: str) -> str:
    # Crude suffix stripping so "crossed"/"crossing"/"crosses" and "pauses"/"pause" meet.
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def cue_terms(cue: str) -> set[str]:
    return _terms(_strip_modality(cue))


def _strip_modality(cue: str) -> str:
    head, sep, rest = cue.partition(":")
    return rest.strip() if sep and head.strip().lower() in ("body", "voice") else cue.strip()


def cue_modality(cue: str) -> str:
    """'voice' or 'body': an explicit 'voice:'/'body:' prefix wins, else the cue's words."""
    head, sep, _ = cue.partition(":")
    if sep and head.strip().lower() in ("body", "voice"):
        return head.strip().lower()
    words = set(_WORD.findall(cue.lower()))
    return "voice" if words & VOICE_WORDS else "body"


def mentioned_cues(text: str, cues: Sequence[str]) -> list[str]:
    """Given cues that `text` names: at least half of a cue's content words appear."""
    found = _terms(text)
    out = []
    for cue in cues:
        terms = cue_terms(cue)
        if terms and len(terms & found) >= math.ceil(len(terms) / 2):
            out.append(cue)
    return out


def invented_cue_words(text: str, cues: Sequence[str]) -> set[str]:
    """Cue words in `text` that occur in none of the given cues. The modality nouns
    ("voice", "body") are allowed once a cue of that modality is given."""
    given = set().union(*(cue_terms(c) | {cue_modality(c)} for c in cues)) if cues else set()
    vocab = {_stem(w) for w in _CUE_VOCAB}
    return {t for t in _terms(text) if t in vocab and t not in given}


def named_emotions(text: str) -> set[str]:
    """The labels whose emotion words `text` uses (negation is not parsed)."""
    return {EMOTION_WORDS[w] for w in _WORD.findall(text.lower()) if w in EMOTION_WORDS}


def filter_reasoning(text: str, cues: Sequence[str], label: str | None = None) -> str:
    """Sentences of `text` that name a given cue, no invented one and, with `label`, no
    emotion other than it ('' if none), each without clauses it already said."""
    kept = [
        drop_repeated_clauses(s.strip())
        for s in _SENTENCE.split(text.strip())
        if s.strip() and latin_only(s) and not names_pitch_level(s) and mentioned_cues(s, cues)
        and not invented_cue_words(s, cues) and (label is None or named_emotions(s) <= {label})
    ]
    return " ".join(kept)


# A voice's pitch LEVEL (high, low, deep) is never measured: the de-identifier moves every
# voice to one target pitch, and prosody reports the contour relative to the speaker. "high"
# and "low" are stop words above (they qualify measured cues: "high motion energy"), so a
# clause like "the voice is high pitch" would pass as naming "falling pitch"; caught here.
_LEVEL = _words("high higher low lower deep deeper shrill squeaky")
_PITCHED = _words("pitch pitched voice tone intonation")
_NOT_LEVEL = _words("variability variation varied range jitter shimmer energy motion rising falling")
_CLAUSE_SPLIT = re.compile(r"[,;:]|\band\b|\bbut\b|\bwhile\b|\bwith\b")


def names_pitch_level(sentence: str) -> bool:
    """A clause that calls the voice's pitch high or low (not its variability or contour)."""
    for clause in _CLAUSE_SPLIT.split(sentence.lower()):
        words = set(_WORD.findall(clause))
        if words & _LEVEL and words & _PITCHED and not words & _NOT_LEVEL:
            return True
    return False


def latin_only(sentence: str) -> bool:
    """No letter outside the Latin script: the prompt and cues are English, and a small
    multilingual model (Gemma 3 270M without an adapter) drifts into other scripts mid-sentence
    ("... the voice is no speech이다.")."""
    return all(not ch.isalpha() or unicodedata.name(ch, "").startswith("LATIN") for ch in sentence)


_CLAUSE = re.compile(r",\s*")


def drop_repeated_clauses(sentence: str) -> str:
    """Drop comma-separated clauses that repeat an earlier one (case and a leading
    'and' ignored): a small model restating cues loops, sometimes changing only the case
    ("strong loudness variation, and strong loudNESS variation")."""
    end = sentence[-1] if sentence[-1:] in ".!?" else ""
    body = sentence[:-1] if end else sentence
    seen: set[str] = set()
    kept: list[str] = []
    for clause in _CLAUSE.split(body):
        key = " ".join(re.sub(r"^and\s+", "", clause.strip().lower()).split())
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(clause)
    if len(kept) >= 2 and not kept[-1].lstrip().lower().startswith("and ") and len(kept) < len(_CLAUSE.split(body)):
        kept[-1] = "and " + kept[-1].lstrip()
    return ", ".join(kept) + end


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def template_reasoning(label: str, cues: Sequence[str]) -> str:
    """'The voice shows X and the body shows Y, which suggests <label>.'"""
    voice = [_strip_modality(c) for c in cues if c.strip() and cue_modality(c) == "voice"]
    body = [_strip_modality(c) for c in cues if c.strip() and cue_modality(c) == "body"]
    parts = []
    if voice:
        parts.append(f"the voice shows {_join(voice)}")
    if body:
        parts.append(f"the body shows {_join(body)}")
    if not parts:
        return (
            f"No body or voice cue was measured in this window; {label} rests on the "
            "learned signals alone."
        )
    sentence = " and ".join(parts)
    return f"{sentence[0].upper()}{sentence[1:]}, which suggests {label}."
