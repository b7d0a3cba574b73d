"""All three fakes at once, and the environment that points clients at them."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Self

from .cartesia import CartesiaFake
from .deepgram import DeepgramFake
from .openai import OpenAIFake


class FakeProviders:
    """Deepgram, OpenAI and Cartesia fakes started and stopped together."""

    def __init__(
        self,
        deepgram: DeepgramFake | None = None,
        openai: OpenAIFake | None = None,
        cartesia: CartesiaFake | None = None,
    ) -> None:
        self.deepgram = deepgram or DeepgramFake()
        self.openai = openai or OpenAIFake()
        self.cartesia = cartesia or CartesiaFake()
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            for fake in (self.deepgram, self.openai, self.cartesia):
                await stack.enter_async_context(fake)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def env(self) -> dict[str, str]:
        """Variables voxframe's clients (and the OpenAI SDK) read to find the services."""
        return {
            "DEEPGRAM_URL": self.deepgram.url,
            "DEEPGRAM_API_KEY": self.deepgram.api_key or "fake-deepgram-key",
            "OPENAI_BASE_URL": self.openai.url,
            "OPENAI_API_KEY": self.openai.api_key or "fake-openai-key",
            "CARTESIA_URL": self.cartesia.url,
            "CARTESIA_API_KEY": self.cartesia.api_key or "fake-cartesia-key",
        }


__all__ = ["FakeProviders"]
