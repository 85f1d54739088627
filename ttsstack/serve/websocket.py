"""``/v1/audio/speech/stream``: a WebSocket that takes text as it is written and streams speech back.

Client to server, JSON text messages:

- ``{"type": "start", "model": NAME, "speed": 1.0, "timings": false}``: first, once.
- ``{"type": "text", "text": FRAGMENT}``: text as an LLM produces it. Clauses
  are cut out as soon as they are complete (:mod:`ttsstack.runtime.clauses`)
  and spoken at once; what is pending is flushed after ``flush_after_s``
  without a fragment.
- ``{"type": "flush"}``: speak what is pending now.
- ``{"type": "end"}``: no more text; the rest is spoken, then ``end`` is sent
  and the server closes the connection.
- ``{"type": "clear"}``: barge-in: pending text, queued clauses and the clause
  being spoken are dropped; ``cleared`` answers once nothing more of them will come.

Server to client: JSON events and binary audio frames (PCM16 little-endian
mono at the ``sample_rate`` of ``start``):

- ``{"type": "start", "model", "sample_rate", "format": "pcm_s16le", "channels": 1, "timings"}``
- ``{"type": "audio", "clause", "text", "char_start", "start"}``: a clause
  begins; its binary frames follow (``start``: seconds into the session's audio).
- ``{"type": "timings", "words": [{"word", "start_char", "end_char", "start", "end"}]}``:
  words whose timing is known (characters of all text sent, seconds of all audio sent).
- ``{"type": "cleared"}``, ``{"type": "end", "samples", "seconds"}``.
- ``{"type": "error", "code", "message", "param"}``: a bad message (the
  session goes on), or why the server closes it.

Limits: text beyond the server's ``max_input_chars`` in all is refused with an
``error`` frame (``input_too_long``) and the text accepted before is still
spoken; a client that sends nothing for ``ws_idle_timeout_s`` while nothing is
being spoken is closed with code 1008 and the reason. Each clause takes a
synthesis slot of the model's admission gate like an HTTP request; a full
queue is an ``error`` frame (``rate_limited``) and that clause is dropped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Literal, Mapping

import anyio
import anyio.lowlevel
from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictStr, TypeAdapter, ValidationError
from starlette.websockets import WebSocketDisconnect

from ..audio import float_to_pcm16
from ..runtime.clauses import Clause, ClauseBuffer
from ..runtime.frontend import FrontendError
from ..runtime.incremental import speak_clause
from .concurrency import QueueFull
from .config import Limits
from .metrics import ServerMetrics
from .models import ServedModel

log = logging.getLogger("ttsstack.serve")

SPEECH_STREAM_PATH = "/v1/audio/speech/stream"
POLICY_VIOLATION = 1008
"""WebSocket close code for a client closed for breaking a limit (idle, a bad start)."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartMessage(_Message):
    """The session's settings: the served ``model``, its ``speed`` (0.25 to 4) and whether to send word ``timings``."""

    type: Literal["start"]
    model: StrictStr
    speed: StrictFloat = Field(1.0, ge=0.25, le=4.0)
    timings: StrictBool = False
    voice: StrictStr | None = None


class TextMessage(_Message):
    """A fragment of the text to speak."""

    type: Literal["text"]
    text: StrictStr


class ControlMessage(_Message):
    """``flush``, ``end`` or ``clear``."""

    type: Literal["flush", "end", "clear"]


_SESSION_MESSAGE = TypeAdapter(TextMessage | ControlMessage)


def add_speech_websocket(app: FastAPI, models: Mapping[str, ServedModel], limits: Limits, metrics: ServerMetrics) -> None:
    """Route :data:`SPEECH_STREAM_PATH` on ``app`` to a :class:`SpeechSession` per connection."""

    @app.websocket(SPEECH_STREAM_PATH)
    async def speech_stream(websocket: WebSocket) -> None:
        """Text fragments in, speech out (the protocol is this module's docstring)."""
        await websocket.accept()
        session = await SpeechSession.open(websocket, models, limits, metrics)
        if session is not None:
            await session.run()


def _error(code: str, message: str, param: str | None = None) -> dict:
    return {"type": "error", "code": code, "message": message, "param": param}


