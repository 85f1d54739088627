"""Exact streaming of a bounded-context network over a stream of chunks.

A network whose output at step t depends only on inputs within t ± context can
be run on a window holding ``context`` extra steps on each side of the steps
wanted; cropping the extra away leaves exactly what a whole-sequence run gives.
:func:`stream_windows` does that over an incoming stream with a small buffer,
emitting each output chunk as soon as its right context has arrived.
"""

from __future__ import annotations

from typing import Callable, Iterator, TypeVar

import torch

Out = TypeVar("Out")
Window = Callable[[torch.Tensor, int, int], Out]


PRIOR_FRAMES = "ttsstack.prior_frames"
"""Key, in a piece's stream tensors, of the frames its utterance streamed before it (an ``int``; absent: 0)."""


def prior_frames(tensors) -> int:
    """The frames the utterance streamed before this piece (:data:`PRIOR_FRAMES`), 0 for its first."""
    return int(tensors.get(PRIOR_FRAMES, 0))


def chunk_sizes(first: int, rest: int, lead: int = 0, prior: int = 0) -> Iterator[int]:
    """The chunk schedule: ``first`` (fast first audio), then doubling up to ``rest``: 8, 16, 32, ..., 256, 256, ...

    ``lead`` frames are added to the first chunk only: the lookahead of the
    blocks after this one (a postnet's context, the vocoder's), so every
    chunk ends ``lead`` frames past the grid's and the blocks after it can
    each emit their own chunk at once instead of waiting for the next one,
    which matters where every frame costs a decoder step.

    ``prior`` is the frames the utterance already streamed before this piece
    (a later sentence): its first chunk is then up to that many (at most
    ``rest``) instead of ``first``. The schedule goes on across sentences
    rather than starting small again, where each window's context costs most;
    a chunk is still never longer than the audio made before it, so playback
    that keeps up with the first sentence keeps up with the next.
    """
    size = max(first, min(rest, prior))
    yield size + lead
    while True:
        size = min(2 * size, rest)
        yield size


def stream_windows(
    upstream: Iterator[torch.Tensor], run: Window[Out], context: int, sizes: Iterator[int], axis: int = 1
) -> Iterator[Out]:
    """Yield ``run`` applied to overlapping windows of ``upstream``, cropped to the new steps.

    ``run(window, left, count)`` gets a window along ``axis`` and returns the
    output steps ``[left, left + count)`` of that window (``left`` real context
    steps precede them; the rest of the window is right context). Output
    chunks follow ``sizes``; the last may be shorter.
    """
    pending: list[torch.Tensor] = []
    buffer: torch.Tensor | None = None
    start = 0  # absolute index of buffer[0]
    emitted = 0
    available = 0
    size = next(sizes)

    def emit(count: int, end: int) -> torch.Tensor:
        nonlocal buffer, start, emitted
        lo = max(0, emitted - context)
        hi = min(end, emitted + count + context)
        window = buffer.narrow(axis, lo - start, hi - lo)
        out = run(window, emitted - lo, count)
        emitted += count
        keep_from = max(0, emitted - context)
        buffer = buffer.narrow(axis, keep_from - start, buffer.shape[axis] - (keep_from - start))
        start = keep_from
        return out

    for piece in upstream:
        pending.append(piece)
        available += piece.shape[axis]
        while available - emitted >= size + context:
            if pending:
                buffer = torch.cat(([buffer] if buffer is not None else []) + pending, dim=axis)
                pending = []
            yield emit(size, available)
            size = next(sizes)
    if available > emitted:
        if pending:
            buffer = torch.cat(([buffer] if buffer is not None else []) + pending, dim=axis)
        while emitted < available:
            yield emit(min(size, available - emitted), available)
            size = next(sizes)


def run_whole(upstream: Iterator[torch.Tensor], run: Window, axis: int = 1) -> Iterator[torch.Tensor]:
    """For unbounded context: gather the whole piece, run once, yield one chunk."""
    pieces = list(upstream)
    if pieces:
        whole = torch.cat(pieces, dim=axis)
        yield run(whole, 0, whole.shape[axis])
