"""ttsstack's HTTP protocol for uvicorn: h11 plus the two timeouts uvicorn does not have.

uvicorn bounds the size of request headers (``h11_max_incomplete_event_size``),
idle keep-alive connections (``timeout_keep_alive``) and the number of
connections (``limit_concurrency``), but not how long a client may take to
send its request headers, nor how long a response may stay blocked on a
client that reads nothing. This protocol adds both:

- **header timeout**: a connection must deliver a complete request line and
  headers within ``header_timeout_s`` of connecting (or of the end of its
  previous response), else it is closed. Half-sent headers hold nothing for longer.
- **send timeout**: when a response's writes have been blocked for
  ``send_timeout_s`` (asyncio paused writing because the client's window and
  our buffer are full), the connection is aborted, buffered bytes dropped.
  The application then sees ``http.disconnect``, and the request's scope is
  marked (``scope["extensions"][SEND_STALLED]``) so that it can count the
  stream as stalled rather than hung up.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

SEND_STALLED = "ttsstack.send_stalled"
"""Key in ``scope["extensions"]`` set (to the timeout in seconds) when the connection was aborted for a stalled send."""


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-header timeout and a stalled-send timeout (see the module)."""

    def __init__(self, *args, header_timeout_s: float, send_timeout_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.send_timeout_s = send_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_timer = _cancelled(self._header_timer)
        self._send_timer = _cancelled(self._send_timer)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are complete
            self._header_timer = _cancelled(self._header_timer)

    def on_response_complete(self) -> None:
        self._arm_header_timer()  # before: a pipelined request may start inside
        super().on_response_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout_s, self._send_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._send_timer = _cancelled(self._send_timer)

    def _arm_header_timer(self) -> None:
        _cancelled(self._header_timer)
        self._header_timer = None
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        self.logger.info("closing a connection that sent no complete request headers in %.3g s", self.header_timeout_s)
        self.transport.abort()

    def _send_stalled(self) -> None:
        self._send_timer = None
        if self.cycle is not None:
            self.cycle.scope.setdefault("extensions", {})[SEND_STALLED] = self.send_timeout_s  # type: ignore[index]
        self.logger.warning("aborting a connection whose client read nothing for %.3g s", self.send_timeout_s)
        self.transport.abort()


def _cancelled(timer: asyncio.TimerHandle | None) -> None:
    """Cancel ``timer`` when there is one; returns None, to clear the attribute holding it."""
    if timer is not None:
        timer.cancel()
    return None
