"""Context aggregation: the user's turns into the context, and what the bot actually said."""

from voxframe.pipeline import LLMContext

from .assistant import AssistantContextAggregator
from .user import UserAggregatorOptions, UserContextAggregator


def context_aggregators(
    context: LLMContext | None = None, options: UserAggregatorOptions | None = None
) -> tuple[UserContextAggregator, AssistantContextAggregator]:
    """The user/assistant pair sharing one context: put the first after the STT, the second
    after the output transport."""
    context = context if context is not None else LLMContext()
    return UserContextAggregator(context, options), AssistantContextAggregator(context)


__all__ = ["AssistantContextAggregator", "UserAggregatorOptions", "UserContextAggregator", "context_aggregators"]
