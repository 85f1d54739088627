"""One utterance streamed as chunked HTTP audio, each chunk sent as soon as it is vocoded.

The synthesis is a pull: a worker thread computes the next audio chunk only
when the previous one has been handed to the server, so a slow client slows
its own synthesis (TCP backpressure) instead of piling up audio, and a client
that hangs up stops it within one chunk: a watcher sees ``http.disconnect``,
cancels the stream, the chunk being computed finishes (a worker thread is
never abandoned), and no further one is asked for.

Each chunk is encoded as it comes (:mod:`ttsstack.audio.encode`: MP3, Opus,
AAC, FLAC, μ-law through PyAV, WAV and PCM as PCM16) in the same worker thread,
and whatever bytes the encoder has ready are sent. A ``pcm`` or ``wav`` at the
voice's rate is exactly ``Voice.synthesize_audio`` of the same text, in PCM16:
the vocoder works on a fixed grid of absolute frames, so streamed float
samples are identical to whole-utterance ones whatever the chunking, and the
only difference is the 16-bit quantisation, at most half a step
(``ttsstack.tolerances.PCM16``: 0.5 / 32767 after clipping to [-1, 1]).
With ``stream_format: "sse"`` the same bytes go out base64-encoded in OpenAI's
server-sent events (``speech.audio.delta``, then ``speech.audio.done``, which
also says how many ``samples`` and ``seconds`` were sent). With ``timings``
the voice streams :class:`~ttsstack.runtime.timings.TimedChunk`s (same
samples), a ``speech.start`` event leads, and each chunk's finished words
follow its audio as a ``speech.word_timings`` event; without, the voice
streams plain chunks and nothing is aligned.

Errors found before the first chunk (text with nothing to say, a failing
network) are JSON errors with a status; an error after audio has started
ends that stream by closing its connection without the final chunk, which
HTTP clients report as an incomplete body. Either way the server goes on.

With ``stream: false`` the same chunks are gathered (the input limit bounds
them: 4,096 characters are about 12 MB of PCM16 at 22,050 Hz) and sent as one body with
``Content-Length``; a ``wav`` then carries its true sizes (FLAC its sample
count, MP3 its gapless-playback header), and an error at
any point is a JSON error. A client that reads nothing for the server's send
timeout is cut off by the protocol (:mod:`ttsstack.serve.protocol`); the
stream then stops like a hang-up and is counted as ``stalled``.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Iterator

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..audio.encode import FORMATS, AudioEncoder, encoder_for
from ..runtime.frontend import FrontendError, ReviewedText
from ..runtime.speakers import SpeakerChoice
from ..runtime.timings import WordTiming
from .concurrency import Ticket
from .errors import error_response
from .metrics import ServerMetrics
from .models import ServedModel
from .protocol import SEND_STALLED

log = logging.getLogger("ttsstack.serve")

SSE_MEDIA_TYPE = "text/event-stream"


@dataclass(frozen=True)
class Delivery:
    """How a response carries its audio: ``audio_format`` at ``sample_rate``, streamed or whole, raw or as SSE
    (with word ``timings`` events or without)."""

    audio_format: str
    sample_rate: int
    stream: bool = True
    sse: bool = False
    timings: bool = False

    @property
    def media_type(self) -> str:
        """The response's ``Content-Type``."""
        return SSE_MEDIA_TYPE if self.sse else FORMATS[self.audio_format].media_type


def sse_event(event: dict) -> bytes:
    """One server-sent event carrying ``event`` as JSON on a ``data:`` line (OpenAI's framing)."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def audio_delta(audio: bytes) -> bytes:
    """OpenAI's ``speech.audio.delta`` event for encoded ``audio``."""
    return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode("ascii")})


def audio_done(samples: int, rate: int) -> bytes:
    """OpenAI's ``speech.audio.done`` event (ttsstack counts no tokens: zero usage), with the ``samples``
    sent at ``rate`` and their ``seconds``."""
    return sse_event({"type": "speech.audio.done", "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
                      "samples": samples, "seconds": round(samples / rate, 6)})


def word_timings(words: tuple[WordTiming, ...]) -> bytes:
    """ttsstack's ``speech.word_timings`` event: words whose timings became known."""
    return sse_event({"type": "speech.word_timings", "words": [w.as_dict() for w in words]})


