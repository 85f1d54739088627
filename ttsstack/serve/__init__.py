"""The HTTP server: OpenAI-compatible speech streamed from several addons in one process.

``create_app(voices, limits, api_key)`` builds the FastAPI application around
loaded :class:`~ttsstack.runtime.Voice` objects (one per addon, each on its own
backend); ``ttsstack serve`` loads them and runs it on uvicorn with
:func:`~ttsstack.serve.server.server_config` (ttsstack's protocol, which adds
header and send timeouts, and uvicorn's own limits). Endpoints:
``POST /v1/audio/speech`` (and ``/v1/audio/speech/events``, its SSE with word timings),
the speech WebSocket, ``GET /v1/models``, ``GET /healthz`` (liveness),
``GET /readyz`` (readiness: every addon warmed up), ``GET /metrics``.
Responses are encoded by :mod:`ttsstack.audio.encode`; :mod:`ttsstack.serve.ray_app`
runs the same application as Ray Serve replicas (``ttsstack serve --ray``).

The configuration names (:class:`Limits`, :class:`AddonSource`, ...) import
without the server's dependencies, so the CLI can describe them where the
``serve`` extra is not installed; ``create_app`` is imported on first use.
"""

from typing import Any

from .config import AddonSource, Limits, parse_addon_source, require_unique_names

__all__ = ["AddonSource", "Limits", "create_app", "parse_addon_source", "require_unique_names"]


def __getattr__(name: str) -> Any:
    """``create_app``, imported on first access (it needs FastAPI)."""
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
