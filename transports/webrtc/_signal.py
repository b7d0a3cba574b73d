"""`Signal`: wake every task waiting for "something changed" (no waiter is ever lost)."""

from __future__ import annotations

import anyio


class Signal:
    """Each waiter gets its own event, so a `fire` reaches all of them, however many wait."""

    def __init__(self) -> None:
        self._waiters: list[anyio.Event] = []

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()

    async def wait(self) -> None:
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        finally:
            if not event.is_set():
                self._waiters.remove(event)
