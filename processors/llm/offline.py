"""`OfflineLLM`: the no-key default. Not a language model, and it says so.

No assistant-quality model installs from the package registries, so a bot with no key and no
network answers with this: deterministic rules that stream their words like an LLM would.
It knows a few intents (the time, the date, arithmetic, and the example bot's capitals) and
answers them through the same tool-calling path as a real model: it emits a tool call, the
`LLMService` base runs the registered `Tool` (see `offline_tools`), and the next run turns the
result into a sentence. An intent whose tool is not registered is not claimed.
Anything else gets what it heard back, and how to plug in a real model.
"""

from __future__ import annotations

import ast
import datetime
import json
import operator
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from voxframe.pipeline import LLMContext, Tool

from .base import LLMOptions, LLMService, ToolCall

GREETING = (
    "Hello! I am the offline responder, not a language model. "
    "I can tell you the time or the date, and do simple arithmetic."
)
HOW_TO_PLUG_IN = "For real conversation, set OPENAI_API_KEY, or OPENAI_BASE_URL for a compatible server."


@dataclass(slots=True)
class OfflineOptions:
    llm: LLMOptions | None = None
    #: Pause between streamed words (0: only yield to the event loop).
    word_delay_s: float = 0.0


class OfflineLLM(LLMService):
    """Rule-based replies streamed word by word; time, date and sums go through tool calls."""

    def __init__(self, options: OfflineOptions | None = None, *, name: str | None = None) -> None:
        self.options = options or OfflineOptions()
        super().__init__(self.options.llm, name=name)

    async def stream_completion(self, context: LLMContext, turn: int) -> AsyncIterator[str | ToolCall]:
        messages = context.messages
        if messages and messages[-1].get("role") == "tool":
            text = _answer_from_tools(messages)
        else:
            heard = _last_user_text(messages)
            call = _intent_call(heard, context, turn) if heard else None
            if call is not None:
                yield call
                return
            text = _fallback(heard, context)
            text = _unspoken_rest(text, context) if self.resumes(turn) else text
        async for word in self._stream_words(text):
            yield word

    async def _stream_words(self, text: str) -> AsyncIterator[str]:
        delay_ns = round(self.options.word_delay_s * 1e9)
        for i, word in enumerate(text.split()):
            if delay_ns:
                await self.clock.sleep_until(self.clock.now_ns() + delay_ns)
            else:
                await anyio.lowlevel.checkpoint()
            yield word if i == 0 else f" {word}"


# --- intents ------------------------------------------------------------------------------------


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"].strip()
    return ""


_TIME = re.compile(r"\b(what time|the time|time is it)\b", re.I)
_DATE = re.compile(r"\b(what day|the date|today's date|date today|which day)\b", re.I)
_CAPITAL = re.compile(r"\bcapital of ([a-z][a-z ]*?)\s*[?.!]*$", re.I)


def _intent_call(text: str, context: LLMContext, turn: int) -> ToolCall | None:
    call_id = f"offline_{turn}_{len(context.messages)}"
    expression = parse_arithmetic(text)
    if expression is not None and context.tool("calculate"):
        return ToolCall(call_id, "calculate", json.dumps({"expression": expression}))
    if _TIME.search(text) and context.tool("get_time"):
        return ToolCall(call_id, "get_time", "{}")
    if _DATE.search(text) and context.tool("get_date"):
        return ToolCall(call_id, "get_date", "{}")
    capital = _CAPITAL.search(text)
    if capital and context.tool("capital_of"):  # the example bot's tool
        return ToolCall(call_id, "capital_of", json.dumps({"country": capital.group(1).strip()}))
    return None


def _fallback(heard: str, context: LLMContext) -> str:
    if not heard:
        return f"{GREETING} {HOW_TO_PLUG_IN}"
    able = [say for name, say in _ABILITIES if context.tool(name)]
    can = f", so I can only {' or '.join(able)}" if able else ""
    return f"I heard: {heard.rstrip('.?!')}. I am the offline responder, not a language model{can}. {HOW_TO_PLUG_IN}"


_ABILITIES = (("get_time", "tell the time"), ("get_date", "tell the date"), ("calculate", "do simple arithmetic"))


def _unspoken_rest(text: str, context: LLMContext) -> str:
    """After a false interruption: the part of the same answer the user has not heard yet."""
    for message in reversed(context.messages):
        if message.get("role") == "assistant" and message.get("interrupted"):
            spoken = str(message.get("content") or "").split()
            words = text.split()
            if words[: len(spoken)] == spoken:
                return " ".join(words[len(spoken) :]) or text
            break
    return text


