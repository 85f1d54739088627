"""The HTTP server: OpenAI-compatible speech streamed from several addons in one process.

``create_app(voices, limits)`` builds the FastAPI application around loaded
:class:`~ttsstack.runtime.Voice` objects (one per addon, each on its own
backend); ``ttsstack serve`` loads them and runs it on uvicorn. Endpoints:
``POST /v1/audio/speech``, ``GET /v1/models``, ``GET /healthz``, ``GET /metrics``.
"""

from .app import create_app
from .config import AddonSource, Limits, parse_addon_source, require_unique_names

__all__ = ["AddonSource", "Limits", "create_app", "parse_addon_source", "require_unique_names"]
