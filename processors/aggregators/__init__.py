"""Context aggregation: the user's messages into the context, and what the bot actually said.

When the user's words become a message is the turn controller's decision (`processors/turns`).
"""

from voxframe.pipeline import LLMContext

from .assistant import AssistantContextAggregator
from .user import UserContextAggregator


def context_aggregators(context: LLMContext | None = None) -> tuple[UserContextAggregator, AssistantContextAggregator]:
    """The user/assistant pair sharing one context: put the first after the turn controller,
    the second after the output transport."""
    context = context if context is not None else LLMContext()
    return UserContextAggregator(context), AssistantContextAggregator(context)


__all__ = ["AssistantContextAggregator", "UserContextAggregator", "context_aggregators"]