class SpeechStream(Response):
    """ASGI response: waits for a synthesis slot, then sends the audio of ``text`` as ``delivery`` says.

    ``text`` is the reviewed input (:meth:`~ttsstack.runtime.frontend.Frontend.review`):
    its skipped characters go in the ``X-Skipped-Characters`` header.
    ``speaker`` is the addon's speaker the request picked (None: the addon has none).
    ``arrived`` is when the request reached the route (``time.perf_counter``),
    the start of its time to first audio.
    """

    def __init__(
        self,
        model: ServedModel,
        ticket: Ticket,
        text: ReviewedText,
        speed: float,
        speaker: SpeakerChoice,
        delivery: Delivery,
        metrics: ServerMetrics,
        arrived: float,
    ):
        super().__init__(media_type=delivery.media_type)
        self.model = model
        self.ticket = ticket
        self.text = text
        self.speed = speed
        self.speaker = speaker
        self.delivery = delivery
        self.metrics = metrics
        self.arrived = arrived
        self._finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_disconnect, scope, receive, group.cancel_scope)
            async with self.ticket.slot():
                await self._synthesize(scope, send)
            self._finished = True
            group.cancel_scope.cancel()

    async def _watch_disconnect(self, scope: Scope, receive: Receive, cancel_scope: anyio.CancelScope) -> None:
        """Cancel the stream when the client hangs up (or is cut off for reading nothing) before it has finished."""
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self._finished:
            stalled = SEND_STALLED in scope.get("extensions", {})
            self.metrics.streams.labels(self.model.name, "stalled" if stalled else "cancelled").inc()
            if stalled:
                log.warning("%s: client read nothing for %ss, synthesis stopped", self.model.name, scope["extensions"][SEND_STALLED])
            else:
                log.info("%s: client disconnected, synthesis stopped", self.model.name)
            cancel_scope.cancel()

    async def _synthesize(self, scope: Scope, send: Send) -> None:
        started = time.perf_counter()
        delivery = self.delivery
        audio = self.model.voice.stream_audio(self.text.text, self.speed, self.speaker, timings=delivery.timings)
        encoder = encoder_for(delivery.audio_format, self.model.voice.sample_rate, delivery.sample_rate,
                              whole=not delivery.stream)
        try:
            await self._send_audio(_EncodedChunks(audio, encoder, delivery.timings), scope, send, started)
        finally:
            audio.close()

    async def _send_error(self, scope: Scope, send: Send, status: int, message: str, param: str | None, code: str) -> None:
        self._finished = True
        await error_response(status, message, param, code)(scope, _no_receive, send)

    async def _send_audio(self, chunks: "_EncodedChunks", scope: Scope, send: Send, started: float) -> None:
        name, gate = self.model.name, self.model.gate
        try:
            data = await gate.run_sync(chunks.next)
        except FrontendError as exc:
            await self._send_error(scope, send, 400, f"input: {exc}", "input", "invalid_input")
            return
        except Exception as exc:
            await self._fail_before_audio(scope, send, exc)
            return
        self.metrics.time_to_first_audio.labels(name).observe(time.perf_counter() - self.arrived)
        if not self.delivery.stream:
            await self._send_whole(data, chunks, scope, send, started)
            return
        await send({"type": "http.response.start", "status": 200, "headers": self._headers()})
        frame = audio_delta if self.delivery.sse else bytes
        try:
            if self.delivery.timings:
                await send({"type": "http.response.body", "body": self._start_event(), "more_body": True})
            while data is not None:
                if data:
                    await send({"type": "http.response.body", "body": frame(data), "more_body": True})
                if chunks.words:
                    await send({"type": "http.response.body", "body": word_timings(chunks.words), "more_body": True})
                data = await gate.run_sync(chunks.next)
        except Exception as exc:
            self._finished = True
            log.exception("%s: synthesis failed after %d samples; ending the stream", name, chunks.samples)
            self.metrics.streams.labels(name, "failed").inc()
            if self.delivery.sse:
                error = {"message": f"synthesis failed: {type(exc).__name__}: {exc}", "type": "server_error",
                         "param": None, "code": "synthesis_failed"}
                await send({"type": "http.response.body", "body": sse_event({"type": "error", "error": error}), "more_body": True})
            return
        self._finished = True
        sent = round(chunks.samples * self.delivery.sample_rate / self.model.voice.sample_rate)
        done = audio_done(sent, self.delivery.sample_rate) if self.delivery.sse else b""
        await send({"type": "http.response.body", "body": done, "more_body": False})
        self._completed(chunks.samples, started)

    async def _send_whole(self, data: bytes | None, chunks: "_EncodedChunks", scope: Scope, send: Send, started: float) -> None:
        """Encode every chunk, then send the complete file as one body with ``Content-Length``."""
        try:
            while data is not None:
                data = await self.model.gate.run_sync(chunks.next)
        except Exception as exc:
            await self._fail_before_audio(scope, send, exc)
            return
        body = chunks.whole
        headers = self._headers() + [(b"content-length", str(len(body)).encode())]
        self._finished = True
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        self._completed(chunks.samples, started)

    async def _fail_before_audio(self, scope: Scope, send: Send, exc: Exception) -> None:
        """A synthesis that failed before any audio was sent: ``500`` with a JSON error."""
        log.error("%s: synthesis failed before audio was sent", self.model.name, exc_info=exc)
        self.metrics.streams.labels(self.model.name, "failed").inc()
        message = f"synthesis failed: {type(exc).__name__}: {exc}"
        await self._send_error(scope, send, 500, message, None, "synthesis_failed")

    def _completed(self, samples: int, started: float) -> None:
        name = self.model.name
        self.metrics.streams.labels(name, "completed").inc()
        elapsed = time.perf_counter() - started
        self.metrics.observe_speed(name, samples / self.model.voice.sample_rate, elapsed)

    def _start_event(self) -> bytes:
        """ttsstack's ``speech.start`` event: what the audio is (raw PCM named ``pcm_s16le``, as the WebSocket's
        ``start`` names it)."""
        delivery = self.delivery
        audio_format = "pcm_s16le" if delivery.audio_format == "pcm" else delivery.audio_format
        return sse_event({"type": "speech.start", "format": audio_format, "sample_rate": delivery.sample_rate,
                          "channels": 1})

    def _headers(self) -> list[tuple[bytes, bytes]]:
        delivery = self.delivery
        headers = {
            "content-type": delivery.media_type,
            "cache-control": "no-store",
            "x-audio-format": delivery.audio_format,
            "x-sample-rate": str(delivery.sample_rate),
            "x-channels": "1",
        }
        if delivery.audio_format in RAW_SAMPLE_FORMATS:
            headers["x-sample-format"] = RAW_SAMPLE_FORMATS[delivery.audio_format]
        if self.text.skipped:
            headers["x-skipped-characters"] = self.text.summary()
        return [(k.encode(), v.encode()) for k, v in headers.items()]


