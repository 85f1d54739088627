"""ASGI middleware of the server: the request body cap, and the count of speech requests by status."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .metrics import ServerMetrics


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with ``413`` before the application parses them.

    A ``Content-Length`` over the cap is refused without reading; otherwise the
    body is read up to the cap (chunked uploads included) and handed on whole.
    Later ``receive`` calls (a client hanging up) go to the server as usual.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay([{"type": "http.request", "body": bytes(body), "more_body": False}], receive), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"request body is larger than the server's limit of {self.max_bytes} bytes"
        await error_response(413, message, "body", "body_too_large")(scope, _replay([], None), send)


def _replay(messages: list[Message], receive: Receive | None) -> Receive:
    """A ``receive`` that returns ``messages`` first, then defers to ``receive`` (or reports a disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        if receive is None:
            return {"type": "http.disconnect"}
        return await receive()

    return replay


class CountSpeechRequests:
    """Counts requests to ``path`` by the status they are answered with, in ``ttsstack_requests_total``.

    The model label is the ``model`` the route stored in the request state
    (``request.state.model``), empty when the request named no served addon.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, path: str):
        self.app = app
        self.metrics = metrics
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(state.get("model", ""), str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
