"""Running the application on uvicorn with the server's limits, and a clean exit on SIGTERM."""

from __future__ import annotations

import signal
import socket
from functools import partial
from typing import Sequence

import uvicorn
from fastapi import FastAPI

from .config import Limits
from .protocol import GuardedH11Protocol


def server_config(app: FastAPI, limits: Limits, host: str = "127.0.0.1", port: int = 8000,
                  log_level: str = "info") -> uvicorn.Config:
    """uvicorn's configuration for ``app``: ttsstack's protocol and every limit of ``limits`` that uvicorn enforces."""
    protocol = partial(GuardedH11Protocol, header_timeout_s=limits.header_timeout_s, send_timeout_s=limits.send_timeout_s)
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, http=protocol,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=limits.shutdown_grace_s,  # type: ignore[arg-type]
        ws_max_size=limits.max_body_bytes,
    )


def run_server(config: uvicorn.Config, sockets: Sequence[socket.socket]) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully and return.

    On the signal uvicorn stops accepting, lets running responses finish for
    up to ``timeout_graceful_shutdown`` seconds, cancels the rest and runs the
    lifespan shutdown. It then re-raises the signal it caught, which would kill
    the process with that signal; a no-op handler in place meanwhile makes the
    graceful shutdown an ordinary return (exit status 0).
    """
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, _shut_down_already) for sig in handled}
    try:
        uvicorn.Server(config).run(sockets=list(sockets))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _shut_down_already(signum: int, frame: object) -> None:
    """The signal uvicorn re-raises after its graceful shutdown: nothing is left to do."""
