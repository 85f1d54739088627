"""Block variants for static-shape backends: pad to a bucket, fill the mask, crop the padding away.

A static artifact accepts only its bucket's sizes along the network's sequence
dim. :func:`run_in_buckets` runs a network on inputs of any length anyway:

- a piece that fits the largest bucket is padded at the end to the smallest
  bucket that holds it, with the network's ``mask``/``lengths`` input telling
  it which steps are real;
- a longer piece of a bounded-context network runs on overlapping windows of
  the largest bucket (``context`` steps of overlap each side, the last window
  padded), through :func:`~ttsstack.runtime.blocks.windows.stream_windows`,
  and the cropped windows are joined;
- a longer piece of an unbounded network raises :class:`BucketOverflow` (a
  :class:`~ttsstack.runtime.blocks.base.PieceTooLong`) before anything of the
  piece is yielded: the Voice splits text so that this never happens for
  encoders (see ``Voice.max_tokens``), and splits a piece's tokens at word
  boundaries when its frames overflow a frame-level network.

An autoregressive decoder pads its per-utterance inputs (the encoder memory
and the like) once, with :func:`pad_to_bucket`, and then runs every step on
that bucket's artifact, its states sized to the bucket.

Outputs on real steps equal an unpadded run because the network ignores
padded steps through its mask; static backends refuse at compile time any
network whose outputs padding could change (see ``StaticBackend.buckets``).
"""

from __future__ import annotations

import bisect
from itertools import repeat
from typing import Iterator

import torch

from ..runtime.blocks.autoregressive import AutoregressiveDecoder
from ..runtime.blocks.base import PieceTooLong, Tensors
from ..runtime.blocks.decoder import Decoder, Postnet
from ..runtime.blocks.encoders import NetworkBlock
from ..runtime.blocks.windows import stream_windows
from ..runtime.blocks.vocoder import Vocoder
from ..runtime.network import (
    NetworkRunner, cropped_outputs, pad_steps, padded_window, sequence_dim, step_length, time_axis, with_length_inputs,
)
from .base import BackendError


class BucketOverflow(BackendError, PieceTooLong):
    """A piece longer than the largest bucket of a network with unbounded context (the Voice splits the text)."""


def smallest_bucket(sizes: list[int], length: int) -> int:
    """The smallest of the sorted ``sizes`` holding ``length`` steps (``length`` must fit the largest)."""
    return sizes[bisect.bisect_left(sizes, length)]


def _sizes(runner: NetworkRunner) -> tuple[str | None, list[int] | None]:
    """The runner's sequence dim and the bucket sizes it accepts along it (None: any size)."""
    dim = sequence_dim(runner.spec)
    return dim, ((runner.static_lengths or {}).get(dim) if dim else None)


def pad_to_bucket(runner: NetworkRunner, inputs: dict[str, torch.Tensor], label: str) -> dict[str, torch.Tensor]:
    """The data ``inputs`` padded to the smallest bucket that holds them, with the ``mask``/``lengths`` inputs set.

    For a network run on the whole piece at once. Raises when the piece
    exceeds the largest bucket. ``label`` names the block in errors.
    """
    spec = runner.spec
    dim, sizes = _sizes(runner)
    total = step_length(spec, inputs)
    if not sizes:
        return with_length_inputs(spec, dict(inputs), total, total)
    if total > sizes[-1]:
        raise BucketOverflow(
            f"{label}: {total} steps along {dim} exceed the largest bucket ({sizes[-1]}) and the network has "
            f"unbounded context, so it cannot run on windows; add a larger {dim} bucket",
            total,
            sizes[-1],
        )
    return padded_window(spec, inputs, dim, smallest_bucket(sizes, total), 0, total)


def run_in_buckets(runner: NetworkRunner, inputs: dict[str, torch.Tensor], label: str) -> dict[str, torch.Tensor]:
    """Run ``runner`` on the data ``inputs`` of any length, padding to its static buckets.

    Returns the outputs an unpadded run gives. ``label`` names the block in errors.
    """
    spec = runner.spec
    dim, sizes = _sizes(runner)
    total = step_length(spec, inputs)
    if not sizes or total <= sizes[-1] or not spec.bounded:
        padded = pad_to_bucket(runner, inputs, label)
        return cropped_outputs(spec, dim, runner(padded), step_length(spec, padded), 0, total)
    positions = torch.arange(total).unsqueeze(0)

    def window(span: torch.Tensor, left: int, count: int) -> dict[str, torch.Tensor]:
        start, stop = int(span[0, 0]), int(span[0, -1]) + 1
        size = smallest_bucket(sizes, stop - start)
        return cropped_outputs(spec, dim, runner(padded_window(spec, inputs, dim, size, start, stop - start)), size, left, count)

    step = sizes[-1] - 2 * spec.context
    pieces = list(stream_windows(iter([positions]), window, spec.context, repeat(step)))
    return {name: torch.cat([p[name] for p in pieces], dim=time_axis(spec.outputs[name], dim)) for name in pieces[0]}


