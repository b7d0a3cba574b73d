"""The provider-neutral conversation context: messages and tools.

Messages use the OpenAI chat shape (`{"role": ..., "content": ...}`), which every common
provider and compatible server accepts or maps from.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(slots=True)
class Tool:
    """A function the LLM may call: JSON-schema parameters and the coroutine that runs it."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler
    #: It only looks something up: it may run for a reply prepared at the user's pause, before
    #: the user's stop confirms it. Any other tool waits for the stop (it may act on the world).
    read_only: bool = False

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(slots=True)
class LLMContext:
    messages: list[dict[str, Any]] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)

    def add(self, role: str, content: str, **extra: Any) -> None:
        self.messages.append({"role": role, "content": content, **extra})

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def copy(self) -> LLMContext:
        return LLMContext(messages=[dict(m) for m in self.messages], tools=list(self.tools))
