"""`python -m voxframe.fakes`: run the Deepgram, OpenAI and Cartesia fakes until Ctrl-C.

Prints `export NAME=value` lines to point a bot or the providers' SDKs at them. Transcripts
(one utterance per line) and replies (one per line) can be scripted from files; without them
the STT numbers utterances and the LLM repeats what it heard.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

import anyio

from ._server import ZERO
from .cartesia import CartesiaFake, CartesiaFakeOptions
from .deepgram import DeepgramFake, DeepgramFakeOptions
from .openai import OpenAIFake, OpenAIFakeOptions
from .providers import FakeProviders


def _lines(path: Path | None) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()] if path else []


def build(args: argparse.Namespace) -> FakeProviders:
    dg = DeepgramFakeOptions(transcripts=_lines(args.transcripts))
    oa = OpenAIFakeOptions(replies=list(_lines(args.replies)))
    ca = CartesiaFakeOptions()
    if args.no_latency:
        dg.final_latency, oa.ttft, ca.ttfa = ZERO, ZERO, ZERO
    return FakeProviders(
        DeepgramFake(dg, port=args.deepgram_port),
        OpenAIFake(oa, port=args.openai_port),
        CartesiaFake(ca, port=args.cartesia_port),
    )


async def serve(fakes: FakeProviders, ready_only: bool = False) -> None:
    async with fakes:
        for name, value in fakes.env().items():
            print(f"export {name}={value}", flush=True)
        if ready_only:
            return
        print("# fakes running on 127.0.0.1; Ctrl-C stops them", flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m voxframe.fakes", description=__doc__.splitlines()[0])
    parser.add_argument("--deepgram-port", type=int, default=0)
    parser.add_argument("--openai-port", type=int, default=0)
    parser.add_argument("--cartesia-port", type=int, default=0)
    parser.add_argument("--transcripts", type=Path, help="file: the transcript of each utterance, one per line")
    parser.add_argument("--replies", type=Path, help="file: the LLM's reply to each request, one per line")
    parser.add_argument("--no-latency", action="store_true", help="answer at once instead of like the real services")
    parser.add_argument("--check", action="store_true", help="start, print the environment, stop (a smoke test)")
    args = parser.parse_args(argv)
    anyio.run(serve, build(args), args.check)


if __name__ == "__main__":
    main()
