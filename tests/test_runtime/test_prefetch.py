"""The mel stream run ahead of the vocoder in its own thread: same items, errors raised, nothing left running."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import ttsstack
from ttsstack.runtime import RuntimeOptions
from ttsstack.runtime.prefetch import prefetched


def _counting(n: int, made: list[int], closed: threading.Event, fail_at: int | None = None):
    try:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"item {i} is bad")
            made.append(i)
            yield i
    finally:
        closed.set()


def _no_producer_left(timeout_s: float = 5.0) -> bool:
    """Whether every producer thread has ended, within ``timeout_s`` (a closed stream's producer ends at its next item)."""
    deadline = time.monotonic() + timeout_s
    while any(t.name == "ttsstack-prefetch" for t in threading.enumerate()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_items_come_in_order_made_in_another_thread():
    threads = []

    def source():
        for i in range(50):
            threads.append(threading.get_ident())
            yield i

    assert list(prefetched(source())) == list(range(50))
    assert set(threads) != {threading.get_ident()}
    assert _no_producer_left()


def test_an_error_comes_after_the_items_before_it():
    closed = threading.Event()
    got = []
    with pytest.raises(ValueError, match="item 3 is bad"):
        for item in prefetched(_counting(10, [], closed, fail_at=3)):
            got.append(item)
    assert got == [0, 1, 2] and closed.wait(5)
    assert _no_producer_left()


def test_the_producer_runs_at_most_depth_items_ahead():
    made: list[int] = []
    stream = prefetched(_counting(100, made, threading.Event()), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)
    # item 0 taken, 2 queued, 1 made and waiting for room
    assert len(made) <= 4
    stream.close()


def test_closing_early_stops_the_producer_and_closes_the_source():
    closed = threading.Event()
    made: list[int] = []
    stream = prefetched(_counting(10_000, made, closed))
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    # the producer stops at its next item and closes the source in its thread, not left running
    assert closed.wait(5) and _no_producer_left()
    assert len(made) < 10


def test_closing_does_not_wait_for_the_item_in_progress():
    """The server closes a stream on its event loop: close must return while the producer is still inside
    the source (a decoder window of a client who left), not stall every other stream until it ends."""
    release, closed = threading.Event(), threading.Event()

    def source():
        try:
            yield 0
            release.wait(30)
            yield 1
        finally:
            closed.set()

    stream = prefetched(source())
    assert next(stream) == 0
    closer = threading.Thread(target=stream.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive() and not closed.is_set()  # returned while the producer was busy
    release.set()
    assert closed.wait(5) and _no_producer_left()  # then the producer stopped at its next item


@pytest.mark.parametrize("backend", ["cpu", "onnx"])
def test_a_voice_vocoding_in_its_own_thread_makes_the_same_audio(demo_compiled, backend):
    text = "Two sentences stream. The vocoder runs a chunk behind!"
    ahead = ttsstack.load(demo_compiled, backend, compile_if_needed=False)
    inline = ttsstack.load(demo_compiled, backend, options=RuntimeOptions(vocoder_thread=False), compile_if_needed=False)
    assert ahead.options.vocoder_thread
    np.testing.assert_array_equal(np.concatenate(list(ahead.stream_audio(text))), np.concatenate(list(inline.stream_audio(text))))
    timed = ahead.synthesize_timed(text)
    np.testing.assert_array_equal(timed.audio, inline.synthesize_audio(text))
