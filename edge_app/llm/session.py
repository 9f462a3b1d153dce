"""One loaded model answering window after window with a KV-cached prompt prefix.

Per window:
  1. trim the KV cache back to the prefix (never re-evaluate it),
  2. evaluate the window: tagged blocks of injected vectors and the cue line,
     ending with "Emotion:",
  3. score every label as a full token sequence (constrained choice, never free
     text) and add the caller's optional prior -> `scores`, `label`,
  4. feed "<label>. Reasoning:" and decode the reasoning greedily, then keep only
     sentences naming given cues (else a template built from the cues).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edge_app.errors import ModelError, UsageError
from edge_app.llm import prompt, reasoning
from edge_app.llm.embedding_table import TokenEmbeddings
from edge_app.llm.model import LlmOptions, resolve_embed_scale, resolve_model_path
from edge_app.records import LABELS

log = logging.getLogger("deemo_edge.llm")

# Reasoning stops at the first line break or at turn markup (in case a model does not
# flag its end-of-turn token as end-of-generation).
_STOP_TEXT = ("\n", "<|im_end|>", "<end_of_turn>", "<|endoftext|>")


@dataclass(frozen=True)
class LlmAnswer:
    """The LLM stage's answer for one window.

    scores: probability per label (all of LABELS, summing to 1) after the prior.
    reasoning_source: "llm" when the text is the model's own (filtered to given cues),
        "template" when it was built from the cue list because the model named none.
    timings: seconds per stage ("window_s", "label_s", "reasoning_s", "total_s") and
        counts ("window_positions", "generated_tokens", "positions_decoded": all
        positions this call sent through llama_decode; the prefix is never among them).
    """

    label: str
    scores: dict[str, float]
    reasoning: str
    reasoning_source: Literal["llm", "template"]
    timings: dict[str, float] = field(default_factory=dict)


class LlmSession:
    """Loads the model once and answers windows; not thread-safe (one KV cache)."""

    def __init__(self, options: LlmOptions | None = None) -> None:
        self.options = options or LlmOptions()
        self._cancelled = threading.Event()
        path = resolve_model_path(self.options)
        try:
            from edge_app.llm.native import NativeModel
        except ImportError as err:
            raise ModelError(
                f"llama-cpp-python is not installed ({err}); install it to run the LLM stage"
            ) from err
        self._native = NativeModel(path, verbose=self.options.verbose)
        try:
            self._setup()
        except BaseException:
            self._native.close()
            raise
        self._rng = np.random.default_rng(self.options.seed)
        # Running estimates for deadline checks: seconds per generated token (measured at
        # load, then updated by every reasoning written) and tokens per reasoning.
        self._token_s_at_load = self._token_s = self._time_one_token()
        self._reason_tokens_mean = 24.0

    def _setup(self) -> None:
        nat, opt = self._native, self.options
        self.model_path = nat.path
        self.n_embd = nat.n_embd
        self.embed_scale = resolve_embed_scale(opt.embed_scale, nat.architecture, nat.n_embd)
        self.format = prompt.pick_format(opt.prompt_format, nat.architecture, nat.chat_template())
        # Labels follow "Emotion:" with a space, so " angry" is what the model would write.
        self.label_tokens = [nat.tokenize(" " + label, special=False) for label in LABELS]
        nat.init_context(
            n_ctx=opt.n_ctx,
            n_batch=opt.n_batch,
            n_threads=opt.resolved_threads(),
            n_threads_decode=opt.resolved_decode_threads(),
            n_seq_max=1 + len(LABELS),  # sequence 0 plus one fork per multi-token label
        )
        self.lora_path = opt.resolved_lora_path()
        self.prior_weight = opt.resolved_prior_weight(self.lora_path)
        if self.lora_path is not None:
            from edge_app.llm.model import validate_gguf

            nat.set_lora(validate_gguf(self.lora_path, "LoRA adapter"), opt.lora_scale)
        self._reason_tokens = nat.tokenize(prompt.REASONING_CUE)
        prefix = nat.tokenize(prompt.prefix_text(self.format))
        if nat.add_bos():
            prefix = [nat.bos()] + prefix
        if len(prefix) + 64 > nat.n_ctx:
            raise UsageError(
                f"n_ctx={nat.n_ctx} is too small for the {len(prefix)}-token prompt prefix"
            )
        nat.decode_tokens(prefix, 0, logits="none")
        self.n_prefix = len(prefix)
        self.prefix_evaluations = 1
        self._table = self._load_embedding_table() if opt.single_batch else None

    def _time_one_token(self, n: int = 4) -> float:
        """Seconds per single-token decode after the prefix (median of n), then forgotten."""
        nat, times = self._native, []
        token = self.label_tokens[0][0]
        for i in range(n):
            t0 = time.perf_counter()
            nat.decode_tokens([token], self.n_prefix + i)
            nat.logits()
            times.append(time.perf_counter() - t0)
        nat.truncate(self.n_prefix)
        return float(np.median(times))

    def _load_embedding_table(self) -> TokenEmbeddings | None:
        """The token-embedding table, if text sent as its rows gives the model exactly
        what the tokens would (checked once on a probe; else windows go segment by segment)."""
        nat = self._native
        table = TokenEmbeddings.load(nat.path, nat.n_embd)
        if table is None:
            return None
        probe = nat.tokenize(prompt.cue_line(["loud voice", "arms crossed"]) + prompt.ANSWER_CUE)
        nat.decode_tokens(probe, self.n_prefix, logits="last")
        want = nat.logits()
        nat.truncate(self.n_prefix)
        nat.decode_embeddings(table.rows(probe) * np.float32(self.embed_scale), self.n_prefix,
                              logits="last")
        got = nat.logits()
        nat.truncate(self.n_prefix)
        if not np.allclose(got, want, atol=1e-3, rtol=0):
            log.info("text as embedding rows does not match tokens on %s (max diff %.3g): "
                     "windows go segment by segment", nat.path.name, np.abs(got - want).max())
            return None
        return table

    @property
    def single_batch(self) -> bool:
        """True when each window is evaluated in one llama_decode call."""
        return self._table is not None

    # --- public ------------------------------------------------------------------------

    @property
    def positions_decoded(self) -> int:
        """Every position evaluated since loading (prefix included): lets callers verify reuse."""
        return self._native.n_decoded

    def answer(
        self,
        embeddings: prompt.Embeddings,
        cue_text: Sequence[str],
        *,
        prior: np.ndarray | Sequence[float] | None = None,
        prior_weight: float | None = None,
        reason: bool | Callable[[str], bool] = True,
        deadline: float | None = None,
    ) -> LlmAnswer:
        """Label, label probabilities and reasoning for one window.

        embeddings: projector output, (n, n_embd) float32, or {tag: (n, n_embd)} to wrap
            each block in its own tag (e.g. {"body": ..., "voice": ...}); None for none.
        cue_text: human-readable measured cues ("hand to face 1.2-2.0 s"); a "body:" or
            "voice:" prefix sets the modality used by the template reasoning.
        prior: optional per-label additive scores in LABELS order (e.g. log-probs of the
            encoders' classifier head), weighted by `prior_weight` (default from options).
            Scores = softmax((LLM label log-probs + w * prior) / (1 + w)): log-linear pooling,
            whose argmax is the plain sum's but whose probabilities keep the sources'
            sharpness (the plain sum at w = 6 showed 0.96 mean confidence at 60 %
            validation accuracy, benchmarks/results/score_calibration.md).
        reason: False skips generation (the costly part) and returns the template
            reasoning; a callable gets the chosen label and decides (e.g. generate
            only for windows whose label changed).
        deadline: time.perf_counter() value by which the answer must be back. Reasoning
            is generated only if it is expected to finish in time (running estimate of
            the per-token time and reasoning length) and stops, falling back to the
            template, if the deadline passes mid-sentence. None = no limit.
        """
        t0 = time.perf_counter()
        decoded0 = self._native.n_decoded
        cues = [c.strip() for c in cue_text if c and c.strip()]
        segments = prompt.window_segments(self.format, self._checked(embeddings), cues)
        self._native.truncate(self.n_prefix)  # forget the previous window, keep the prefix
        pos = self._eval_segments(segments)
        t1 = time.perf_counter()

        label_lp = self._label_logprobs(self._native.logits(), pos)
        term, w = self._prior_term(prior, prior_weight)
        scores = _softmax((label_lp + term) / (1.0 + w))
        best = int(np.argmax(scores))
        label = LABELS[best]
        t2 = time.perf_counter()

        if callable(reason):  # e.g. "only when the label changed" in a live loop
            reason = bool(reason(label))
        late = reason and deadline is not None and not self._fits(deadline)
        if late:  # no new measurement: let a load spike's estimate fade back to the baseline
            self._token_s += 0.1 * (self._token_s_at_load - self._token_s)
        text, n_gen = ("", 0)
        if reason and not late:
            text, n_gen, late = self._generate_reasoning(best, pos, deadline)
        kept = "" if late else reasoning.filter_reasoning(text, cues, label)
        source: Literal["llm", "template"] = "llm" if kept else "template"
        why = kept if kept else reasoning.template_reasoning(label, cues)
        t3 = time.perf_counter()
        # Leave only the prefix cached so nothing of this window can leak into the next.
        self._native.truncate(self.n_prefix)
        return LlmAnswer(
            label=label,
            scores={lab: float(p) for lab, p in zip(LABELS, scores)},
            reasoning=why,
            reasoning_source=source,
            timings={
                "window_s": t1 - t0,
                "label_s": t2 - t1,
                "reasoning_s": t3 - t2,
                "total_s": time.perf_counter() - t0,
                "window_positions": float(pos - self.n_prefix),
                "generated_tokens": float(n_gen),
                "reasoning_skipped_for_deadline": float(late),
                "positions_decoded": float(self._native.n_decoded - decoded0),
            },
        )

    def cancel(self) -> None:
        """Make a running (or the next) `answer` stop generating at the next token.

        Called from another thread at shutdown, so a live loop can stop within its
        deadline instead of waiting for a full reasoning sentence.
        """
        self._cancelled.set()

    def set_threads(self, n_threads: int, n_threads_decode: int | None = None) -> None:
        """Change the CPU threads used from the next window on (no reload); generation
        threads change too when `n_threads_decode` is given."""
        self.options.n_threads = n_threads
        if n_threads_decode is not None:
            self.options.n_threads_decode = n_threads_decode
        self._native.set_threads(self.options.resolved_threads(),
                                 self.options.resolved_decode_threads())

    def close(self) -> None:
        self._native.close()

    def __enter__(self) -> LlmSession:  # not typing.Self: it needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- steps -------------------------------------------------------------------------

    def _checked(self, embeddings: prompt.Embeddings) -> prompt.Embeddings:
        if embeddings is None:
            return None
        blocks = embeddings if isinstance(embeddings, Mapping) else {"signals": embeddings}
        out = {}
        for name, arr in blocks.items():
            a = np.asarray(arr, dtype=np.float32)
            if a.ndim != 2 or a.shape[1] != self.n_embd:
                raise UsageError(
                    f"injected embeddings must have shape (n, {self.n_embd}), got {a.shape}"
                )
            if not np.all(np.isfinite(a)):
                raise UsageError("injected embeddings contain NaN or infinity")
            out[name] = a * np.float32(self.embed_scale) if self.embed_scale != 1.0 else a
        return out if isinstance(embeddings, Mapping) else out["signals"]

    def _eval_segments(self, segments: list[prompt.Segment]) -> int:
        """Evaluate the window after the prefix; returns the next free position. The last
        segment is always text ending in "Emotion:", whose logits are kept."""
        nat, pos = self._native, self.n_prefix
        pieces = [nat.tokenize(s) if isinstance(s, str) else s for s in segments]
        total = pos + sum(len(p) for p in pieces) + max(map(len, self.label_tokens))
        total += len(self._reason_tokens) + self.options.max_reasoning_tokens
        if total > nat.n_ctx:
            raise UsageError(
                f"window needs {total} positions but n_ctx is {nat.n_ctx}: "
                "raise n_ctx or send fewer cues/vectors"
            )
        if self._table is not None:  # one call: text looked up as rows, vectors as they are
            scale = np.float32(self.embed_scale)
            rows = [p if isinstance(p, np.ndarray) else self._table.rows(p) * scale for p in pieces]
            nat.decode_embeddings(np.concatenate(rows), pos, logits="last")
            return pos + sum(len(p) for p in pieces)
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if isinstance(piece, np.ndarray):
                nat.decode_embeddings(piece, pos)
            else:
                nat.decode_tokens(piece, pos, logits="last" if last else "none")
            pos += len(piece)
        return pos

    def _label_logprobs(self, logits: np.ndarray, pos: int) -> np.ndarray:
        """Log-probability of each label's full token sequence after "Emotion:".

        Single-token labels come straight from `logits`. Multi-token labels fork
        sequence 0 once per label (shared KV cells, no copy) and evaluate all of their
        continuations in one batch, one sequence each.
        """
        first = _log_softmax(logits)
        out = np.array([first[t[0]] for t in self.label_tokens], dtype=np.float64)
        multi = [i for i, t in enumerate(self.label_tokens) if len(t) > 1]
        if not multi:
            return out
        nat = self._native
        tokens: list[int] = []
        seqs: list[int] = []
        positions: list[int] = []
        for seq, i in enumerate(multi, start=1):
            nat.fork(0, seq)
            body = self.label_tokens[i][:-1]  # the last token's logits are not needed
            tokens += body
            seqs += [seq] * len(body)
            positions += range(pos, pos + len(body))
        nat.decode_tokens(tokens, pos, seq_ids=seqs, positions=positions, logits="all")
        row = 0
        for seq, i in enumerate(multi, start=1):
            toks = self.label_tokens[i]
            for nxt in toks[1:]:
                out[i] += _log_softmax(nat.logits(row))[nxt]
                row += 1
            nat.drop_sequence(seq)
        return out

    def _prior_term(
        self, prior: np.ndarray | Sequence[float] | None, weight: float | None
    ) -> tuple[np.ndarray, float]:
        """(weighted prior, its weight); no prior: zeros and weight 0."""
        if prior is None:
            return np.zeros(len(LABELS)), 0.0
        p = np.asarray(prior, dtype=np.float64).reshape(-1)
        if p.shape != (len(LABELS),) or not np.all(np.isfinite(p)):
            raise UsageError(f"prior must be {len(LABELS)} finite numbers in LABELS order")
        w = self.prior_weight if weight is None else float(weight)
        return w * p, w

    def _fits(self, deadline: float) -> bool:
        """Whether a reasoning of the usual length is expected to finish by `deadline`."""
        expected = (1 + self._reason_tokens_mean) * self._token_s
        return time.perf_counter() + expected <= deadline

    def _generate_reasoning(self, label_index: int, pos: int,
                            deadline: float | None = None) -> tuple[str, int, bool]:
        """Decode after "Emotion: <label>. Reasoning:" until a stop; returns (text, n tokens,
        whether the deadline cut it short)."""
        nat, opt = self._native, self.options
        t0 = time.perf_counter()
        feed = self.label_tokens[label_index] + self._reason_tokens
        nat.decode_tokens(feed, pos)
        pos += len(feed)
        out = b""
        n = sentences = 0
        late = False
        history: list[int] = []
        for n in range(1, opt.max_reasoning_tokens + 1):
            if self._cancelled.is_set():
                break
            if deadline is not None and time.perf_counter() > deadline:
                late = True
                break
            logits = nat.logits()
            banned = repeated_ngram_tokens(history, opt.no_repeat_ngram)
            if banned:
                logits[banned] = -np.inf
            tok = self._pick(logits)
            history.append(tok)
            if nat.is_eog(tok):
                break
            piece = nat.piece(tok)
            # A sentence ends at ".!?" followed by white space (not "1.2"); the check
            # happens before the next token is evaluated, so stopping costs nothing.
            if out.endswith((b".", b"!", b"?")) and piece[:1].isspace():
                sentences += 1
                if sentences >= opt.max_reasoning_sentences:
                    break
            out += piece
            if any(s.encode() in out for s in _STOP_TEXT):
                break
            if n < opt.max_reasoning_tokens:
                nat.decode_tokens([tok], pos)
                pos += 1
        # One decode per token plus the feed: update the running estimates (EMA).
        self._token_s += 0.2 * ((time.perf_counter() - t0) / (n + 1) - self._token_s)
        if not late:
            self._reason_tokens_mean += 0.2 * (n - self._reason_tokens_mean)
        text = out.decode("utf-8", "ignore")
        for stop in _STOP_TEXT:
            text = text.split(stop, 1)[0]
        return text.strip(), n, late

    def _pick(self, logits: np.ndarray) -> int:
        if self.options.temperature <= 0:
            return int(np.argmax(logits))
        p = _softmax(logits.astype(np.float64) / self.options.temperature)
        return int(self._rng.choice(len(p), p=p))


def repeated_ngram_tokens(history: Sequence[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in `history` (n <= 1: none).

    A small model restating cues loops ("strong loudness variation, and strong loudness
    variation"); banning repeated trigrams is the usual cure and costs nothing.
    """
    if n <= 1 or len(history) < n - 1:
        return []
    prefix = tuple(history[len(history) - n + 1:])
    return [history[i + n - 1] for i in range(len(history) - n + 1)
            if tuple(history[i:i + n - 1]) == prefix]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()
