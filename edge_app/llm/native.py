"""Thin layer over llama.cpp's C API (through llama-cpp-python's ctypes bindings).

Why not `llama_cpp.Llama`: the session mixes batches of raw embeddings with ordinary
tokens, reads logits at chosen positions, forks sequences to score multi-token labels
and trims the KV cache back to a cached prefix; the high-level class exposes none of
that. Everything here is synchronous and single-threaded from Python's side.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Idle OpenMP workers sleep instead of spinning. On a 2-core device the other pipeline
# stages run at the same time, and spinning workers then steal the cores they wait on
# (measured under load, 2 threads, 64-token prompt: 2.3-3.4 s spinning vs 1.4 s passive).
# Only takes effect if no library loaded the OpenMP runtime earlier; the user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import llama_cpp
import numpy as np

from edge_app.errors import ModelError

_log = logging.getLogger("edge_app.llm.native")

_GGML_LOG_LEVEL_ERROR = 3
_verbose = False
_backend_ready = False


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp logs every tensor and buffer while loading. Quiet unless asked; errors
    # still reach Python logging (the caller raises a ModelError with the summary).
    if _verbose:
        sys.stderr.write(text.decode("utf-8", "replace"))
    elif level == _GGML_LOG_LEVEL_ERROR:
        _log.info("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


def _init_backend(verbose: bool) -> None:
    global _verbose, _backend_ready
    _verbose = verbose
    # Replaces the callback llama-cpp-python installs on import, which prints everything
    # unless its logger has been configured. The module-level reference keeps it alive.
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    if not _backend_ready:
        llama_cpp.llama_backend_init()
        _backend_ready = True


class NativeModel:
    """One model, one context, two reusable batches (tokens, embeddings).

    `n_decoded` counts every position sent through llama_decode, so callers and tests
    can check what was (re)evaluated.
    """

    def __init__(self, path: Path, *, verbose: bool = False) -> None:
        _init_backend(verbose)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
        if not self.model:
            self.model = None
            raise ModelError(
                f"llama.cpp could not load the model (unsupported or corrupt GGUF): {path}"
            )
        self.path = path
        self.ctx = None
        self._adapter = None
        self._batches: list[llama_cpp.llama_batch] = []
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_embd = int(self._n_embd_input())
        self.architecture = self.meta("general.architecture") or ""
        self.n_decoded = 0
        self.n_decode_calls = 0

    # --- model facts -----------------------------------------------------------------

    def _n_embd_input(self) -> int:
        # Size of vectors the input layer accepts; differs from n_embd on a few vision
        # models. Older bindings lack the function.
        fn = getattr(llama_cpp, "llama_model_n_embd_inp", None)
        return fn(self.model) if fn is not None else llama_cpp.llama_model_n_embd(self.model)

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = llama_cpp.llama_model_meta_val_str(self.model, key.encode("utf-8"), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", "replace") if raw else None

    def add_bos(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))

    def bos(self) -> int:
        return int(llama_cpp.llama_vocab_bos(self.vocab))

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    # --- context ---------------------------------------------------------------------

    def init_context(
        self, *, n_ctx: int, n_batch: int, n_threads: int, n_seq_max: int,
        n_threads_decode: int | None = None,
    ) -> None:
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq_max
        # llama.cpp: n_threads for single-token decodes, n_threads_batch for batches.
        cparams.n_threads = n_threads_decode or n_threads
        cparams.n_threads_batch = n_threads
        # One KV buffer shared by all sequences: forking a sequence (label scoring) only
        # tags existing cells instead of copying them, and each sequence sees all of n_ctx.
        cparams.kv_unified = True
        cparams.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            self.ctx = None
            raise ModelError(
                f"llama.cpp could not create a context (n_ctx={n_ctx}) for {self.path}"
            )
        self.n_ctx = int(llama_cpp.llama_n_ctx(self.ctx))
        self.n_batch = n_batch
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self._tok = _Batch(n_batch, 0)
        self._emb = _Batch(n_batch, self.n_embd)

    def set_threads(self, n_threads: int, n_threads_decode: int | None = None) -> None:
        llama_cpp.llama_set_n_threads(self.ctx, n_threads_decode or n_threads, n_threads)

    def set_lora(self, path: Path, scale: float) -> None:
        self._adapter = llama_cpp.llama_adapter_lora_init(self.model, str(path).encode("utf-8"))
        if not self._adapter:
            self._adapter = None
            raise ModelError(f"llama.cpp could not load the LoRA adapter: {path}")
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapter)
        scales = (ctypes.c_float * 1)(scale)
        if llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, scales) != 0:
            raise ModelError(f"the LoRA adapter does not fit this model: {path}")

    # --- text ------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of `text`; `special` parses markup such as <|im_start|> as one token.
        Never adds BOS: the caller decides where sequences start."""
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), buf, cap, False, special)
        if n < 0:  # buffer too small: -n is the size needed
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), buf, cap, False, special)
        if n < 0:
            raise ModelError(f"llama.cpp failed to tokenize {len(raw)} bytes of prompt text")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[: max(n, 0)]

    # --- evaluation ------------------------------------------------------------------

    def decode_tokens(
        self,
        tokens: Sequence[int],
        pos0: int,
        *,
        seq_ids: Sequence[int] | None = None,
        positions: Sequence[int] | None = None,
        logits: str = "last",
    ) -> None:
        """Evaluate tokens at positions pos0.. (or `positions`), in sequence 0 (or `seq_ids`).

        logits: "last" (only the final position), "all", or "none".
        """
        n = len(tokens)
        for start in range(0, n, self.n_batch):
            stop = min(n, start + self.n_batch)
            batch = self._tok
            batch.token[: stop - start] = tokens[start:stop]
            self._fill(batch, start, stop, n, pos0, seq_ids, positions, logits)
            self._decode(batch, stop - start)

    def decode_embeddings(self, embd: np.ndarray, pos0: int, *, logits: str = "none") -> None:
        """Evaluate rows of `embd` (n, n_embd) as input vectors at pos0.. in sequence 0."""
        if embd.ndim != 2 or embd.shape[1] != self.n_embd:
            raise ValueError(f"embeddings must have shape (n, {self.n_embd}), got {embd.shape}")
        rows = np.ascontiguousarray(embd, dtype=np.float32)
        n = rows.shape[0]
        for start in range(0, n, self.n_batch):
            stop = min(n, start + self.n_batch)
            batch = self._emb
            batch.embd[: stop - start] = rows[start:stop]
            self._fill(batch, start, stop, n, pos0, None, None, logits)
            self._decode(batch, stop - start)

    def _fill(
        self,
        batch: _Batch,
        start: int,
        stop: int,
        n: int,
        pos0: int,
        seq_ids: Sequence[int] | None,
        positions: Sequence[int] | None,
        logits: str,
    ) -> None:
        m = stop - start
        if positions is None:
            batch.pos[:m] = np.arange(pos0 + start, pos0 + stop, dtype=np.int32)
        else:
            batch.pos[:m] = positions[start:stop]
        batch.set_seq_ids(seq_ids[start:stop] if seq_ids is not None else None, m)
        batch.logits[:m] = 1 if logits == "all" else 0
        if logits == "last" and stop == n:
            batch.logits[m - 1] = 1

    def _decode(self, batch: _Batch, m: int) -> None:
        batch.raw.n_tokens = m
        rc = llama_cpp.llama_decode(self.ctx, batch.raw)
        if rc != 0:
            hint = " (KV cache full: raise n_ctx)" if rc == 1 else ""
            raise ModelError(f"llama_decode failed with code {rc}{hint}")
        self.n_decoded += m
        self.n_decode_calls += 1

    def logits(self, i: int = -1) -> np.ndarray:
        """Copy of the logits of the i-th output row of the last decode (-1: last row)."""
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, i)
        if not ptr:
            raise ModelError(f"llama.cpp returned no logits for output {i}")
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    # --- KV cache --------------------------------------------------------------------

    def truncate(self, n_keep: int, seq_id: int = -1) -> None:
        """Drop every cached position >= n_keep (all sequences when seq_id < 0)."""
        if not llama_cpp.llama_memory_seq_rm(self.mem, seq_id, n_keep, -1):
            raise ModelError("llama.cpp could not trim the KV cache")

    def fork(self, src: int, dst: int) -> None:
        llama_cpp.llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def drop_sequence(self, seq_id: int) -> None:
        llama_cpp.llama_memory_seq_rm(self.mem, seq_id, -1, -1)

    def seq_pos_max(self, seq_id: int = 0) -> int:
        return int(llama_cpp.llama_memory_seq_pos_max(self.mem, seq_id))

    # --- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        for name in ("_tok", "_emb"):
            batch = self.__dict__.pop(name, None)
            if batch is not None:
                batch.free()
        if self.ctx is not None:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self._adapter is not None:
            llama_cpp.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        if self.model is not None:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        # Interpreter shutdown may already have torn down the bindings.
        if getattr(self, "model", None) is not None and llama_cpp is not None:
            self.close()


class _Batch:
    """A llama_batch with numpy views on its arrays so filling it costs no Python loops
    (except seq ids, which are pointers to per-row arrays)."""

    def __init__(self, capacity: int, n_embd: int) -> None:
        self.raw = llama_cpp.llama_batch_init(capacity, n_embd, 1)
        self.capacity = capacity
        if n_embd:
            self.embd = np.ctypeslib.as_array(self.raw.embd, shape=(capacity, n_embd))
        else:
            self.token = np.ctypeslib.as_array(self.raw.token, shape=(capacity,))
        self.pos = np.ctypeslib.as_array(self.raw.pos, shape=(capacity,))
        self.logits = np.ctypeslib.as_array(self.raw.logits, shape=(capacity,))
        np.ctypeslib.as_array(self.raw.n_seq_id, shape=(capacity,))[:] = 1
        self._seq = [0] * capacity
        for i in range(capacity):
            self.raw.seq_id[i][0] = 0

    def set_seq_ids(self, seq_ids: Sequence[int] | None, m: int) -> None:
        for i in range(m):
            want = 0 if seq_ids is None else int(seq_ids[i])
            if self._seq[i] != want:
                self.raw.seq_id[i][0] = want
                self._seq[i] = want

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.raw)
