"""``POST /v1/audio/speech/events``: speech and its word timings over plain HTTP, as server-sent events.

For clients that cannot hold a WebSocket: the body is the speech endpoint's
(``model``, ``input``, ``speed``, ``voice``), the answer a ``text/event-stream``
whose events are JSON ``data:`` lines, each sent as soon as it exists:

- ``{"type": "speech.start", "sample_rate", "format": "pcm_s16le", "channels": 1}``
- ``{"type": "speech.audio.delta", "audio": BASE64}``: PCM16 little-endian mono
  (OpenAI's SSE audio event, with raw PCM)
- ``{"type": "speech.word_timings", "words": [{"word", "start_char", "end_char", "start", "end"}]}``
- ``{"type": "speech.audio.done", "samples", "seconds"}``, or ``{"type": "error", ...}``
  when synthesis fails after the stream started.

Admission, limits and bad input are the speech endpoint's (``429``, ``413``,
``400``...); a model without word timings is ``400`` naming why. A client that
hangs up stops its synthesis at the next chunk.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import AsyncIterator, Callable, Mapping

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictStr
from starlette.responses import StreamingResponse

from ..audio import float_to_pcm16
from ..runtime.frontend import ReviewedText
from .concurrency import QueueFull, Ticket
from .config import Limits
from .errors import ApiError
from .metrics import ServerMetrics
from .models import ServedModel

log = logging.getLogger("ttsstack.serve")

SPEECH_EVENTS_PATH = "/v1/audio/speech/events"


class TimedSpeechRequest(BaseModel):
    """The body of :data:`SPEECH_EVENTS_PATH`: what to speak, by which model, at which ``speed``."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    input: StrictStr
    voice: StrictStr | None = None
    speed: StrictFloat = Field(1.0, ge=0.25, le=4.0)


def add_speech_events(
    app: FastAPI, models: Mapping[str, ServedModel], limits: Limits, metrics: ServerMetrics,
    check: Callable[[TimedSpeechRequest], tuple[ServedModel, ReviewedText]],
) -> None:
    """Route :data:`SPEECH_EVENTS_PATH`; ``check`` is the speech endpoint's own model and input check."""

    @app.post(SPEECH_EVENTS_PATH)
    async def speech_events(body: TimedSpeechRequest) -> StreamingResponse:
        """Speak ``input`` as server-sent events of audio and word timings."""
        model, text = check(body)
        if model.voice.timings_unavailable:
            raise ApiError(400, f"model '{model.name}' cannot give word timings: {model.voice.timings_unavailable}",
                           "model", "timings_unavailable")
        try:
            ticket = model.gate.reserve()
        except QueueFull as exc:
            raise ApiError(429, f"model '{model.name}' is busy: {exc}; retry later", "model", "rate_limited",
                           headers={"Retry-After": str(limits.retry_after_s)}) from None
        return StreamingResponse(_events(model, ticket, text.text, body.speed, metrics), media_type="text/event-stream",
                                 headers={"cache-control": "no-store"})


def _event(data: dict) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


async def _events(model: ServedModel, ticket: Ticket, text: str, speed: float,
                  metrics: ServerMetrics) -> AsyncIterator[bytes]:
    rate = model.voice.sample_rate
    async with ticket.slot():
        chunks = model.voice.stream_audio(text, speed, timings=True)
        samples, finished = 0, False
        try:
            yield _event({"type": "speech.start", "sample_rate": rate, "format": "pcm_s16le", "channels": 1})
            while (item := await model.gate.run_sync(lambda: next(chunks, None))) is not None:
                if len(item.chunk):
                    samples += len(item.chunk)
                    yield _event({"type": "speech.audio.delta",
                                  "audio": base64.b64encode(float_to_pcm16(item.chunk)).decode()})
                if item.words:
                    yield _event({"type": "speech.word_timings", "words": [w.as_dict() for w in item.words]})
            finished = True
            yield _event({"type": "speech.audio.done", "samples": samples, "seconds": round(samples / rate, 6)})
            metrics.streams.labels(model.name, "completed").inc()
        except Exception as exc:
            finished = True
            log.exception("%s: synthesis failed after %d samples", model.name, samples)
            metrics.streams.labels(model.name, "failed").inc()
            yield _event({"type": "error", "code": "synthesis_failed", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            if not finished:
                metrics.streams.labels(model.name, "cancelled").inc()
            chunks.close()
