"""LLM runtime: a small GGUF model (llama.cpp) that turns projected cue vectors and
measured cue lines into an emotion label, label probabilities and a short reasoning.

It knows nothing about video or audio: callers hand it vectors and cue strings.
"""

from edge_app.llm.model import LlmOptions, find_bundled_gguf, validate_gguf
from edge_app.llm.session import LlmAnswer, LlmSession

__all__ = ["LlmAnswer", "LlmOptions", "LlmSession", "find_bundled_gguf", "validate_gguf"]
