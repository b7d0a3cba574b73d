"""Call a voxframe server from the command line with the headless client.

    python -m voxframe.transports.webrtc.call http://127.0.0.1:8080 hello.wav --loopback

Plays each WAV (waiting for the bot's reply after each), prints one JSON line per thing that
happens (connected, played, heard, event), then hangs up. With no WAV it stays on the line
until interrupted (or for `--seconds`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from voxframe.pipeline.clock import NS_PER_S, current_clock, move_on_at, now_ns

from ._ice import IceOptions, IceServer
from .client import ClientOptions, HeadlessClient


def _say(kind: str, **fields: Any) -> None:
    print(json.dumps({"type": kind, "t_ns": now_ns(), **fields}), flush=True)


def _options(args: argparse.Namespace) -> ClientOptions:
    servers = [IceServer(urls=[args.turn], username=args.turn_user, credential=args.turn_password)] if args.turn else []
    hosts = ("127.0.0.1",) if args.loopback else None
    ice = IceOptions(servers=servers, relay_only=args.relay_only, host_addresses=hosts)
    return ClientOptions(ice=ice, token=args.token)


async def _run(args: argparse.Namespace) -> None:
    async with HeadlessClient.connect(args.url, _options(args)) as client:
        _say("connected", session_id=client.session_id)
        for wav in args.wav:
            played = await client.play(wav)
            _say("played", file=wav, start_ns=played.start_ns, speech_end_ns=played.speech_end_ns)
            try:
                onset = await client.wait_for_onset(played.speech_end_ns, args.reply_timeout)
                offset = await client.wait_for_silence(onset, args.reply_timeout + 30)
                _say("heard", onset_ns=onset, offset_ns=offset, latency_ms=(onset - played.speech_end_ns) / 1e6)
            except TimeoutError:
                _say("no_reply", timeout_s=args.reply_timeout)
        if not args.wav:
            if args.seconds is None:
                await anyio.sleep_forever()
            else:
                async with move_on_at(current_clock().now_ns() + round(args.seconds * NS_PER_S)):
                    await anyio.sleep_forever()
        for event in client.events:
            _say("event", event=event)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("wav", nargs="*", help="16-bit PCM WAV files to say, one after another")
    parser.add_argument("--loopback", action="store_true", help="use only 127.0.0.1 for ICE")
    parser.add_argument("--token", help="bearer token for the signalling API")
    parser.add_argument("--turn", help="TURN server URL, e.g. turn:127.0.0.1:3478")
    parser.add_argument("--turn-user")
    parser.add_argument("--turn-password")
    parser.add_argument("--relay-only", action="store_true")
    parser.add_argument("--reply-timeout", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, help="with no WAV: stay on the line this long")
    args = parser.parse_args(argv)
    try:
        anyio.run(_run, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        _say("error", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