def _reason(errors: list) -> str:
    """A validation error in one line, naming the field."""
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "message"
    return f"{where}: {first['msg']}"


class SpeechSession:
    """One WebSocket client: a listener reading its messages, a speaker sending the audio of each clause."""

    def __init__(self, websocket: WebSocket, model: ServedModel, start: StartMessage, limits: Limits,
                 metrics: ServerMetrics):
        self.websocket = websocket
        self.model = model
        self.start = start
        self.limits = limits
        self.metrics = metrics
        self.buffer = ClauseBuffer()
        self.send_clause, self.clauses = anyio.create_memory_object_stream[tuple[int, Clause]](math.inf)
        self.generation = 0
        """Bumped by ``clear``: clauses of an older generation are not spoken."""
        self.speaking: anyio.CancelScope | None = None
        self.samples = 0
        self.clause_count = 0
        self.last_activity = time.monotonic()
        self.ended = False
        self._send_lock = anyio.Lock()
        self._scope: anyio.CancelScope | None = None

    @classmethod
    async def open(cls, websocket: WebSocket, models: Mapping[str, ServedModel], limits: Limits,
                   metrics: ServerMetrics) -> "SpeechSession | None":
        """Read the ``start`` message and answer it; None (the connection closed with the reason) when it is bad."""
        with anyio.move_on_after(limits.ws_idle_timeout_s):
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            try:
                start = StartMessage.model_validate_json(message.get("text") or b"")
            except ValidationError as exc:
                await _refuse(websocket, _error("invalid_start", f"start: {_reason(exc.errors())}; the first message is "
                              '{"type": "start", "model": NAME} as JSON text', "type"))
                return None
            model = models.get(start.model)
            if model is None:
                await _refuse(websocket, _error("model_not_found", f"model '{start.model}' is not served here; served "
                              f"models: {', '.join(models) or '(none)'}", "model"))
                return None
            if start.timings and model.voice.timings_unavailable:
                await _refuse(websocket, _error("timings_unavailable", f"model '{model.name}' cannot give word "
                              f"timings: {model.voice.timings_unavailable}", "timings"))
                return None
            await websocket.send_json({"type": "start", "model": model.name, "sample_rate": model.voice.sample_rate,
                                       "format": "pcm_s16le", "channels": 1, "timings": start.timings})
            return cls(websocket, model, start, limits, metrics)
        await websocket.close(POLICY_VIOLATION, f"no start message within {limits.ws_idle_timeout_s:g} s")
        return None

    async def run(self) -> None:
        """Listen and speak until the client ends (all spoken), hangs up, or idles out."""
        async with anyio.create_task_group() as group:
            self._scope = group.cancel_scope
            group.start_soon(self._speak)
            try:
                await self._listen()  # returns when it closed an idle client
            except WebSocketDisconnect:
                pass
            self._hang_up()

    def _hang_up(self) -> None:
        """The client left (or was closed for idling): stop listening and speaking, once."""
        if not self._scope.cancel_called:
            self.metrics.streams.labels(self.model.name, "cancelled").inc()
            self._scope.cancel()

    async def _send(self, message: dict | bytes) -> None:
        """Send one frame; a connection that is gone ends the session (a cancellation, raised here)."""
        async with self._send_lock:
            try:
                if isinstance(message, bytes):
                    await self.websocket.send_bytes(message)
                else:
                    await self.websocket.send_json(message)
            except (WebSocketDisconnect, OSError, RuntimeError):  # hung up, or closed: Starlette refuses to send
                self._hang_up()
                await anyio.lowlevel.checkpoint()

    async def _listen(self) -> None:
        limits = self.limits
        while True:
            pending = bool(self.buffer.pending.strip()) and not self.ended
            idle_at = self.last_activity + limits.ws_idle_timeout_s
            flush_at = self.last_activity + limits.ws_flush_after_s if pending else math.inf
            message = None
            with anyio.move_on_after(max(0.0, min(idle_at, flush_at) - time.monotonic())):
                message = await self.websocket.receive()
            if message is None:
                if pending and time.monotonic() >= flush_at:
                    await self._queue(self.buffer.flush())
                elif self.speaking is None and time.monotonic() >= idle_at and not self.ended:
                    await self.websocket.close(POLICY_VIOLATION, f"idle: no text for {limits.ws_idle_timeout_s:g} s")
                    return
                else:
                    self.last_activity = time.monotonic()  # still speaking: the client is listening
                continue
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            self.last_activity = time.monotonic()
            await self._handle(message)

    async def _handle(self, message: dict) -> None:
        if message.get("text") is None:
            await self._send(_error("invalid_message", "binary frames are not accepted: send JSON text messages "
                                    '({"type": "text", "text": ...}, "flush", "end", "clear")', "type"))
            return
        try:
            parsed = _SESSION_MESSAGE.validate_json(message["text"])
        except ValidationError as exc:
            await self._send(_error("invalid_message", _reason(exc.errors()), "type"))
            return
        if parsed.type == "clear":
            await self._clear()
        elif self.ended:
            await self._send(_error("ended", f"'{parsed.type}' after 'end': the session takes no more text", "type"))
        elif parsed.type == "text":
            await self._text(parsed.text)
        elif parsed.type == "flush":
            await self._queue(self.buffer.flush())
        else:  # end
            self.ended = True
            await self._queue(self.buffer.flush())
            self.send_clause.close()

    async def _text(self, fragment: str) -> None:
        limit = self.limits.max_input_chars
        if self.buffer.received + len(fragment) > limit:
            await self._send(_error(
                "input_too_long", f"text: {self.buffer.received + len(fragment)} characters in all would be over the "
                f"limit of {limit}; this fragment was dropped, the text before it is spoken", "text"))
            return
        for clause in self.buffer.feed(fragment):
            await self._queue(clause)

    async def _queue(self, clause: Clause | None) -> None:
        if clause is not None:
            await self.send_clause.send((self.generation, clause))

    async def _clear(self) -> None:
        """Drop pending text, queued clauses and the clause being spoken; then say ``cleared``."""
        self.generation += 1
        self.buffer.clear()
        if self.speaking is not None:
            self.speaking.cancel()
        await self._send({"type": "cleared"})

    async def _speak(self) -> None:
        async with self.clauses:
            async for generation, clause in self.clauses:
                if generation != self.generation:
                    continue
                with anyio.CancelScope() as self.speaking:
                    await self._speak_clause(clause)
                self.speaking = None
        await self._send({"type": "end", "samples": self.samples,
                          "seconds": round(self.samples / self.model.voice.sample_rate, 6)})
        self.metrics.streams.labels(self.model.name, "completed").inc()
        await self.websocket.close(1000, "end")
        self._scope.cancel()

    async def _speak_clause(self, clause: Clause) -> None:
        model, start = self.model, self.start
        try:
            ticket = model.gate.reserve()
        except QueueFull as exc:
            await self._send(_error("rate_limited", f"model '{model.name}' is busy: {exc}; clause dropped: "
                                    f"{clause.text[:80]!r}", "model"))
            return
        async with ticket.slot():
            rate = model.voice.sample_rate
            chunks = speak_clause(model.voice, clause, start.speed, None, start.timings, self.samples / rate)

            def next_chunk():
                item = next(chunks, None)
                return None if item is None else (float_to_pcm16(item.chunk), item.words)

            try:
                await self._send({"type": "audio", "clause": self.clause_count, "text": clause.text,
                                  "char_start": clause.char_start, "start": round(self.samples / rate, 6)})
                self.clause_count += 1
                while (item := await model.gate.run_sync(next_chunk)) is not None:
                    pcm, words = item
                    if pcm:
                        await self._send(pcm)
                        self.samples += len(pcm) // 2
                    if words:
                        await self._send({"type": "timings", "words": [w.as_dict() for w in words]})
            except FrontendError as exc:
                await self._send(_error("invalid_input", f"text: {exc}; clause skipped: {clause.text[:80]!r}", "text"))
            except Exception as exc:
                log.exception("%s: synthesis of a clause failed", model.name)
                self.metrics.streams.labels(model.name, "failed").inc()
                await self._send(_error("synthesis_failed", f"synthesis failed: {type(exc).__name__}: {exc}"))
            finally:
                chunks.close()


async def _refuse(websocket: WebSocket, error: dict) -> None:
    """Send ``error`` and close the connection with its message as the reason."""
    await websocket.send_text(json.dumps(error))
    await websocket.close(POLICY_VIOLATION, error["message"][:120])
