"""RTVI, the client protocol of Pipecat's client SDKs, spoken by voxframe's transports.

Every message is the envelope ``{"label": "rtvi-ai", "type": ..., "id": ..., "data": ...}`` of
protocol `PROTOCOL_VERSION`, so an app on ``@pipecat-ai/client-js`` talks to a voxframe bot
unchanged, and voxframe's own page speaks the same. `RTVIEndpoint` is both directions for one
client; a transport gives it `send` (a message out, never blocking) and `deliver` (a frame
into the pipeline) and hands it what the client sends (`receive`).

Out, from the pipeline's frames (an `Observer`: it sees each frame once wherever it is pushed,
transcripts included, and adds no hop):

* ``bot-ready`` once the client has said ``client-ready`` and the pipeline runs (the answer to
  ``client-ready``, with its id): audio spoken before that finds no VAD listening;
* ``user-started-speaking``, ``user-stopped-speaking``, ``bot-started-speaking``,
  ``bot-stopped-speaking`` (data: ``turn``, ``played_s``, ``interrupted``), ``bot-interrupted``;
* ``user-transcription`` (``text``, ``final``, ``user_id``, ``timestamp``), ``user-llm-text``;
* ``bot-llm-started``, ``bot-llm-text`` (each streamed chunk), ``bot-llm-stopped``;
  ``bot-tts-started``, ``bot-tts-text`` and ``bot-output`` (each word when it is heard, see
  `run`), ``bot-tts-stopped``;
* ``metrics`` (``{"ttfb": [{"processor", "value"}]}``, one list per metric), ``error``;
* ``server-message``: the app's `TransportMessageFrame` (its ``message`` is the data), and
  voxframe's ``{"type": "turn_latency", "turn", "latency_ms", "points_ms"}``: from the end of the
  user's speech (as the VAD saw it) to the reply's first audio out, with the tracer's points of
  the turn from that same origin;
* ``server-response`` / ``error-response``: a `ClientResponseFrame`, under its message's id.

In, from the client: ``client-ready``; ``send-text`` (``{"content"}``: a `UserTextFrame`, a
user turn of its own, always answered aloud: its ``options`` are not read); ``client-message``
(``{"t", "d"}``: a `ClientMessageFrame`, answered by a `ClientResponseFrame`);
``disconnect-bot`` (an `EndFrame`). Another type gets an ``error-response``; text that is no
RTVI message is ignored (Pipecat's small-webrtc client sends keep-alive pings and track
signalling on the same channel).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import anyio

from voxframe.pipeline import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ClientMessageFrame,
    ClientResponseFrame,
    Direction,
    EndFrame,
    ErrorFrame,
    Frame,
    FrameProcessor,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMResponseEndFrame,
    LLMResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    Observer,
    PipelineTask,
    StartFrame,
    Tracer,
    TranscriptionFrame,
    TransportMessageFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSWordsFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTextFrame,
)
from voxframe.pipeline.clock import NS_PER_S, Clock, current_clock, move_on_at

logger = logging.getLogger("voxframe.rtvi")

PROTOCOL_VERSION = "2.1.0"
LABEL = "rtvi-ai"
#: A client message longer than this is refused unread.
MAX_MESSAGE_CHARS = 64 * 1024
#: Reply words waiting to be heard (a runaway reply cannot grow this without bound).
_MAX_PENDING_WORDS = 4096
NS_PER_MS = 1_000_000

Message = dict[str, Any]
Send = Callable[[Message], None]
Deliver = Callable[[Frame], None]

_SIMPLE = {
    UserStartedSpeakingFrame: "user-started-speaking",
    LLMResponseStartFrame: "bot-llm-started",
    LLMResponseEndFrame: "bot-llm-stopped",
    TTSStartedFrame: "bot-tts-started",
    TTSStoppedFrame: "bot-tts-stopped",
}


def envelope(kind: str, data: Any = None, message_id: str | None = None) -> Message:
    """One RTVI message (the id is the caller's, or empty for events nobody answers)."""
    message: Message = {"label": LABEL, "type": kind, "id": message_id or ""}
    if data is not None:
        message["data"] = data
    return message


def _library_version() -> str:
    try:
        return metadata.version("voxframe")
    except metadata.PackageNotFoundError:
        return "unknown"


class RTVIEndpoint(Observer):
    """One client's RTVI conversation: frames out as messages, messages in as frames."""

    def __init__(
        self,
        send: Send,
        tracer: Tracer | None = None,
        deliver: Deliver | None = None,
        *,
        ready_on_start: bool = False,
    ) -> None:
        self._send = send
        #: The pipeline's start counts as the client's ``client-ready`` (a client that says nothing,
        #: e.g. a raw WebSocket caller whose ``start`` is its readiness): ``bot-ready`` goes out once
        #: the pipeline runs; a ``client-ready`` sent later is still answered under its own id.
        self.ready_on_start = ready_on_start
        #: The task's tracer: its clock paces the words, its points make ``turn_latency``.
        self.tracer = tracer
        #: Takes a frame for the head of the pipeline (the transport queues it there).
        self.deliver: Deliver = deliver or _drop
        self._ids = itertools.count(1)
        self._speech_end_ns: int | None = None
        self._client_ready_id: str | None = None
        self._running = False
        self._ready_sent = False
        #: The protocol version the client said it speaks (None until its client-ready).
        self.client_version: str | None = None
        self.client_about: Any = None
        # Reply words: those of a turn whose audio has not started yet wait in `_unheard`; the
        # rest are due at (turn's first audio + word start), in `_due` (a heap), sent by `run`.
        self._unheard: dict[int, list[tuple[float, str]]] = {}
        self._started_ns: dict[int, int] = {}
        self._due: list[tuple[int, int, int, str]] = []
        self._due_changed = anyio.Event()
        self._pacing = False
        self._closed = False
        #: Whether a fatal error went to the client (so the session's end does not tell it twice).
        self.fatal_error_sent = False

    @property
    def clock(self) -> Clock:
        return self.tracer.clock if self.tracer is not None else current_clock()

    def close(self) -> None:
        """Send nothing more; drops `send` and `deliver` (which would keep their session alive)."""
        self._closed = True
        self._send = _discard
        self.deliver = _drop
        self._due.clear()
        self._unheard.clear()
        self._due_changed.set()

    def send(self, kind: str, data: Any = None, message_id: str | None = None) -> None:
        self._send(envelope(kind, data, message_id if message_id is not None else f"vf{next(self._ids)}"))

    def send_error(self, message: str, *, fatal: bool) -> None:
        """RTVI `error`; a fatal one is told once (the session's end may report it again)."""
        if fatal and self.fatal_error_sent:
            return
        self.fatal_error_sent = self.fatal_error_sent or fatal
        self.send("error", {"error": message, "message": message, "fatal": fatal})

    # --- client -> server ------------------------------------------------------------------------

    def receive(self, raw: str | bytes) -> None:
        """One message from the client (never raises: a bad one gets an error back, or is ignored)."""
        if len(raw) > MAX_MESSAGE_CHARS:
            self.send("error", {"error": f"message over {MAX_MESSAGE_CHARS} characters", "fatal": False})
            return
        try:
            message = json.loads(raw)
        except (TypeError, ValueError, UnicodeDecodeError):
            return  # a keep-alive ping, or another protocol's text: not ours
        if isinstance(message, dict):
            self.receive_message(message)

    def receive_message(self, message: dict[str, Any]) -> None:
        """One message already parsed from JSON (a transport whose wire format parses it)."""
        if message.get("label") != LABEL:
            return
        kind, message_id, data = message.get("type"), message.get("id"), message.get("data")
        message_id = message_id if isinstance(message_id, str) else ""
        try:
            self._handle(kind, message_id, data)
        except _Refused as exc:
            self.send("error-response", {"error": str(exc)}, message_id)

    def _handle(self, kind: Any, message_id: str, data: Any) -> None:
        match kind:
            case "client-ready":
                self._on_client_ready(message_id, data if isinstance(data, dict) else {})
            case "send-text":
                content = data.get("content") if isinstance(data, dict) else None
                if not isinstance(content, str) or not content.strip():
                    raise _Refused("send-text needs {'content': non-empty string}")
                self.deliver(UserTextFrame(text=content))
            case "client-message":
                if not isinstance(data, dict) or not isinstance(data.get("t"), str):
                    raise _Refused("client-message needs {'t': string, 'd': any}")
                self.deliver(ClientMessageFrame(msg_id=message_id, message_type=data["t"], data=data.get("d")))
            case "disconnect-bot":
                self.deliver(EndFrame())
            case _:
                raise _Refused(f"unsupported message type {kind!r}")

    def _on_client_ready(self, message_id: str, data: dict[str, Any]) -> None:
        version = data.get("version")
        self.client_version = version if isinstance(version, str) else None
        self.client_about = data.get("about")
        major = self.client_version.split(".")[0] if self.client_version else ""
        if major not in ("1", "2"):
            self.send(
                "error-response",
                {"error": f"client protocol {version!r}; this bot speaks RTVI {PROTOCOL_VERSION}"},
                message_id,
            )
        if self._ready_sent:  # ready on start already said it: answer this client-ready too
            self._ready_sent = False
        self._client_ready_id = message_id
        self._maybe_ready()

    def _maybe_ready(self) -> None:
        if self._client_ready_id is None and self.ready_on_start:
            self._client_ready_id = ""
        if self._ready_sent or not self._running or self._client_ready_id is None:
            return
        self._ready_sent = True
        # A 1.x client is answered in its own version (as Pipecat does): it reads 2.x as newer.
        legacy = self.client_version is not None and self.client_version.startswith("1.")
        version = self.client_version if legacy else PROTOCOL_VERSION
        about = {"library": "voxframe", "library_version": _library_version()}
        self.send("bot-ready", {"version": version, "about": about}, self._client_ready_id)

    # --- server -> client ------------------------------------------------------------------------

    def on_frame(self, src: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        kind = _SIMPLE.get(type(frame))
        if kind is not None:
            self.send(kind)
            return
        match frame:
            case StartFrame():
                self._running = True
                self._maybe_ready()
            case UserStoppedSpeakingFrame():
                self._speech_end_ns = frame.speech_end_ns or t_ns
                self.send("user-stopped-speaking")
            case InterimTranscriptionFrame() | TranscriptionFrame():
                final = isinstance(frame, TranscriptionFrame)
                stamp = datetime.now(UTC).isoformat()  # a wall-clock label for people, never timed
                self.send("user-transcription", {"text": frame.text, "final": final, "user_id": frame.user_id,
                                                 "timestamp": stamp})  # fmt: skip
            case LLMContextFrame():
                self._user_llm_text(frame)
            case LLMTextFrame() | TTSSpeakFrame():
                self.send("bot-llm-text", {"text": frame.text, "turn": frame.turn})
            case TTSWordsFrame():
                self._queue_words(frame, t_ns)
            case BotStartedSpeakingFrame():
                self._bot_started(frame.turn, t_ns)
            case BotStoppedSpeakingFrame():
                self._bot_stopped(frame)
            case InterruptionFrame():
                self._drop_words(upto=frame.stale_upto)
                self.send("bot-interrupted", {"stale_upto": frame.stale_upto, "reason": frame.reason})
            case MetricsFrame():
                self.send("metrics", {frame.metric: [{"processor": frame.processor, "value": frame.value}]})
            case ErrorFrame():
                self.send_error(frame.error, fatal=frame.fatal)
            case TransportMessageFrame():
                self.send("server-message", frame.message)
            case ClientResponseFrame():
                if frame.error is not None:
                    self.send("error-response", {"error": frame.error}, frame.msg_id)
                else:
                    self.send("server-response", {"t": frame.message_type, "d": frame.data}, frame.msg_id)

    def _user_llm_text(self, frame: LLMContextFrame) -> None:
        messages = frame.context.messages
        last = messages[-1] if messages else None
        if isinstance(last, dict) and last.get("role") == "user" and isinstance(last.get("content"), str):
            self.send("user-llm-text", {"text": last["content"], "turn": frame.turn})

    def _bot_started(self, turn: int, t_ns: int) -> None:
        self.send("bot-started-speaking", {"turn": turn})
        self._started_ns[turn] = t_ns
        for start_s, word in self._unheard.pop(turn, []):
            self._schedule(turn, t_ns + int(start_s * NS_PER_S), word)
        latency = self._latency(turn, t_ns)
        if latency is not None:
            self.send("server-message", latency)

    def _bot_stopped(self, frame: BotStoppedSpeakingFrame) -> None:
        if frame.interrupted:
            self._drop_words(only=frame.turn)
        else:  # the audio is over: whatever words the estimate put later were heard too
            self._flush_words(frame.turn)
        self._started_ns.pop(frame.turn, None)
        self.send(
            "bot-stopped-speaking",
            {"turn": frame.turn, "played_s": round(frame.played_s, 3), "interrupted": frame.interrupted},
        )

    def _latency(self, turn: int, t_ns: int) -> Message | None:
        origin = self._speech_end_ns
        if origin is None or turn == 0:
            return None
        self._speech_end_ns = None  # one speech, one reply: a typed turn after it has no such latency
        points = self.tracer.turn(turn) if self.tracer is not None else {}
        first_out = points.get("first_audio_out", t_ns)
        return {
            "type": "turn_latency",
            "turn": turn,
            "latency_ms": round((first_out - origin) / NS_PER_MS, 1),
            "points_ms": {name: round((at - origin) / NS_PER_MS, 1) for name, at in points.items() if ":" not in name},
        }

    # --- the words of a reply, when they are heard --------------------------------------------------

    def _queue_words(self, frame: TTSWordsFrame, t_ns: int) -> None:
        started = self._started_ns.get(frame.turn)
        for timing in frame.words:
            if started is not None:
                self._schedule(frame.turn, started + int(timing.start_s * NS_PER_S), timing.word)
            else:
                waiting = self._unheard.setdefault(frame.turn, [])
                if len(waiting) < _MAX_PENDING_WORDS:
                    waiting.append((timing.start_s, timing.word))

    def _schedule(self, turn: int, due_ns: int, word: str) -> None:
        if not self._pacing:  # nobody paces: say the word now rather than never
            self._heard(turn, word)
            return
        if len(self._due) < _MAX_PENDING_WORDS:
            heapq.heappush(self._due, (due_ns, next(self._ids), turn, word))
            self._due_changed.set()

    def _drop_words(self, *, upto: int | None = None, only: int | None = None) -> None:
        def stale(turn: int) -> bool:
            return turn == only if only is not None else 0 < turn <= (upto or 0)

        self._due = [entry for entry in self._due if not stale(entry[2])]
        heapq.heapify(self._due)
        for turn in [t for t in self._unheard if stale(t)]:
            del self._unheard[turn]

    def _flush_words(self, turn: int) -> None:
        mine = sorted(entry for entry in self._due if entry[2] == turn)
        self._due = [entry for entry in self._due if entry[2] != turn]
        heapq.heapify(self._due)
        for _, _, _, word in mine:
            self._heard(turn, word)

    def _heard(self, turn: int, word: str) -> None:
        """A word of the reply reached the ear: `bot-tts-text`, and `bot-output` as the client's
        protocol version has it (2.x: its status; 1.x: `spoken`)."""
        self.send("bot-tts-text", {"text": word, "turn": turn})
        output: Message = {"text": word, "aggregated_by": "word", "turn": turn}
        if self.client_version is not None and self.client_version.startswith("1."):
            output["spoken"] = True
        else:
            output |= {"will_be_spoken": True, "spoken_status": "completed"}
        self.send("bot-output", output)

    async def run(self) -> None:
        """Send each reply word (``bot-tts-text``) when its audio plays; run it in the transport's
        task group for the length of the call (without it, words go out as they are synthesized)."""
        self._pacing = True
        try:
            while not self._closed:
                self._due_changed = anyio.Event()
                if not self._due:
                    await self._due_changed.wait()
                    continue
                due_ns = self._due[0][0]
                if due_ns > self.clock.now_ns():
                    async with move_on_at(due_ns, self.clock):
                        await self._due_changed.wait()
                    continue
                _, _, turn, word = heapq.heappop(self._due)
                self._heard(turn, word)
        finally:
            self._pacing = False


class FrameInbox:
    """A client's frames on their way to the head of the pipeline: `deliver` (an endpoint's
    `deliver`) never blocks; a full inbox drops the frame and counts it (`dropped`); `forward`
    queues them into the task until `close`. One per call, whatever the transport."""

    def __init__(self, owner: str, max_frames: int = 64) -> None:
        self.owner = owner
        self.dropped = 0
        self._send, self._receive = anyio.create_memory_object_stream[Frame](max_frames)

    def deliver(self, frame: Frame) -> None:
        try:
            self._send.send_nowait(frame)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.dropped += 1
            if self.dropped == 1:  # once: a flooding caller must not flood the log too
                logger.warning("%s: dropping the caller's %s (the pipeline is behind)", self.owner, frame.name)

    async def forward(self, task: PipelineTask) -> None:
        """Queue the caller's frames into the pipeline; returns when the inbox is closed."""
        async with self._receive:
            async for frame in self._receive:
                await task.queue_frame(frame)

    def close(self) -> None:
        """No more frames: `forward` returns once it has queued those already in."""
        self._send.close()

    def discard(self) -> None:
        """The call is over: drop what is left (idempotent)."""
        self._send.close()
        self._receive.close()


class _Refused(Exception):
    """A client message we cannot act on; its text goes back in an ``error-response``."""


def _discard(message: Message) -> None:
    """The `send` of a closed endpoint."""


def _drop(frame: Frame) -> None:
    """The `deliver` of an endpoint with no pipeline to feed."""


__all__ = ["LABEL", "MAX_MESSAGE_CHARS", "PROTOCOL_VERSION", "FrameInbox", "RTVIEndpoint", "envelope"]
