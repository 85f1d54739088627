"""An iterator run ahead in its own thread: the mel stream decodes while the vocoder works on the last chunk.

A stream's mel frames (encoder, decoder steps, postnet) and its audio
(the vocoder) used to take turns in one thread. :func:`prefetched` runs the
mel side in a producer thread, at most :data:`AHEAD` chunks ahead, so on a host
with two cores or more both halves compute at once (the networks' and
Griffin-Lim's kernels release the GIL). It also keeps an autoregressive
decoder stepping without pauses, so the streams batching one step network
(:mod:`~ttsstack.runtime.batching`) meet at every step instead of one of
them vocoding. The items and their order are those of the source: the
output is the same, only when it is made changes.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

Item = TypeVar("Item")

AHEAD = 1
"""Chunks the producer may hold ready beyond the consumer's: one is enough to overlap the two halves, and
each more is work a stream whose client hung up may still do (it also makes one while this one waits)."""

_POLL_S = 0.05
"""How often a producer blocked on a full queue checks whether the consumer left."""


class _End:
    """The producer's last queue entry: the source ended, or raised ``error``."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def prefetched(source: Iterator[Item], depth: int = AHEAD) -> Iterator[Item]:
    """The items of ``source``, produced in a background thread at most ``depth`` items ahead.

    An exception in ``source`` is raised here, with its traceback, after the
    items before it. Closing this iterator early (a client went away) returns
    at once and stops the producer at its next item, which then closes
    ``source`` in its own thread. Close does not wait for the item in
    progress: the server closes a stream on its event loop, which must not
    stall for a decoder window of another stream's client who left.
    """
    items: queue.Queue = queue.Queue(depth)
    stopped = threading.Event()

    def put(entry) -> bool:
        """Queue ``entry`` unless the consumer left first; False if it did."""
        while not stopped.is_set():
            try:
                items.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_End())
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_End(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="ttsstack-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            entry = items.get()
            if isinstance(entry, _End):
                if entry.error is not None:
                    raise entry.error
                return
            yield entry
    finally:
        stopped.set()
