"""When to try a provider connection again, and which failures are worth retrying."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


class ProviderError(Exception):
    """A provider refused or lost us. `permanent` failures (bad key, bad request) are not retried."""

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent


def is_permanent_status(status: int | None) -> bool:
    """Auth and request errors will fail the same way again; rate limits and 5xx may not."""
    return status is not None and 400 <= status < 500 and status not in (408, 429)


@dataclass(slots=True)
class Backoff:
    """Exponential delays between attempts: `initial_s`, doubling, capped at `max_s`."""

    initial_s: float = 0.05
    max_s: float = 2.0
    factor: float = 2.0
    #: Consecutive failures before the failure is reported (retrying goes on after a drop).
    attempts: int = 4

    def delays(self) -> Iterator[float]:
        delay = self.initial_s
        while True:
            yield delay
            delay = min(self.max_s, delay * self.factor)


__all__ = ["Backoff", "ProviderError", "is_permanent_status"]