RAW_SAMPLE_FORMATS = {"wav": "s16le", "pcm": "s16le", "mulaw": "mulaw"}
"""The ``X-Sample-Format`` of the formats whose bytes are samples."""


class _EncodedChunks:
    """The voice's audio chunks through an encoder: :meth:`next` (run in a worker thread) gives the bytes
    ready after the next chunk, ``b""`` when the encoder is still filling a frame, None at the end.

    ``samples`` counts the voice's samples so far; ``whole`` is the complete file of a ``whole`` encoder.
    With ``timed``, ``audio`` yields :class:`~ttsstack.runtime.timings.TimedChunk`\ s and ``words``
    holds those of the latest chunk.
    """

    def __init__(self, audio: Iterator, encoder: AudioEncoder, timed: bool = False):
        self._audio = audio
        self._encoder = encoder
        self._timed = timed
        self._done = False
        self.samples = 0
        self.whole = b""
        self.words: tuple[WordTiming, ...] = ()

    def next(self) -> bytes | None:
        """Synthesize and encode the next chunk; after the last, the encoder's rest (or the whole file)."""
        self.words = ()
        if self._done:
            return None
        chunk = next(self._audio, None)
        if chunk is not None:
            if self._timed:
                self.words, chunk = chunk.words, chunk.chunk
            self.samples += len(chunk)
            return self._encoder.encode(chunk) if len(chunk) else b""
        self._done = True
        rest = self._encoder.finish()
        if self._encoder.whole:
            self.whole = rest
            return b""
        return rest


async def _no_receive() -> dict:
    """A ``receive`` for responses that never read the request."""
    return {"type": "http.disconnect"}
