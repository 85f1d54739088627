"""Readiness: whether every served addon has warmed up, so a load balancer may send it traffic.

``ttsstack serve`` loads every addon before it listens; the application then
warms each one up (:meth:`~ttsstack.runtime.Voice.warmup`: the first network
calls, where TorchScript and ONNX Runtime optimise) in a worker thread at
startup. ``GET /readyz`` answers ``503`` until all are warm, ``200`` after;
``GET /healthz`` is liveness only and answers as soon as the server listens.
"""

from __future__ import annotations

import logging
from typing import Mapping

import anyio.to_thread

from ..runtime import Voice

log = logging.getLogger("ttsstack.serve")


class Readiness:
    """Which addons are still warming up, and any that failed to."""

    def __init__(self, names: list[str]):
        self.pending = list(names)
        self.failed: dict[str, str] = {}

    @property
    def ready(self) -> bool:
        """Every addon warmed up without error."""
        return not self.pending and not self.failed

    async def warm_up(self, voices: Mapping[str, Voice]) -> None:
        """Warm each voice up in turn, in a worker thread; a failure is kept and logged, and readiness never comes."""
        for name, voice in voices.items():
            try:
                await anyio.to_thread.run_sync(voice.warmup)
            except Exception as exc:
                log.exception("%s: warm-up failed; the server will not report ready", name)
                self.failed[name] = f"{type(exc).__name__}: {exc}"
            else:
                log.info("%s: warmed up", name)
            self.pending.remove(name)

    def describe(self) -> str:
        """Why the server is not ready, for the ``503``."""
        parts = []
        if self.pending:
            parts.append(f"warming up: {', '.join(self.pending)}")
        parts.extend(f"{name} failed to warm up: {error}" for name, error in self.failed.items())
        return "; ".join(parts)
