"""cues -> encoders -> projector -> LLM: one `Answer` per window.

The encoders (ONNX) turn a window's de-identified audio and pose samples into a
few projected tokens each plus class probabilities; the LLM reads the tokens
and the measured cue phrases and chooses a label (scored choice over LABELS,
with the encoders' probabilities as a prior) and writes the reasoning.
Nothing here sees media other than `DeidAudio` and pose landmarks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_app.cues import Cues, PoseSample
from edge_app.encoders.runtime import AudioEncoder, BodyEncoder, EncoderOptions, EncoderOutput
from edge_app.errors import UsageError
from edge_app.llm import LlmOptions, LlmSession
from edge_app.llm.model import is_default_lora
from edge_app.records import LABELS, DeidAudio

log = logging.getLogger("deemo_edge.answer")
EPS = 1e-4
# When the LLM writes reasoning text (see AnswerOptions.reasoning).
REASONING_POLICIES = ("always", "on_change", "never")


@dataclass
class AnswerOptions:
    """The recognition stage: encoders + LLM."""

    # Run encoders and the LLM (label, scores, reasoning); False = cues only.
    enabled: bool = True
    # When the LLM writes the reasoning: "always"; "on_change" (only when the label
    # differs from the previous window's, else the template from the cues: the LLM's
    # costliest step, skipped where it adds least, e.g. live); "never" (template only).
    reasoning: str = "always"
    # The LLM reads at most this many cue phrases per modality, the first ones (the
    # body's NFBL events come before posture and motion, the voice's pitch before
    # loudness, rate and pauses). Every cue stays in the JSON `clues`. With all of
    # them (up to ~9) the prompt grew by ~25 tokens and the stage-3 model listed every
    # cue in a run-on sentence up to the token cap (1.2 s instead of ~0.5 s). Default 2.
    max_cues_per_modality: int = 2
    # Encoder models and backend (auto | tensorrt | cuda | cpu).
    encoders: EncoderOptions = field(default_factory=EncoderOptions)
    # The GGUF model and llama.cpp settings.
    llm: LlmOptions = field(default_factory=LlmOptions)


@dataclass(frozen=True)
class Answer:
    label: str
    scores: dict[str, float]
    reasoning: str
    reasoning_source: str
    heads: dict[str, dict[str, Any]]
    timings: dict[str, float]
    # The LLM would have written the reasoning but the deadline did not leave time.
    reasoning_late: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "reasoning": self.reasoning,
            "reasoning_source": self.reasoning_source,
            **({"reasoning_late": True} if self.reasoning_late else {}),
            "heads": self.heads,
        }


class Answerer:
    """Loads the encoders and the LLM once; answers windows one at a time."""

    def __init__(self, options: AnswerOptions):
        if options.max_cues_per_modality < 1:
            raise UsageError(f"answer.max_cues_per_modality = {options.max_cues_per_modality}; "
                             "must be >= 1")
        if options.reasoning not in REASONING_POLICIES:
            raise UsageError(f"answer.reasoning = {options.reasoning!r}; allowed: "
                             f"{', '.join(REASONING_POLICIES)}")
        self.options = options
        self._last_label: str | None = None
        self.audio = AudioEncoder(options.encoders)
        self.body = BodyEncoder(options.encoders)
        self.llm = LlmSession(options.llm)
        self.session_prior_weight = self._session_prior_weight()
        self.notice = self._projector_notice()
        if self.notice:
            log.warning("%s", self.notice)

    def _projector_notice(self) -> str | None:
        """None when the encoders' tokens fit the LLM; else why they are not injected. The
        projector is trained for one LLM's embedding space (SmolLM2's by default): another
        GGUF (e.g. Gemma 3 270M, 640 wide) still gets the measured cues as text and the
        encoders' probabilities as the label prior, but not the vectors."""
        widths = sorted({self.audio.token_width, self.body.token_width})
        if widths == [self.llm.n_embd]:
            return None
        return (f"the encoders' projector was trained for a {'/'.join(map(str, widths))}-wide LLM, "
                f"{self.llm.model_path.name} is {self.llm.n_embd} wide: encoder vectors are not injected "
                f"(label from the cue text and the encoders' prior); rebuild models/ for this LLM to inject them")

    def _session_prior_weight(self) -> float | None:
        """The fusion weight while the voice session head answers: the manifest's, when the
        LLM's own weight is also the manifest's ("auto" with the default adapter), else
        None (the LLM's weight for every window)."""
        head = self.audio.session_head
        if head is None or self.options.llm.prior_weight != "auto" or not is_default_lora(self.llm.lora_path):
            return None
        return head.prior_weight

    def close(self) -> None:
        self.llm.close()

    def _should_reason(self, label: str) -> bool:
        policy = self.options.reasoning
        return policy == "always" or (policy == "on_change" and label != self._last_label)

    def new_session(self) -> None:
        """A new voice de-identification session began (a new file): forget the speaker's levels."""
        self.audio.reset_session()

    def cancel(self) -> None:
        """Stop an answer in progress at its next token (called at shutdown)."""
        self.llm.cancel()

    def answer(self, cues: Cues, poses: Sequence[PoseSample] | None,
               audio: DeidAudio | None, deadline: float | None = None) -> Answer:
        """`deadline` (time.perf_counter()): LLM reasoning only if it fits, else the template."""
        t0 = time.perf_counter()
        visible = [p for p in poses or () if p.has_person]
        voice = self.audio.encode(audio) if audio is not None and _has_speech(cues) else None
        body = self.body.encode(visible) if len(visible) >= 3 else None
        t1 = time.perf_counter()
        embeddings = {name: out.tokens for name, out in (("body", body), ("voice", voice))
                      if out and not self.notice}  # fmt: skip
        reply = self.llm.answer(
            embeddings or None,
            llm_cue_lines(cues.describe_body(), cues.describe_voice(),
                          self.options.max_cues_per_modality),
            prior=_prior(voice, body),  # weighted by llm.prior_weight, or the session head's
            prior_weight=self.session_prior_weight if voice is not None and voice.source == "session" else None,
            reason=self._should_reason,
            deadline=deadline,
        )
        self._last_label = reply.label
        heads = {name: head(out) for name, out, head in (("voice", voice, _voice_head), ("body", body, _head)) if out}
        return Answer(
            label=reply.label,
            scores=reply.scores,
            reasoning=reply.reasoning,
            reasoning_source=reply.reasoning_source,
            heads=heads,
            timings={"encoders": t1 - t0, "llm": reply.timings.get("total_s", 0.0),
                     **{f"llm_{k[:-2]}": v for k, v in reply.timings.items()
                        if k in ("window_s", "label_s", "reasoning_s")}},
            reasoning_late=bool(reply.timings.get("reasoning_skipped_for_deadline")),
        )


