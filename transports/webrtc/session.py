"""`Session`: one caller's peer connection and the pipeline task that serves it.

Life of a session: the offer is accepted (remote description, our audio track, answer with
our candidates); meanwhile the user's factory builds the task; once ICE/DTLS connect, the
task runs. The session ends, and releases everything (task, tracks, peer connection and the
asyncio tasks and decoder thread aiortc keeps for it), when any of these happens:

* the pipeline ends by itself (an EndFrame, a fatal error, the idle timeout);
* the peer connection fails or closes, or the caller hangs up (`hang_up`);
* the caller vanishes without a word: no media for `media_timeout_s`;
* the connection is not up within `connect_timeout_s`.

Its timers (the connect and media timeouts, the watchdog) run on the session's clock, the
injected one (`voxframe.pipeline.clock`), so a test on a VirtualClock steps them exactly.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from voxframe.pipeline import PipelineTask
from voxframe.pipeline.aio import first_error
from voxframe.pipeline.clock import NS_PER_S, Clock, current_clock, fail_at, move_on_at
from voxframe.transports.rtvi import FrameInbox, envelope

from ..input import InputOptions
from ._ice import IceOptions, ignore_checks_from_other_hosts
from ._receive import ReceiveOptions, ReorderStage, install_receive_path
from ._release import release_peer_connection
from ._signal import Signal
from .events import ClientEventsObserver, Message
from .input import WebRTCInputTransport
from .output import WebRTCOutputTransport

logger = logging.getLogger("voxframe.webrtc")

#: The longest the watchdog sleeps (it also wakes on every state change and at the media deadline).
_WATCH_INTERVAL_NS = NS_PER_S // 4
#: Client events queued while the data channel is not open yet.
_MAX_PENDING_EVENTS = 256
#: Frames from the caller's messages waiting for the pipeline (beyond: dropped, and logged).
_MAX_INBOX_FRAMES = 64


class SessionError(Exception):
    """The caller's offer or candidate cannot be used; `code` is the JSON error code, `status` the HTTP one
    (503: the server cannot take the call now, e.g. no free UDP port)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(slots=True)
class SessionOptions:
    ice: IceOptions = field(default_factory=IceOptions)
    receive: ReceiveOptions = field(default_factory=ReceiveOptions)
    input: InputOptions = field(default_factory=InputOptions)
    connect_timeout_s: float = 15.0
    #: A connected caller that sends no audio for this long is gone (None: rely on ICE consent).
    media_timeout_s: float | None = 5.0
    #: Upper bound on releasing the peer connection at the end.
    close_timeout_s: float = 5.0


TaskFactory = Callable[["Session"], Awaitable[PipelineTask]]


