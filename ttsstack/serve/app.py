"""The FastAPI application: routes over the served addons."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Sequence

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from .. import __version__
from ..audio.encode import FormatUnavailable, check_available, output_rate
from ..runtime import Voice
from ..runtime.frontend import ReviewedText
from .concurrency import QueueFull
from .config import Limits
from .errors import ApiError, api_error_handler, http_error_handler, validation_error_handler
from .metrics import CONTENT_TYPE, ServerMetrics
from .middleware import BodySizeLimit, CountSpeechRequests, RequireApiKey
from .models import ServedModel, served_models
from .readiness import Readiness
from .schemas import SpeechEventsRequest, SpeechRequest
from .page import add_page
from .stream import Delivery, SpeechStream
from .voices import UnknownVoice, speaker_for
from .websocket import add_speech_websocket

SPEECH_PATH = "/v1/audio/speech"
SPEECH_EVENTS_PATH = "/v1/audio/speech/events"
"""The speech endpoint with the defaults of timed events (:class:`SpeechEventsRequest`): PCM, SSE, word timings."""
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
"""Liveness and readiness: open without the API key."""


def create_app(voices: Sequence[Voice], limits: Limits | None = None, api_key: str | None = None) -> FastAPI:
    """The server application for loaded voices, each served under its addon's name.

    Two voices with one addon name are a ``ValueError``. ``limits`` bounds
    concurrency, queueing and request sizes (see :class:`Limits`). With
    ``api_key``, every endpoint but the probes needs ``Authorization: Bearer
    <api_key>``. At startup (the ASGI lifespan) each voice is warmed up in a
    worker thread; ``GET /readyz`` answers ``200`` once all are.
    """
    limits = limits or Limits()
    models = served_models(voices, limits)
    metrics = ServerMetrics({name: m.gate for name, m in models.items()}, {name: m.voice for name, m in models.items()})
    readiness = Readiness(list(models))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(readiness.warm_up, {name: m.voice for name, m in models.items()})
            yield
            group.cancel_scope.cancel()

    app = FastAPI(title="ttsstack", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    if api_key:
        app.add_middleware(RequireApiKey, key=api_key, open_paths=PROBE_PATHS)
    app.add_middleware(CountSpeechRequests, metrics=metrics, paths=frozenset({SPEECH_PATH, SPEECH_EVENTS_PATH}))

    @app.post(SPEECH_PATH)
    async def speech(body: SpeechRequest, request: Request) -> Response:
        """Speak ``input`` (OpenAI ``audio.speech`` body): streamed, or whole with ``stream: false``."""
        arrived = time.perf_counter()
        model = _model(models, body.model)
        request.state.model = model.name
        text = _check_input(body.input, model, limits)
        delivery = _delivery(body, model)
        try:
            speaker = speaker_for(model.voice, body.voice)
        except UnknownVoice as exc:
            raise ApiError(400, str(exc), "voice", "voice_not_found") from None
        try:
            ticket = model.gate.reserve()
        except QueueFull as exc:
            raise ApiError(
                429, f"model '{model.name}' is busy: {exc}; retry later", "model", "rate_limited",
                headers={"Retry-After": str(limits.retry_after_s)},
            ) from None
        return SpeechStream(model, ticket, text, body.speed, speaker, delivery, metrics, arrived)

    @app.post(SPEECH_EVENTS_PATH)
    async def speech_events(body: SpeechEventsRequest, request: Request) -> Response:
        """Speak ``input`` as server-sent events of raw PCM16 and word timings (the speech endpoint's defaults
        changed to ``response_format: "pcm"``, ``stream_format: "sse"``, ``timings: true``)."""
        return await speech(body, request)

    add_speech_websocket(app, models, limits, metrics)
    add_page(app)

    @app.get("/v1/models")
    async def list_models() -> dict:
        """The served addons with their backends (OpenAI list shape)."""
        return {"object": "list", "data": [m.card() for m in models.values()]}

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the server answers and which models it serves."""
        return {"status": "ok", "models": list(models)}

    @app.get("/readyz")
    async def readyz() -> dict:
        """Readiness: ``200`` once every addon has loaded and warmed up, ``503`` naming the others before."""
        if not readiness.ready:
            raise ApiError(503, f"not ready: {readiness.describe()}", None, "not_ready",
                           headers={"Retry-After": str(limits.retry_after_s)})
        return {"status": "ready", "models": list(models)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app


def _model(models: dict[str, ServedModel], name: str) -> ServedModel:
    """The served model called ``name``, or ``404`` listing the served ones."""
    try:
        return models[name]
    except KeyError:
        raise ApiError(
            404, f"model '{name}' is not served here; served models: {', '.join(models) or '(none)'}",
            "model", "model_not_found",
        ) from None


def _delivery(body: SpeechRequest, model: ServedModel) -> Delivery:
    """How the audio goes out; ``400`` for a format this host cannot encode, a rate its codec does not take or
    timings the model cannot give, ``422`` for SSE without streaming or timings without SSE."""
    if body.stream_format == "sse" and not body.stream:
        raise ApiError(422, 'stream_format: "sse" sends events as they are made; it cannot be combined with '
                            '"stream": false', "stream_format", "invalid_value")
    if body.timings and body.stream_format != "sse":
        raise ApiError(422, 'timings: word timings are server-sent events; they need "stream_format": "sse"',
                       "timings", "invalid_value")
    if body.timings and model.voice.timings_unavailable:
        raise ApiError(400, f"timings: model '{model.name}' cannot give word timings: "
                            f"{model.voice.timings_unavailable}", "timings", "timings_unavailable")
    try:
        fmt = check_available(body.response_format)
    except FormatUnavailable as exc:
        raise ApiError(400, f"response_format: {exc}", "response_format", "unsupported_format") from None
    try:
        rate = output_rate(fmt, model.voice.sample_rate, body.sample_rate)
    except FormatUnavailable as exc:
        raise ApiError(400, f"sample_rate: {exc}", "sample_rate", "unsupported_sample_rate") from None
    return Delivery(fmt.name, rate, body.stream, body.stream_format == "sse", body.timings)


def _check_input(text: str, model: ServedModel, limits: Limits) -> ReviewedText:
    """The input as the model's frontend will speak it; ``400`` when nothing is left to say, ``413`` when too long."""
    if len(text) > limits.max_input_chars:
        raise ApiError(
            413, f"input: is {len(text)} characters long, over the limit of {limits.max_input_chars}",
            "input", "input_too_long",
        )
    if not text.strip():
        raise ApiError(400, "input: is empty; give the text to speak", "input", "empty_input")
    reviewed = model.voice.frontend.review(text)
    if len(reviewed.skipped) == sum(not char.isspace() for char in text):
        raise ApiError(
            400, f"input: has nothing {model.name} can speak; not spoken: {reviewed.summary()} "
                 f"({model.voice.frontend.policy})", "input", "invalid_input",
        )
    return reviewed