def live_answer_hook(config: Any):
    """The encoders + LLM as `LiveSession`'s answer hook; None when disabled.

    `config` is the whole `Config`: the live loop's own reasoning policy
    (`live.reasoning`) replaces `answer.reasoning`. The hook has a `cancel()` that
    LiveSession calls at shutdown, so an answer in progress stops at its next token.
    """
    if not config.answer.enabled:
        return None
    answerer = Answerer(dataclasses.replace(config.answer, reasoning=config.live.reasoning))

    def hook(cues: Cues, window: Any) -> dict[str, Any]:
        poses = window.poses if window.has_video else None
        answer = answerer.answer(cues, poses, window.audio, deadline=window.deadline)
        # "stage_timings" goes into the window's `timings` (LiveSession.analyse)
        return {**answer.to_dict(), "stage_timings": answer.timings}

    hook.cancel = answerer.cancel  # type: ignore[attr-defined]
    return hook


def _has_speech(cues: Cues) -> bool:
    return cues.prosody is not None and (cues.prosody.voiced_ratio or 0.0) > 0.05


def llm_cue_lines(body: Sequence[str], voice: Sequence[str], max_per_modality: int) -> list[str]:
    """Cue phrases tagged with their modality, as the LLM prompt expects (and as stage 3
    trained it), the first `max_per_modality` of each."""
    return [f"body: {c}" for c in body[:max_per_modality]] + [
        f"voice: {c}" for c in voice[:max_per_modality]
    ]


def _prior(voice: EncoderOutput | None, body: EncoderOutput | None) -> np.ndarray | None:
    """Log-probability prior in LABELS order from the classification heads.

    The voice head covers all 8 labels. The body head knows only 4 (neutral, happy,
    sad, angry): it re-weights those relative to each other and says nothing about
    the rest, so a visible body never rules out e.g. "fearful".
    """
    if voice is None and body is None:
        return None
    prior = np.zeros(len(LABELS), np.float64)
    if voice is not None:
        prior += np.log(voice.probs8() + EPS)
    if body is not None:
        for label, p in zip(body.labels, body.probs):
            prior[LABELS.index(label)] += np.log(p + EPS) - np.log(1.0 / len(body.labels))
    return prior - prior.max()


def _head(out: EncoderOutput) -> dict[str, Any]:
    return {
        "label": out.label,
        "probs": {lab: round(float(p), 4) for lab, p in zip(out.labels, out.probs)},
        "backend": out.backend,
    }


def _voice_head(out: EncoderOutput) -> dict[str, Any]:
    """The voice head also says whether the session head answered, after how many windows."""
    return {**_head(out), "source": out.source, "session_windows": out.session_windows}


def overall_answer(windows: Sequence[tuple[float, Answer]]) -> dict[str, Any] | None:
    """Clip-level label: window scores averaged with their durations as weights.

    The reasoning is that of the window that most supports the overall label.
    """
    if not windows:
        return None
    weights = np.array([max(d, 1e-3) for d, _ in windows])
    matrix = np.array([[a.scores[lab] for lab in LABELS] for _, a in windows])
    mean = (weights[:, None] * matrix).sum(0) / weights.sum()
    best = int(np.argmax(mean))
    support = max(windows, key=lambda item: item[1].scores[LABELS[best]])[1]
    return {
        "label": LABELS[best],
        "scores": {lab: round(float(p), 4) for lab, p in zip(LABELS, mean)},
        "reasoning": support.reasoning,
    }
