"""ASGI middleware of the server: the request body cap and deadline, the API key, and the count of speech requests."""

from __future__ import annotations

import hmac

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .metrics import ServerMetrics


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` (``413``) or slower than ``timeout_s`` (``408``) before parsing.

    A ``Content-Length`` over the cap is refused without reading; otherwise the
    body is read up to the cap (chunked uploads included) within ``timeout_s``
    of the headers, and handed on whole. Later ``receive`` calls (a client
    hanging up) go to the server as usual.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        body = bytearray()
        other: Message | None = None  # a disconnect before the body was complete
        with anyio.move_on_after(self.timeout_s) as deadline:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    other = message
                    break
                body += message.get("body", b"")
                if len(body) > self.max_bytes:
                    break
                if not message.get("more_body", False):
                    break
        if other is not None:
            await self.app(scope, _replay([other], receive), send)
            return
        if len(body) > self.max_bytes:
            await self._refuse(scope, send)
            return
        if deadline.cancelled_caught:
            message = f"request body: {len(body)} bytes arrived in the server's body timeout of {self.timeout_s:g} s, not all of it"
            await error_response(408, message, "body", "body_timeout", {"connection": "close"})(scope, _replay([], None), send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": bytes(body), "more_body": False}], receive), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"request body is larger than the server's limit of {self.max_bytes} bytes"
        await error_response(413, message, "body", "body_too_large")(scope, _replay([], None), send)


class RequireApiKey:
    """``401`` (OpenAI's error shape) for a request without ``Authorization: Bearer KEY``, on every path but ``open_paths``.

    The key is compared in constant time; the probes (liveness, readiness)
    stay open so that orchestrators can check the server without it.
    """

    def __init__(self, app: ASGIApp, key: str, open_paths: frozenset[str]):
        self.app = app
        self.key = key.encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            await self.app(scope, receive, send)
            return
        message = ("missing or wrong API key: send the header 'Authorization: Bearer KEY' "
                   "with the key the server was started with (--api-key or TTSSTACK_API_KEY)")
        if scope["type"] == "websocket":  # refused before the handshake: the client gets 403
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        response = error_response(401, message, None, "invalid_api_key", {"www-authenticate": "Bearer"})
        await response(scope, _replay([], None), send)


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
    """Counts requests to ``paths`` by the status they are answered with, in ``ttsstack_requests_total``.

    The model label is the ``model`` the route stored in the request state
    (``request.state.model``), empty when the request named no served addon.
    A request that ends without any answer (its client hung up while it was
    queued) is counted as ``499``, one that raised before answering as ``500``.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, paths: frozenset[str]):
        self.app = app
        self.metrics = metrics
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        answered = False

        def count(status: int) -> None:
            self.metrics.requests.labels(state.get("model", ""), str(status)).inc()

        async def counting_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if not answered:
                count(500)
            raise
        if not answered:
            count(CLIENT_CLOSED_REQUEST)


CLIENT_CLOSED_REQUEST = 499
"""The status a request is counted under when its client left before it was answered (nginx's convention)."""