def _answer_from_tools(messages: list[dict[str, Any]]) -> str:
    """One sentence per tool result of the last tool round."""
    calls: dict[str, dict[str, Any]] = {}
    results: list[tuple[str, str]] = []
    for message in reversed(messages):
        if message.get("role") == "tool":
            results.append((message.get("tool_call_id", ""), str(message.get("content"))))
        else:
            for call in message.get("tool_calls") or []:
                calls[call["id"]] = call["function"]
            break
    sentences = []
    for call_id, result in reversed(results):
        function = calls.get(call_id, {})
        sentences.append(_say_result(function.get("name", ""), function.get("arguments", "{}"), result))
    return " ".join(sentences)


def _say_result(name: str, arguments: str, result: str) -> str:
    if result.startswith('{"error"'):
        return "Sorry, I could not work that out."
    if name == "get_time":
        return f"It is {result}."
    if name == "get_date":
        return f"Today is {result}."
    if name == "capital_of":
        country = json.loads(arguments or "{}").get("country", "")
        return f"I do not know the capital of {country}." if result == "unknown" else f"It is {result}."
    if name == "calculate":
        expression = json.loads(arguments or "{}").get("expression", "")
        return f"{_spoken_expression(expression)} is {result}."
    return f"The answer is {result}."


# --- arithmetic -----------------------------------------------------------------------------------

_UNITS = """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
fifteen sixteen seventeen eighteen nineteen"""
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety"
_NUMBER_WORDS = {w: i for i, w in enumerate(_UNITS.split())} | {w: 10 * (i + 2) for i, w in enumerate(_TENS.split())}
_OPERATORS = [
    (re.compile(r"\b(plus|add|added to)\b|\+"), "+"),
    (re.compile(r"\b(minus|subtract|take away|less)\b|(^|\s)-(\s|$)"), "-"),
    (re.compile(r"\b(times|multiplied by|multiply|x)\b|[\u00d7*]"), "*"),
    (re.compile(r"\b(divided by|over|divide)\b|[/÷]"), "/"),
]
_SPOKEN = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}
_NUMBER = r"-?\d+(?:\.\d+)?"


def _digits(text: str) -> str:
    """Number words to digits ("twenty one" -> "21"); digits and everything else unchanged."""
    out: list[str] = []
    for token in re.findall(r"[a-z]+|\d+(?:[.,]\d+)*|\S", text.lower()):
        value = _NUMBER_WORDS.get(token)
        if value is None:
            out.append(token.replace(",", ""))
        elif out and out[-1].isdigit() and int(out[-1]) % 10 == 0 and int(out[-1]) >= 20 and value < 10:
            out[-1] = str(int(out[-1]) + value)
        else:
            out.append(str(value))
    return " ".join(out)


def parse_arithmetic(text: str) -> str | None:
    """`"a op b"` for a spoken sum with two numbers ("add seven and five", "12 times 3")."""
    normal = _digits(text)
    numbers = re.findall(_NUMBER, normal)
    if len(numbers) != 2:
        return None
    between = normal[normal.find(numbers[0]) + len(numbers[0]) : normal.rfind(numbers[1])]
    before = normal[: normal.find(numbers[0])]
    for pattern, symbol in _OPERATORS:
        # "add 7 and 5", "subtract 3 from 10": the verb comes first.
        if pattern.search(between) or (symbol != "+" and pattern.search(before)):
            a, b = numbers
            if symbol == "-" and re.search(r"\bfrom\b", between):
                a, b = b, a
            return f"{a} {symbol} {b}"
        if symbol == "+" and re.search(r"\b(add|sum)\b", before):
            return f"{numbers[0]} + {numbers[1]}"
    return None


def _spoken_expression(expression: str) -> str:
    parts = expression.split()
    if len(parts) == 3 and parts[1] in _SPOKEN:
        return f"{parts[0]} {_SPOKEN[parts[1]]} {parts[2]}"
    return expression


_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate(expression: str) -> float:
    """+, -, *, / over numbers, nothing else (never `eval`)."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"not simple arithmetic: {expression!r}")

    return walk(ast.parse(expression, mode="eval"))


# --- the tools it calls ---------------------------------------------------------------------------


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def offline_tools(now: Callable[[], datetime.datetime] = datetime.datetime.now) -> list[Tool]:
    """`get_time`, `get_date` and `calculate`; add them to the context's tools."""

    async def get_time(args: dict[str, Any]) -> str:
        moment = now()
        return f"{moment.hour % 12 or 12}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"

    async def get_date(args: dict[str, Any]) -> str:
        moment = now()
        return f"{moment:%A}, {moment:%B} {moment.day}, {moment.year}"

    async def calculate(args: dict[str, Any]) -> str:
        return _format_number(evaluate(str(args["expression"])))

    no_args = {"type": "object", "properties": {}}
    expression = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. '7 + 5'"}},
        "required": ["expression"],
    }
    return [
        Tool("get_time", "The current local time.", no_args, get_time),
        Tool("get_date", "Today's date.", no_args, get_date),
        Tool("calculate", "Evaluate simple arithmetic: + - * / on numbers.", expression, calculate),
    ]


__all__ = ["OfflineLLM", "OfflineOptions", "evaluate", "offline_tools", "parse_arithmetic"]
