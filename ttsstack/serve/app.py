"""The FastAPI application: routes over the served addons."""

from __future__ import annotations

import time
from typing import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from .. import __version__
from ..runtime import Voice
from .concurrency import QueueFull
from .config import Limits
from .errors import ApiError, api_error_handler, validation_error_handler
from .metrics import CONTENT_TYPE, ServerMetrics
from .middleware import BodySizeLimit, CountSpeechRequests
from .models import ServedModel, served_models
from .schemas import SpeechRequest
from .stream import SpeechStream

SPEECH_PATH = "/v1/audio/speech"


def create_app(voices: Sequence[Voice], limits: Limits | None = None) -> FastAPI:
    """The server application for loaded voices, each served under its addon's name.

    Two voices with one addon name are a ``ValueError``. ``limits`` bounds
    concurrency, queueing and request sizes (see :class:`Limits`).
    """
    limits = limits or Limits()
    models = served_models(voices, limits)
    metrics = ServerMetrics({name: m.gate for name, m in models.items()})
    app = FastAPI(title="ttsstack", version=__version__, docs_url=None, redoc_url=None)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(CountSpeechRequests, metrics=metrics, path=SPEECH_PATH)

    @app.post(SPEECH_PATH)
    async def speech(body: SpeechRequest, request: Request) -> Response:
        """Stream the speech of ``input`` (OpenAI ``audio.speech`` body)."""
        arrived = time.perf_counter()
        model = _model(models, body.model)
        request.state.model = model.name
        _check_input(body.input, limits)
        try:
            ticket = model.gate.reserve()
        except QueueFull as exc:
            raise ApiError(
                429, f"model '{model.name}' is busy: {exc}; retry later", "model", "rate_limited",
                headers={"Retry-After": str(limits.retry_after_s)},
            ) from None
        return SpeechStream(model, ticket, body.input, body.speed, body.response_format, metrics, arrived)

    @app.get("/v1/models")
    async def list_models() -> dict:
        """The served addons with their backends (OpenAI list shape)."""
        return {"object": "list", "data": [m.card() for m in models.values()]}

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the server answers and which models it serves."""
        return {"status": "ok", "models": list(models)}

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


def _check_input(text: str, limits: Limits) -> None:
    """``400`` for text with nothing to say, ``413`` for text over the limit."""
    if not text.strip():
        raise ApiError(400, "input: is empty; give the text to speak", "input", "empty_input")
    if len(text) > limits.max_input_chars:
        raise ApiError(
            413, f"input: is {len(text)} characters long, over the limit of {limits.max_input_chars}",
            "input", "input_too_long",
        )
