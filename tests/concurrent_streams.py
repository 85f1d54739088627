"""Streams started at once in threads, as a server's workers run them: for the batching tests."""

from __future__ import annotations

import threading

import numpy as np

from ttsstack.runtime.batching import BatchingRunner

TRIES = 5
"""Rounds :func:`batched_round` tries: whether two streams' calls meet is up to the scheduler, so a round may
run every call alone (about one in six for two short streams here); five such rounds in a row are one in 8,000."""


def streams_at_once(voice, texts: list[str], audio: bool = False) -> list[np.ndarray]:
    """Each text streamed (mel, or audio) in its own thread, all released together; each stream's whole output."""
    results: list[np.ndarray | None] = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def speak(index: int) -> None:
        start.wait()
        chunks = voice.stream_audio(texts[index]) if audio else voice.stream(texts[index])
        results[index] = np.concatenate(list(chunks))

    threads = [threading.Thread(target=speak, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def batch_sizes(voice) -> dict[str, dict[int, int]]:
    """Calls per batch size of each batched network of ``voice`` so far."""
    return {name: dict(r.batches) for name, r in voice.runners.items() if isinstance(r, BatchingRunner)}


def batched_round(voice, texts: list[str], audio: bool = False) -> list[np.ndarray]:
    """:func:`streams_at_once` until a round in which some network ran a batch of several calls (at most
    :data:`TRIES` rounds); that round's outputs. Fails when no round batched."""
    for _ in range(TRIES):
        before = batch_sizes(voice)
        outputs = streams_at_once(voice, texts, audio)
        after = batch_sizes(voice)
        if any(after[n].get(size, 0) > before[n].get(size, 0) for n in after for size in after[n] if size > 1):
            return outputs
    raise AssertionError(f"no batch of several calls in {TRIES} rounds: {batch_sizes(voice)}")
