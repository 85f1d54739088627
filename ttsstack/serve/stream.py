"""One utterance streamed as chunked HTTP audio, each chunk sent as soon as it is vocoded.

The synthesis is a pull: a worker thread computes the next audio chunk only
when the previous one has been handed to the server, so a slow client slows
its own synthesis (TCP backpressure) instead of piling up audio, and a client
that hangs up stops it within one chunk: a watcher sees ``http.disconnect``,
cancels the stream, the chunk being computed finishes (a worker thread is
never abandoned), and no further one is asked for.

What arrives is exactly ``Voice.synthesize_audio`` of the same text, in PCM16:
the vocoder works on a fixed grid of absolute frames, so streamed float
samples are identical to whole-utterance ones whatever the chunking, and the
only difference is the 16-bit quantisation, at most half a step
(``ttsstack.tolerances.PCM16``: 0.5 / 32767 after clipping to [-1, 1]).

Errors found before the first chunk (text with nothing to say, a failing
network) are JSON errors with a status; an error after audio has started
ends that stream by closing its connection without the final chunk, which
HTTP clients report as an incomplete body. Either way the server goes on.

With ``stream: false`` the same chunks are gathered (the input limit bounds
them: 4,096 characters are about 12 MB of PCM16 at 22,050 Hz) and sent as one body with
``Content-Length``; a ``wav`` then carries its true sizes, and an error at
any point is a JSON error. A client that reads nothing for the server's send
timeout is cut off by the protocol (:mod:`ttsstack.serve.protocol`); the
stream then stops like a hang-up and is counted as ``stalled``.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..audio import float_to_pcm16, wav_header
from ..runtime.frontend import FrontendError, ReviewedText
from .concurrency import Ticket
from .errors import error_response
from .metrics import ServerMetrics
from .models import ServedModel
from .protocol import SEND_STALLED

log = logging.getLogger("ttsstack.serve")

MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm"}


class SpeechStream(Response):
    """ASGI response: waits for a synthesis slot, then sends the audio of ``text``, streamed or whole.

    ``text`` is the reviewed input (:meth:`~ttsstack.runtime.frontend.Frontend.review`):
    its skipped characters go in the ``X-Skipped-Characters`` header.
    ``arrived`` is when the request reached the route (``time.perf_counter``),
    the start of its time to first audio.
    """

    def __init__(
        self,
        model: ServedModel,
        ticket: Ticket,
        text: ReviewedText,
        speed: float,
        audio_format: str,
        stream: bool,
        metrics: ServerMetrics,
        arrived: float,
    ):
        super().__init__(media_type=MEDIA_TYPES[audio_format])
        self.model = model
        self.ticket = ticket
        self.text = text
        self.speed = speed
        self.audio_format = audio_format
        self.stream = stream
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
        audio = self.model.voice.stream_audio(self.text.text, self.speed)
        try:
            await self._send_audio(audio, scope, send, started)
        finally:
            audio.close()

    async def _send_error(self, scope: Scope, send: Send, status: int, message: str, param: str | None, code: str) -> None:
        self._finished = True
        await error_response(status, message, param, code)(scope, _no_receive, send)

    async def _send_audio(self, audio: Iterator, scope: Scope, send: Send, started: float) -> None:
        name, gate = self.model.name, self.model.gate

        def next_pcm() -> bytes | None:
            chunk = next(audio, None)
            return None if chunk is None else float_to_pcm16(chunk)

        try:
            pcm = await gate.run_sync(next_pcm)
        except FrontendError as exc:
            await self._send_error(scope, send, 400, f"input: {exc}", "input", "invalid_input")
            return
        except Exception as exc:
            await self._fail_before_audio(scope, send, exc)
            return
        self.metrics.time_to_first_audio.labels(name).observe(time.perf_counter() - self.arrived)
        if not self.stream:
            await self._send_whole(pcm, next_pcm, scope, send, started)
            return
        await send({"type": "http.response.start", "status": 200, "headers": self._headers()})
        if self.audio_format == "wav":
            await send({"type": "http.response.body", "body": wav_header(self.model.voice.sample_rate, None), "more_body": True})
        samples = 0
        try:
            while pcm is not None:
                await send({"type": "http.response.body", "body": pcm, "more_body": True})
                samples += len(pcm) // 2
                pcm = await gate.run_sync(next_pcm)
        except Exception:
            self._finished = True
            log.exception("%s: synthesis failed after %d samples; ending the stream", name, samples)
            self.metrics.streams.labels(name, "failed").inc()
            return
        self._finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self._completed(samples, started)

    async def _send_whole(self, pcm: bytes | None, next_pcm, scope: Scope, send: Send, started: float) -> None:
        """Gather every chunk, then send one body with ``Content-Length`` (a WAV with its true sizes)."""
        pieces: list[bytes] = []
        try:
            while pcm is not None:
                pieces.append(pcm)
                pcm = await self.model.gate.run_sync(next_pcm)
        except Exception as exc:
            await self._fail_before_audio(scope, send, exc)
            return
        samples = sum(len(p) for p in pieces) // 2
        if self.audio_format == "wav":
            pieces.insert(0, wav_header(self.model.voice.sample_rate, samples))
        body = b"".join(pieces)
        headers = self._headers() + [(b"content-length", str(len(body)).encode())]
        self._finished = True
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        self._completed(samples, started)

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

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers = {
            "content-type": MEDIA_TYPES[self.audio_format],
            "cache-control": "no-store",
            "x-sample-rate": str(self.model.voice.sample_rate),
            "x-sample-format": "s16le",
            "x-channels": "1",
        }
        if self.text.skipped:
            headers["x-skipped-characters"] = self.text.summary()
        return [(k.encode(), v.encode()) for k, v in headers.items()]


async def _no_receive() -> dict:
    """A ``receive`` for responses that never read the request."""
    return {"type": "http.disconnect"}
