"""Speech from text as it is written: fragments in, audio out as soon as each clause is complete.

:func:`stream_text` (``Voice.stream_text``) reads an async iterable of text
fragments (an LLM's tokens), cuts clauses out of them as they complete
(:class:`~ttsstack.runtime.clauses.ClauseBuffer`) and speaks each clause as
``Voice.stream_audio`` would speak it alone, so the audio equals
synthesizing the same clauses one by one. The first clause is heard while
the rest of the text is still being written. A clause is also flushed when
no fragment came for ``flush_after_s`` seconds, and the rest when the
fragments end. Synthesis runs in worker threads, one chunk at a time.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, AsyncIterable, AsyncIterator, Iterator

import anyio
import anyio.abc
import anyio.to_thread

from .clauses import FLUSH_AFTER_S, Clause, ClauseBuffer
from .timings import TimedChunk

if TYPE_CHECKING:
    from .voice import Voice

def speak_clause(voice: "Voice", clause: Clause, speed: float, speaker, timings: bool, before_s: float) -> Iterator[TimedChunk]:
    """The audio of one clause, alone; with ``timings`` its words in the whole text and the whole audio
    (characters from ``clause.char_start``, seconds from ``before_s``)."""
    if not timings:
        for samples in voice.stream_audio(clause.text, speed, speaker):
            yield TimedChunk(samples, ())
        return
    for item in voice.stream_audio(clause.text, speed, speaker, timings=True):
        words = tuple(
            replace(w, char_start=w.char_start + clause.char_start, char_end=w.char_end + clause.char_start,
                    start_s=w.start_s + before_s, end_s=w.end_s + before_s)
            for w in item.words
        )
        yield TimedChunk(item.chunk, words)


async def clauses_of(fragments: AsyncIterable[str], send: anyio.abc.ObjectSendStream, flush_after_s: float) -> None:
    """Send each clause of ``fragments`` to ``send`` as soon as it is complete (see the module); close it at the end.

    The fragments are read by a task of their own into a memory stream, so
    waiting ``flush_after_s`` for the next one never cancels the iterable itself.
    """
    buffer = ClauseBuffer()
    send_fragment, receive_fragment = anyio.create_memory_object_stream[str](math.inf)

    async def read() -> None:
        async with send_fragment:
            async for fragment in fragments:
                if not isinstance(fragment, str):
                    raise TypeError(f"text fragments must be str, got {type(fragment).__name__}")
                await send_fragment.send(fragment)

    async with send, receive_fragment, anyio.create_task_group() as group:
        group.start_soon(read)
        while True:
            fragment = None
            with anyio.move_on_after(flush_after_s if buffer.pending.strip() else math.inf):
                try:
                    fragment = await receive_fragment.receive()
                except anyio.EndOfStream:
                    break
            for clause in buffer.feed(fragment) if fragment is not None else [buffer.flush()]:
                if clause is not None:
                    await send.send(clause)
        clause = buffer.flush()
        if clause is not None:
            await send.send(clause)


async def stream_text(
    voice: "Voice",
    fragments: AsyncIterable[str],
    speed: float = 1.0,
    speaker=None,
    timings: bool = False,
    flush_after_s: float = FLUSH_AFTER_S,
) -> AsyncIterator[TimedChunk]:
    """Audio chunks of the text ``fragments`` make, clause by clause, as soon as each clause is complete.

    Each item is a :class:`~ttsstack.runtime.timings.TimedChunk`: float32
    samples and, with ``timings``, the words timed (characters of the
    whole text, seconds of the whole audio). Iterate it to the end, or close
    it (``contextlib.aclosing``) when stopping early.
    """
    send, receive = anyio.create_memory_object_stream[Clause](math.inf)
    async with anyio.create_task_group() as group:
        group.start_soon(clauses_of, fragments, send, flush_after_s)
        samples = 0
        async with receive:
            async for clause in receive:
                chunks = speak_clause(voice, clause, speed, speaker, timings, samples / voice.sample_rate)
                while (item := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
                    samples += len(item.chunk)
                    yield item