def pad_caches(runner: NetworkRunner, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``cache`` states and ``cache_mask`` among ``inputs`` padded with empty slots to the compiled capacity."""
    spec = runner.spec
    padded = dict(inputs)
    for name, state in spec.states.items():
        if state.cache and name in inputs:
            capacity = (runner.static_lengths or {})[state.cache][-1]
            padded[name] = pad_steps(inputs[name], spec.inputs[name].shape.index(state.cache), capacity)
            if spec.cache_mask in inputs:
                padded[spec.cache_mask] = pad_steps(inputs[spec.cache_mask], 1, capacity)
    return padded


class StaticNetworkBlock(NetworkBlock):
    """``Network`` on a static-shape backend: whole inputs padded to buckets or windowed (:func:`run_in_buckets`).

    A step network's ``cache`` states get empty slots up to the compiled capacity (:func:`pad_caches`).
    """

    def call(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return run_in_buckets(self.runner, pad_caches(self.runner, inputs), self.label)


def fit_chunk(requested: int, sizes: list[int], edges: int) -> int:
    """The largest chunk, at most ``requested``, whose window (chunk plus ``edges`` context steps) fills a bucket.

    ``requested`` itself when no bucket is small enough: that window is padded.
    """
    fitting = [size - edges for size in sizes if 0 < size - edges <= requested]
    return fitting[-1] if fitting else requested


class StaticDecoder(Decoder):
    """``Decoder`` on a static-shape backend: each frame window padded to a bucket, or split into bucket-sized ones.

    Chunks shrink to fill buckets: with frame buckets 64, 128, 256 and context
    8, a requested 128-frame chunk (a 144-frame window, padded to 256: 44% of
    the call wasted) becomes 112 frames in a full 128 bucket. The first chunk
    has no left context, so its window is the chunk plus one context; it is
    only shrunk, never grown, so the first audio never waits for more frames.
    """

    def chunk_schedule(self, prior: int = 0) -> Iterator[int]:
        schedule, sizes = super().chunk_schedule(prior), _sizes(self.runner)[1]
        if not sizes:
            return schedule
        context = self.spec.context
        return (fit_chunk(size, sizes, context if i == 0 else 2 * context) for i, size in enumerate(schedule))

    def call_window(self, inputs: dict[str, torch.Tensor], length: int) -> torch.Tensor:
        return run_in_buckets(self.runner, inputs, f"{self.label} network '{self.network}'")[self.output_name]

    def most_steps(self) -> int:
        sizes = _sizes(self.runner)[1]
        return min(self.max_window, sizes[-1]) if sizes else self.max_window


class StaticPostnet(StaticDecoder, Postnet):
    """``Postnet`` on a static-shape backend: the :class:`StaticDecoder` windows, the ``postnet`` network role."""


class StaticVocoder(StaticDecoder, Vocoder):
    """``Vocoder`` on a static-shape backend: the :class:`StaticDecoder` windows, samples cropped per frame.

    Its network must declare a ``mask`` (compiling refuses it otherwise): the
    last window of a stream is padded to a bucket, and only a mask keeps the
    padded frames out of the last real samples (see the README's vocoder section).
    """


class StaticAutoregressiveDecoder(AutoregressiveDecoder):
    """``AutoregressiveDecoder`` on a static-shape backend: its per-utterance inputs padded to one bucket.

    The memory and every other input along the step network's sequence dim
    are padded once, to the smallest bucket that holds them
    (:func:`pad_to_bucket`); the ``mask``/``lengths`` inputs make the attention
    ignore the padding, the states along that dim are sized to the bucket, and
    binding the padded inputs picks the bucket's artifact for every step.
    Frames equal an unpadded run's when the network keeps padded steps out of
    its outputs through the mask (the demo's attention gives them zero weight).
    ``cache`` states always have the compiled capacity (the fixed-size cache
    a static artifact needs; empty slots are masked out by ``cache_mask``).
    """

    def cache_capacity(self, steps: int) -> int:
        return self.runner.static_lengths[self.cache_dim][-1]

    def prepare(self, tensors: Tensors) -> dict[str, torch.Tensor]:
        inputs = {name: tensors[name] for name in self.data_inputs}
        return pad_to_bucket(self.runner, inputs, f"{self.label} network '{self.network}'")
