"""Local fake servers speaking the Deepgram, OpenAI and Cartesia wire protocols.

They are part of the product: point a bot (or the providers' own SDKs) at them and run it
with no key and no network. Each fake is an async context manager bound to 127.0.0.1 with a
script, a latency profile, injectable faults and a log of every connection::

    async with DeepgramFake(DeepgramFakeOptions(transcripts=["Hello."])) as dg:
        stt = DeepgramSTT(DeepgramOptions(url=dg.url, api_key="any"))

`python -m voxframe.fakes` starts all three and prints the environment to point clients at.

`ImpairedNetwork` (`netrelay`) stands in for a bad network instead: a UDP relay a WebRTC call's
packets cross, losing, delaying and reordering them as seeded `Impairment`s say (`netimpair`).
"""

from ._server import ZERO, Connection, FakeServer, Fault, LatencyProfile
from .cartesia import CartesiaFake, CartesiaFakeOptions
from .deepgram import DeepgramFake, DeepgramFakeOptions
from .netimpair import GilbertElliott, Impairment
from .netrelay import ImpairedNetwork
from .openai import OpenAIFake, OpenAIFakeOptions, Reply, ToolCallSpec
from .providers import FakeProviders

__all__ = [
    "ZERO",
    "CartesiaFake",
    "CartesiaFakeOptions",
    "Connection",
    "DeepgramFake",
    "DeepgramFakeOptions",
    "FakeProviders",
    "FakeServer",
    "Fault",
    "GilbertElliott",
    "ImpairedNetwork",
    "Impairment",
    "LatencyProfile",
    "OpenAIFake",
    "OpenAIFakeOptions",
    "Reply",
    "ToolCallSpec",
]
