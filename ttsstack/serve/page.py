"""``GET /``: a page to try the served models in a browser, served by the server itself (no build step, no CDN).

The page (``static/index.html`` and ``static/page.js`` in this package) lists
the models of ``GET /v1/models``, sends the text over the speech WebSocket
(:mod:`ttsstack.serve.websocket`), plays the PCM frames with Web Audio as
they arrive, shows the time from the click to the first audio and, for a
model with word timings, highlights each word while it is heard.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from starlette.responses import Response

PAGE_PATH = "/"
STATIC = {"/static/page.js": ("page.js", "text/javascript; charset=utf-8")}


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def add_page(app: FastAPI) -> None:
    """Serve the page at :data:`PAGE_PATH` and its script; both read once, from the installed package."""
    page = _read("index.html")
    files = {path: (_read(name), media) for path, (name, media) in STATIC.items()}

    @app.get(PAGE_PATH, include_in_schema=False)
    async def index() -> Response:
        """The page."""
        return Response(page, media_type="text/html; charset=utf-8", headers={"cache-control": "no-cache"})

    for path, (body, media) in files.items():
        app.add_api_route(path, _static(body, media), methods=["GET"], include_in_schema=False)


def _static(body: bytes, media: str):
    async def serve() -> Response:
        """A static file of the page."""
        return Response(body, media_type=media, headers={"cache-control": "no-cache"})

    return serve
