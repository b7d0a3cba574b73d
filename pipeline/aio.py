"""Two async idioms every layer needs, written once.

`first_error` unwraps the exception group a task group raises, so a log line or an error event
names the failure itself. `closing` closes a provider's stream as soon as its reader stops (a
cancelled turn), not when the garbage collector gets to it: that is what ends the request on
the provider's connection.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import TypeVar, cast

_T = TypeVar("_T")


def first_error(error: BaseException) -> BaseException:
    """The first failure inside (nested) exception groups; `error` itself when it is not a group."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def closing(stream: AsyncIterator[_T]) -> aclosing[AsyncGenerator[_T, None]]:
    """`aclosing` for a stream typed as an iterator: providers write theirs as async generators."""
    return aclosing(cast(AsyncGenerator[_T, None], stream))