class Session:
    """A caller. The factory builds the pipeline from `session.input` and `session.output`.

    `clock` (default: the current one) times the session: connect and media timeouts, arrivals.
    """

    def __init__(
        self, options: SessionOptions | None = None, session_id: str | None = None, clock: Clock | None = None
    ) -> None:
        self.id = session_id or secrets.token_urlsafe(12)
        self.options = options or SessionOptions()
        self.clock = clock or current_clock()
        self.pc = RTCPeerConnection(self.options.ice.rtc_configuration())
        self.input = WebRTCInputTransport(self.options.input, name=f"webrtc.in.{self.id}")
        self.output = WebRTCOutputTransport(name=f"webrtc.out.{self.id}")
        self.task: PipelineTask | None = None
        self.end_reason: str | None = None
        #: Facts the app attaches to the session (e.g. its usage), printed in its end line.
        self.annotations: dict[str, object] = {}
        self.channel: RTCDataChannel | None = None
        self._stages: list[ReorderStage] = []
        self._has_audio = False
        self._connected_ns = 0
        self._pending_events: list[str] = []
        self._changed = Signal()
        self._hang_up = False
        self._closed = False
        self._pipeline_over = False
        # The caller's RTVI endpoint exists from the start: its client-ready may come before the
        # factory has built the task (the endpoint answers once the pipeline runs).
        self._inbox = FrameInbox(f"session {self.id}", _MAX_INBOX_FRAMES)
        self._events_observer: ClientEventsObserver | None = ClientEventsObserver(
            self.send_event, None, self._inbox.deliver
        )
        self.pc.on("connectionstatechange", self._on_state_change)
        self.pc.on("datachannel", self._on_datachannel)

    # --- signalling --------------------------------------------------------------------------------

    async def accept(self, sdp: str, kind: str) -> RTCSessionDescription:
        """Apply the caller's offer and return our answer (with all our candidates)."""
        if not _looks_like_sdp(sdp):
            raise SessionError("bad_sdp", "the offer is not an SDP description (lines of the form 'x=...')")
        if kind != "offer":
            raise SessionError("bad_sdp_type", f"expected an SDP of type 'offer', got {kind!r}")
        try:
            offer = RTCSessionDescription(sdp=self.options.ice.filter_sdp(sdp), type=kind)
            await self.pc.setRemoteDescription(offer)
        except Exception as exc:
            raise SessionError("bad_sdp", f"the offer could not be applied: {exc or type(exc).__name__}") from exc
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise SessionError("no_audio", "the offer has no audio section")
        for transceiver in audio:
            self._stages.append(install_receive_path(transceiver.receiver, self.options.receive, self.clock))
        caller_audio = self._stages[0].decoded or audio[0].receiver.track
        self._has_audio = True
        self.input.attach(caller_audio)
        self.pc.addTrack(self.output.track)
        if self.options.ice.host_addresses is not None:
            ignore_checks_from_other_hosts(self.pc, self.options.ice.host_addresses)
        with self.options.ice.gathering() as binding:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        if binding.exhausted:
            ports = self.options.ice.udp_ports
            raise SessionError("udp_ports_exhausted", f"no free UDP port in {ports} for this call; retry", status=503)
        answer = self.pc.localDescription
        return RTCSessionDescription(sdp=self.options.ice.announce(answer.sdp), type=answer.type)

    async def add_candidate(self, candidate: dict[str, Any] | None) -> bool:
        """Add a trickled remote candidate (None: end of candidates). False if filtered out."""
        if candidate is None:
            await self.pc.addIceCandidate(None)
            return True
        line = candidate.get("candidate")
        if not isinstance(line, str):
            raise SessionError("bad_candidate", "a candidate needs a 'candidate' string")
        if not line:  # the browser's empty end-of-candidates marker
            await self.pc.addIceCandidate(None)
            return True
        try:
            parsed = candidate_from_sdp(line.removeprefix("a=").removeprefix("candidate:"))
        except Exception as exc:
            raise SessionError("bad_candidate", f"unparseable candidate: {line[:80]!r}") from exc
        if not self.options.ice.accepts_candidate(line):
            return False
        # The browser's names, or Pipecat's small-webrtc client's.
        mid = candidate.get("sdpMid", candidate.get("sdp_mid"))
        index = candidate.get("sdpMLineIndex", candidate.get("sdp_mline_index"))
        if not isinstance(mid, str | None) or not (index is None or type(index) is int):
            raise SessionError("bad_candidate", "'sdpMid' must be a string and 'sdpMLineIndex' an integer")
        parsed.sdpMid, parsed.sdpMLineIndex = mid, index if mid is not None or index is not None else 0
        try:
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:  # e.g. the connection closed meanwhile
            raise SessionError("candidate_rejected", f"the candidate could not be added: {exc!r}") from exc
        return True

    def hang_up(self) -> None:
        """End the session (the caller said goodbye)."""
        self._hang_up = True
        self._changed.fire()

    # --- client events ------------------------------------------------------------------------------

    def send_event(self, message: Message) -> None:
        """Send one JSON message to the caller over the data channel (queued until it opens)."""
        text = json.dumps(message)
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(text)
        elif len(self._pending_events) < _MAX_PENDING_EVENTS:
            self._pending_events.append(text)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self.channel is not None:
            return
        self.channel = channel
        channel.on("message", self._on_client_message)
        if channel.readyState == "open":
            self._flush_events()
        else:
            channel.on("open", self._flush_events)

    def _on_client_message(self, message: str | bytes) -> None:
        if self._events_observer is not None:
            self._events_observer.receive(message)

    @property
    def dropped_client_frames(self) -> int:
        """Frames from the caller's messages that found the inbox full (or the pipeline over)."""
        return self._inbox.dropped

    def _flush_events(self) -> None:
        channel = self.channel
        if channel is None:
            return
        pending, self._pending_events = self._pending_events, []
        for text in pending:
            channel.send(text)

    def _say_peer_left(self) -> None:
        """Tell a Pipecat small-webrtc client the bot is leaving (its `onBotDisconnected`); best effort."""
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps({"type": "signalling", "message": {"type": "peerLeft"}}))

    # --- lifecycle ------------------------------------------------------------------------------------

    def _on_state_change(self) -> None:
        self._changed.fire()

    @property
    def read_lateness_s(self) -> float:
        """How late the caller's packets are being read (s): the wait in the kernel's receive
        queue and the network's, over the least seen (see `_lateness`); 0 before any arrives."""
        return max((stage.read_lateness.lateness_ns for stage in self._stages), default=0.0) / NS_PER_S

    @property
    def state(self) -> str:
        return self.pc.connectionState

    async def run(self, factory: TaskFactory) -> None:
        """Serve the caller until the session ends; always releases everything."""
        try:
            self.task = task = await factory(self)
            endpoint = self._events_observer
            assert endpoint is not None
            endpoint.tracer = task.tracer
            task.params.observers.append(endpoint)
            if await self._wait_connected():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch, task)
                    tg.start_soon(self._inbox.forward, task)
                    tg.start_soon(endpoint.run)
                    try:
                        await task.run()
                        self.end_reason = self.end_reason or "pipeline ended"
                    finally:
                        # The watchdog, the forwarder and the word pacer return by themselves: a
                        # cancelled task's exception would keep its frame, and so this session,
                        # in a cycle until a collection.
                        self._pipeline_over = True
                        self._inbox.close()
                        endpoint.close()
                        self._changed.fire()
        except Exception as exc:
            cause = first_error(exc)  # the task group's one failure, not the group around it
            self.end_reason = f"error: {cause!r}"
            logger.exception("session %s failed", self.id)
            # The caller hears why the call ends (a provider refused it, a processor failed at
            # start), unless a fatal ErrorFrame already told it; sent before the channel closes.
            endpoint = self._events_observer
            if endpoint is None or not endpoint.fatal_error_sent:
                self.send_event(envelope("error", {"error": str(cause), "message": str(cause), "fatal": True}))
        finally:
            self.end_reason = self.end_reason or "server stopped"
            with anyio.CancelScope(shield=True):
                await self.close()
            # The server logs the one end line (with the duration) once the session is gone.

    async def _wait_connected(self) -> bool:
        deadline = self.clock.now_ns() + round(self.options.connect_timeout_s * NS_PER_S)
        async with move_on_at(deadline, self.clock):
            while True:
                if self.pc.connectionState == "connected":
                    self._connected_ns = self.clock.now_ns()
                    return True
                reason = self._end_condition()
                if reason is not None:
                    self.end_reason = reason
                    return False
                await self._wait_change()
        self.end_reason = f"not connected within {self.options.connect_timeout_s:g} s"
        return False

    async def _watch(self, task: PipelineTask) -> None:
        """End the task when the caller is gone: on a state change, or at the media deadline.
        Returns by itself once the pipeline is over (a cancelled watcher would keep the session
        alive in a cycle with its exception)."""
        while not self._pipeline_over:
            reason = self._end_condition() or self._media_timed_out()
            if reason is not None:
                self.end_reason = reason
                await task.cancel()
                return
            await self._wait_change(self._media_deadline_ns())

    async def _wait_change(self, until_ns: int | None = None) -> None:
        """Until something changes, `until_ns`, or `_WATCH_INTERVAL_NS` (a backstop) passes."""
        wake = self.clock.now_ns() + _WATCH_INTERVAL_NS
        async with move_on_at(wake if until_ns is None else min(wake, until_ns), self.clock):
            await self._changed.wait()

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until the peer connection is up; TimeoutError if not within `timeout_s`."""
        async with fail_at(self.clock.now_ns() + round(timeout_s * NS_PER_S), self.clock):
            while self.pc.connectionState != "connected":
                await self._changed.wait()

    def _end_condition(self) -> str | None:
        if self._hang_up:
            return "hung up"
        if self.pc.connectionState in ("failed", "closed"):
            return f"connection {self.pc.connectionState}"
        return None

    def _media_deadline_ns(self) -> int | None:
        """When the caller counts as gone if no packet arrives before (None: never)."""
        timeout = self.options.media_timeout_s
        if timeout is None or not self._has_audio or not self._stages:
            return None
        # Counted from the later of "connected" and the last packet: a caller who never sends
        # anything is as gone as one who stopped.
        last = max(self._connected_ns, *(stage.last_arrival_ns for stage in self._stages))
        return last + round(timeout * NS_PER_S)

    def _media_timed_out(self) -> str | None:
        deadline = self._media_deadline_ns()
        if deadline is not None and self.clock.now_ns() >= deadline:
            return f"no media for {self.options.media_timeout_s:g} s"
        return None

    async def close(self) -> None:
        """Release the peer connection, its tracks and aiortc's tasks and threads (idempotent).

        Also cuts every reference from what may outlive the call back to this session (the
        pipeline's observer, aiortc's listeners, the data channel's), so the session, its peer
        connection and their codecs are freed when the call ends, not at the next cycle
        collection.
        """
        if self._closed:
            return
        self._closed = True
        if self._events_observer is not None:
            self._events_observer.close()
            self._events_observer = None
        self._inbox.discard()
        self._say_peer_left()
        self.output.track.stop()
        for stage in self._stages:
            if stage.decoded is not None:
                stage.decoded.stop()
        # Real time, not the session's clock: `run` closes under shield during teardown, when no
        # test steps a VirtualClock, so a deadline on it would never fire and a stuck close
        # would hang the server's shutdown. This bounds aiortc's own (real-time) teardown.
        with anyio.move_on_after(self.options.close_timeout_s):
            try:
                await self.pc.close()
            except Exception:  # aiortc fails on a peer it set up half-way (an offer naming absent sections)
                logger.warning("session %s: closing the peer connection failed", self.id, exc_info=True)
        release_peer_connection(self.pc)
        if self.channel is not None:
            self.channel.remove_all_listeners()
        self._pending_events.clear()


def _looks_like_sdp(sdp: str) -> bool:
    """RFC 8866 shape: starts with v=0, every line is a one-letter type, '=', value."""
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    return bool(lines) and lines[0] == "v=0" and all(len(x) > 1 and x[1] == "=" and x[0].isalpha() for x in lines)
