"""LLMs: the shared `LLMService` base.

Provider modules are imported by their full path (they need optional dependencies), e.g.
`from voxframe.processors.llm.openai import OpenAILLM`.
"""

from .base import LLMOptions, LLMService, StreamStalled, ToolCall

__all__ = ["LLMOptions", "LLMService", "StreamStalled", "ToolCall"]
