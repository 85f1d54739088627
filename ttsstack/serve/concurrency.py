"""Admission per addon: a bounded number of running syntheses, a bounded queue behind them.

A request first *reserves* a place (:meth:`AdmissionGate.reserve`, synchronous,
so checking and taking a place cannot be interleaved with other requests); when
running plus waiting requests are already at ``max_concurrent + max_queue`` it
is refused with :class:`QueueFull` (the server answers ``429``). Its
:class:`Ticket` then waits, first come first served, for one of the
``max_concurrent`` synthesis slots. Synthesis work runs in worker threads
bounded by the gate's own thread limiter, never on the event loop.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class QueueFull(Exception):
    """Every synthesis slot and queue place of an addon is taken."""


class AdmissionGate:
    """Slots and queue places of one addon; ``active`` and ``waiting`` are live counts."""

    def __init__(self, max_concurrent: int, max_queue: int):
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.active = 0
        self.waiting = 0
        self._slots = anyio.Semaphore(max_concurrent)
        self._threads = anyio.CapacityLimiter(max_concurrent)

    def reserve(self) -> "Ticket":
        """Take a queue place now, or raise :class:`QueueFull`."""
        if self.active + self.waiting >= self.max_concurrent + self.max_queue:
            raise QueueFull(
                f"{self.active} syntheses running and {self.waiting} waiting "
                f"(limits: {self.max_concurrent} running, {self.max_queue} waiting)"
            )
        self.waiting += 1
        return Ticket(self)

    async def run_sync(self, func: Callable[[], T]) -> T:
        """Run ``func`` in a worker thread; a cancellation waits for it to return, then takes effect."""
        return await anyio.to_thread.run_sync(func, limiter=self._threads)


class Ticket:
    """A reserved queue place: :meth:`slot` waits for a synthesis slot and holds it."""

    def __init__(self, gate: AdmissionGate):
        self._gate = gate

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait (cancellably) for a slot, hold it for the block, then give it back.

        The queue place is given up either way, when the slot is granted or
        when the wait is cancelled (the client went away while queued).
        """
        gate = self._gate
        try:
            await gate._slots.acquire()
        finally:
            gate.waiting -= 1
        gate.active += 1
        try:
            yield
        finally:
            gate.active -= 1
            gate._slots.release()
