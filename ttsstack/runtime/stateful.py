"""Streaming a vocoder through its stateful twin: each frame chunk once, no window recomputed.

``ttsstack compile`` derives the twin of a convolutional vocoder
(:mod:`ttsstack.compiler.stateful`): called on consecutive chunks with its
states carried over, it returns each chunk's samples ``delay`` samples late,
and exactly a whole run's. :func:`stream_stateful` drives it: it feeds the
incoming frames in the voice's chunk schedule, drops the first ``delay``
samples, and at the end feeds enough masked frames past the end for the last
``delay`` samples to come out.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import torch

from ..addon import NetworkSpec
from .noise import with_noise_inputs

OPEN_END = 1 << 40
"""The twin's ``end`` input while the sequence goes on: past any step a call can reach."""


def stream_stateful(
    runner,
    spec: NetworkSpec,
    frames_name: str,
    upstream: Iterator[torch.Tensor],
    extra: Mapping[str, torch.Tensor],
    sizes: Iterator[int],
    largest: int,
) -> Iterator[torch.Tensor]:
    """The twin's output for the frames of ``upstream`` (``[1, n, C]`` chunks), cropped to a whole run's samples.

    The frames go in as chunks of ``sizes`` frames (the voice's chunk
    schedule, whose first chunk covers the delay: a piece that arrives whole
    still becomes audio a small chunk at a time), each once it has arrived,
    none over ``largest`` (the frames dim's max); the rest at the end.
    ``extra`` are its other inputs (a speaker embedding).
    """
    stateful = spec.stateful
    output = stateful.output
    axis = next(a for a, d in spec.outputs[output].named_dims)
    states = {name: torch.full([int(s) for s in spec.inputs[name].shape], state.init, dtype=spec.inputs[name].torch_dtype)
              for name, state in spec.states.items()}
    start = 0
    to_drop = stateful.delay
    yielded = 0
    rate = None

    def call(frames: torch.Tensor, real: bool, end: int) -> torch.Tensor:
        nonlocal start, rate
        count = frames.shape[1]
        inputs = {frames_name: frames, **extra, stateful.start: torch.tensor([start]), stateful.end: torch.tensor([end])}
        if spec.mask is not None:
            inputs[spec.mask] = torch.full((1, count), 1.0 if real else 0.0, dtype=spec.inputs[spec.mask].torch_dtype)
        if spec.lengths is not None:  # the sequence's length, or as long as the lengths' dtype can say
            dtype = spec.inputs[spec.lengths].torch_dtype
            longest = torch.iinfo(dtype).max if not dtype.is_floating_point else end
            inputs[spec.lengths] = torch.tensor([min(end, longest)], dtype=dtype)
        with_noise_inputs(spec, inputs, start, count)
        results = runner({**inputs, **states})
        for name, state in spec.states.items():
            states[name] = results[state.output]
        start += count
        out = results[output]
        rate = out.shape[axis] // count
        return out

    def cropped(out: torch.Tensor, keep: int | None = None) -> torch.Tensor:
        nonlocal to_drop, yielded
        skip = min(to_drop, out.shape[axis])
        to_drop -= skip
        length = out.shape[axis] - skip if keep is None else min(keep, out.shape[axis] - skip)
        yielded += length
        return out.narrow(axis, skip, length)

    buffer: torch.Tensor | None = None
    size = min(next(sizes), largest)
    for piece in upstream:
        buffer = piece if buffer is None else torch.cat([buffer, piece], dim=1)
        while buffer.shape[1] >= size:
            out = cropped(call(buffer[:, :size], True, OPEN_END))
            buffer = buffer[:, size:]
            size = min(next(sizes), largest)
            if out.shape[axis]:
                yield out
    if buffer is None:
        return
    for first in range(0, buffer.shape[1], largest):
        out = cropped(call(buffer[:, first:first + largest], True, OPEN_END))
        if out.shape[axis]:
            yield out
    if stateful.delay:  # the last samples come out of frames past the end, masked
        flush = -(-stateful.delay // rate)
        total = start
        out = cropped(call(buffer.new_zeros(1, flush, buffer.shape[2]), False, total), keep=rate * total - yielded)
        if out.shape[axis]:
            yield out
