"""The example voice bot: the whole pipeline of a voice assistant, in one screen.

    python bots/example.py                  serve it; talk to it at http://127.0.0.1:7860
    python bots/example.py --call bots/assets/what_time_is_it.wav
    voxframe run bots/example.py            the same, with the installed command

With no keys it runs on embedded models (Whisper, an offline responder, Piper); set
DEEPGRAM_API_KEY, OPENAI_API_KEY (or OPENAI_BASE_URL) and CARTESIA_API_KEY to use those
services instead (`python -m voxframe.fakes` prints variables for local fakes of them).

The user's turn ends when the end-of-turn model (Smart Turn v3.2) says it is complete at the
0.2 s pause, or when its tail rule says so (a finished final the model does not rule out, a
second look at 0.6 s), else after 3 s of silence. Environment variables change how early it
answers (benchmarks/mouth_to_ear.py uses them for its like-for-like rows; the defaults are the
bot as shipped):

    VOXFRAME_VAD_PAUSE_S=off     no pause: the STT finalizes and the LLM starts at the stop only
    VOXFRAME_VAD_PAUSE_S=0.25    another pause time (seconds, below VAD_STOP_S)
    VOXFRAME_PREEMPTIVE=0        finalize at the pause but start the reply only at the stop
    VOXFRAME_TURN=silence        end the turn at the VAD's stop (VAD_STOP_S), without the model
"""

from __future__ import annotations

import datetime
import functools
import os
from dataclasses import replace
from typing import Any

from voxframe.pipeline import LLMContext, Pipeline, Tool
from voxframe.processors.aggregators import context_aggregators
from voxframe.processors.llm.offline import offline_tools
from voxframe.processors.turns import (
    EndOfTurnModel,
    SilenceTimeout,
    TailRule,
    TurnController,
    TurnOptions,
    TurnStrategy,
)
from voxframe.processors.turns.smart_turn import SmartTurnModel
from voxframe.processors.vad import VADOptions, VADParams, VADProcessor
from voxframe.runner import BotSession, run_bot

SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your answers are spoken aloud, so keep them to one or "
    "two short sentences, without lists or symbols. Use the tools for the time and for capitals."
)

#: How long the user must be quiet before the bot answers (the VAD's stop time).
VAD_STOP_S = 0.5
#: A shorter quiet at which the reply is already prepared (the STT finalizes, the LLM starts)
#: and the end-of-turn model is asked: the bot speaks once the turn ends, and drops the reply
#: unheard if the user goes on.
VAD_PAUSE_S = 0.2
#: The longest the bot waits for more words after a turn the model calls incomplete.
END_OF_TURN_TIMEOUT_S = 3.0


def vad_pause_s() -> float | None:
    """The pause time: VAD_PAUSE_S, or VOXFRAME_VAD_PAUSE_S ("off": none)."""
    raw = os.environ.get("VOXFRAME_VAD_PAUSE_S", "").strip().lower()
    if not raw:
        return VAD_PAUSE_S
    if raw in ("off", "none", "0"):
        return None
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"VOXFRAME_VAD_PAUSE_S must be seconds or 'off', got {raw!r}") from None


def turn_policy() -> str:
    """How the turn ends: "model" (the end-of-turn model, the default) or "silence" (VOXFRAME_TURN)."""
    raw = os.environ.get("VOXFRAME_TURN", "model").strip().lower()
    if raw not in ("model", "silence"):
        raise SystemExit(f"VOXFRAME_TURN must be model or silence, got {raw!r}")
    return raw


def turn_strategy() -> TurnStrategy:
    """Smart Turn with its tail rule (one model per process, shared by every call), or the VAD's stop."""
    if turn_policy() == "silence":
        return SilenceTimeout()
    return EndOfTurnModel(_smart_turn(), TailRule(), timeout_s=END_OF_TURN_TIMEOUT_S)


@functools.cache
def _smart_turn() -> SmartTurnModel:
    return SmartTurnModel()


def preemptive() -> bool:
    """Whether a reply starts at the pause (VOXFRAME_PREEMPTIVE=0: only at the stop)."""
    raw = os.environ.get("VOXFRAME_PREEMPTIVE", "1").strip().lower()
    if raw not in ("0", "1", "false", "true", "no", "yes"):
        raise SystemExit(f"VOXFRAME_PREEMPTIVE must be 0 or 1, got {raw!r}")
    return raw in ("1", "true", "yes")


CAPITALS = {"france": "Paris", "germany": "Berlin", "italy": "Rome", "japan": "Tokyo", "spain": "Madrid"}


async def get_time(args: dict[str, Any]) -> str:
    return datetime.datetime.now().strftime("%I:%M %p").lstrip("0")


async def capital_of(args: dict[str, Any]) -> str:
    return CAPITALS.get(str(args.get("country", "")).strip().lower(), "unknown")


TOOLS = [
    # Read-only: they may run for a reply prepared at the user's pause, before the stop.
    Tool("get_time", "The current local time.", {"type": "object", "properties": {}}, get_time, read_only=True),
    Tool(
        "capital_of",
        "The capital city of a country.",
        {"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]},
        capital_of,
        read_only=True,
    ),
    # The date and arithmetic, so the offline responder answers what the README promises.
    *(replace(tool, read_only=True) for tool in offline_tools() if tool.name in ("get_date", "calculate")),
]


def create_pipeline(bot: BotSession) -> Pipeline:
    """One caller's pipeline, built afresh for every call."""
    context = LLMContext(messages=[{"role": "system", "content": SYSTEM_PROMPT}], tools=TOOLS)
    pause_s = vad_pause_s()
    user, assistant = context_aggregators(context)
    # The model (or the VAD's stop) ends the turn; with a pause, the reply is prepared there.
    turns = TurnOptions(strategies=[turn_strategy()], preemptive=preemptive() and pause_s is not None)
    return Pipeline(
        [
            bot.input,  # the caller's microphone, over WebRTC
            # when the user speaks; each 32 ms window is scored as it arrives
            VADProcessor(VADOptions(params=VADParams(stop_s=VAD_STOP_S, pause_s=pause_s), windows_per_hop=1)),
            bot.services.stt(),  # speech to text: Deepgram, or Whisper
            TurnController(turns),  # who speaks when: the user's turn, barge-in, a cough that cut the bot off
            user,  # the user's words join the context and start a reply
            bot.services.llm(),  # OpenAI (runs the tools), or the offline responder
            bot.services.tts(),  # text to speech: Cartesia, or Piper
            bot.output,  # the caller's speaker, over WebRTC
            assistant,  # what the bot actually said joins the context
        ]
    )


if __name__ == "__main__":
    vad_pause_s(), preemptive(), turn_policy()  # a bad option stops the bot here, not in its first call
    run_bot(create_pipeline)
