"""Batching across streams: the calls concurrent streams make to one network, run as one call.

Every stream of a :class:`~ttsstack.runtime.Voice` runs in its own thread
and calls a network's runner with batch-1 inputs. For a network declared
``batch: true`` (its program takes any batch along axis 0),
:class:`BatchingRunner` stands in front of the runner: a call queues, and
the first thread to find the network idle runs the queued calls as one batch
and hands each caller its own rows. N streams decoding at once then cost
about one call of N rows instead of N calls; an autoregressive step
network's weights are read once for all of them.

Calls join one batch when their inputs agree in every size but the
network's sequence dim, the one its ``mask``/``lengths`` input covers, and
their lengths along it are close enough that padding wastes little
(:data:`PADDING_BUDGET`). Along that dim shorter calls are padded with zeros
(mask 0) and their outputs cropped back, exactly as static backends pad to
a bucket. A network with neither input is batched only across calls of
equal shapes.

No call waits for company it has no reason to expect: a thread that finds
the network idle runs at once, unless more streams (threads) called it
during the last two batches than are queued now; then it waits up to
``wait_s`` for them, so streams that would otherwise take turns (each
calling while the other does its own work between calls) come together. A batch that fails is rerun
call by call, so one bad input fails only its own stream.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Mapping

import torch

from ..addon import NetworkSpec
from .network import NetworkRunner, crop_steps, pad_steps, sequence_dim, time_axis



PADDING_BUDGET = 1.5
"""Most steps a batch may run per real step: a call joins a batch only while its rows, padded to the longest,
stay within this of their real steps (at most a third of the work is padding). Streams at different points of the chunk schedule make windows of 8
and 256 frames; padded into one batch, the short one would cost as much as the long one. Not applied to a
step network (one with ``states``): its cost is its weights, read once per call, and the padded dim is its
memory's, which costs little."""


def padded_dim(spec: NetworkSpec) -> str | None:
    """The dim along which calls of different lengths may share a batch: the sequence dim of a network with a
    ``mask`` or ``lengths`` input (which tells it where each row ends), else None."""
    return sequence_dim(spec) if (spec.mask or spec.lengths) else None


def _dim_axes(spec: NetworkSpec, dim: str | None) -> dict[str, int]:
    """Input name -> its axis along ``dim``, for the inputs that have one."""
    if dim is None:
        return {}
    return {name: axis for name, t in spec.inputs.items() for axis, d in t.named_dims if d == dim}


def call_key(inputs: Mapping[str, torch.Tensor], axes: Mapping[str, int]) -> tuple:
    """What calls must share to run in one batch: every input's dtype and sizes, except along the padded axes."""
    return tuple(
        (name, tensor.dtype, tuple(-1 if axis == axes.get(name) else size for axis, size in enumerate(tensor.shape) if axis))
        for name, tensor in inputs.items()
    )


def _length(inputs: Mapping[str, torch.Tensor], axes: Mapping[str, int]) -> int:
    """A call's steps along the padded dim (1 for a network without one)."""
    name = next(iter(axes), None)
    return inputs[name].shape[axes[name]] if name in inputs else 1


def join_calls(spec: NetworkSpec, calls: list[Mapping[str, torch.Tensor]], rows: int | None = None) -> tuple[dict[str, torch.Tensor], list[int]]:
    """The inputs of ``calls`` (batch 1 each) as one batch, and each call's length along the padded dim.

    Inputs along :func:`padded_dim` are zero-padded to the longest call
    (a zero mask marks the padding). ``rows`` (at least ``len(calls)``) fills
    the batch up to a size a static artifact takes, repeating the first call.
    """
    axes = _dim_axes(spec, padded_dim(spec))
    lengths = [_length(call, axes) for call in calls]
    longest = max(lengths)
    filler = [calls[0]] * ((rows or len(calls)) - len(calls))
    joined = {}
    for name in spec.inputs:
        axis = axes.get(name)
        parts = [call[name] if axis is None else pad_steps(call[name], axis, longest) for call in calls + filler]
        joined[name] = torch.cat(parts, dim=0)
    return joined, lengths


def split_outputs(spec: NetworkSpec, outputs: Mapping[str, torch.Tensor], lengths: list[int]) -> list[dict[str, torch.Tensor]]:
    """Each call's outputs from a batched run: its row, cropped back to its length along the padded dim."""
    dim = padded_dim(spec)
    longest = max(lengths)
    axes = {name: time_axis(tensor, dim) for name, tensor in spec.outputs.items()}
    result = []
    for row, length in enumerate(lengths):
        own = {}
        for name, tensor in outputs.items():
            part = tensor[row : row + 1]
            if axes[name] is not None and length != longest:
                part = crop_steps(part, axes[name], longest, 0, length).contiguous()
            own[name] = part
        result.append(own)
    return result


@dataclass(eq=False)
class _Call:
    """One caller's inputs, its batching key, and what came back."""

    inputs: Mapping[str, torch.Tensor]
    key: tuple
    length: int  # steps along the padded dim (1 without one)
    thread: int
    outputs: dict[str, torch.Tensor] | None = None
    error: BaseException | None = None
    done: bool = False


class BatchingRunner:
    """A runner that runs the concurrent calls of several threads as one batched call (see the module text).

    ``max_batch`` caps the rows of one call; a runner with ``batch_sizes``
    (a static backend's compiled batch buckets) gets batches filled up to the
    smallest of them that holds the calls, and no more rows than its largest.
    ``batches`` counts the calls run at each batch size.
    """

    def __init__(self, runner: NetworkRunner, max_batch: int, wait_s: float):
        self.runner = runner
        self.spec = runner.spec
        self.static_lengths = runner.static_lengths
        self.batch_sizes: list[int] | None = getattr(runner, "batch_sizes", None)
        self.max_batch = min(max_batch, self.batch_sizes[-1]) if self.batch_sizes else max_batch
        self.wait_s = wait_s
        self.batches: Counter[int] = Counter()
        self._axes = _dim_axes(self.spec, padded_dim(self.spec))
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._busy = False
        self._recent: deque[set[int]] = deque(maxlen=2)  # threads that called during each of the last two batches

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        call = _Call(inputs, call_key(inputs, self._axes), _length(inputs, self._axes), threading.get_ident())
        with self._cond:
            self._queue.append(call)
            self._cond.notify_all()
            while not call.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                try:
                    batch = self._take()
                    self._cond.release()
                    try:
                        self._run(batch)
                    finally:
                        self._cond.acquire()
                    self._recent.append({c.thread for c in batch} | {c.thread for c in self._queue})
                finally:
                    self._busy = False
                    self._cond.notify_all()
        if call.error is not None:
            raise call.error
        return call.outputs

    def _take(self) -> list[_Call]:
        """The next batch (lock held): wait briefly for the streams that called during the last two batches,
        then take the first queued call and every queued call that can join it, up to ``max_batch``."""
        expected = min(len(set().union(*self._recent)), self.max_batch)
        deadline = time.monotonic() + self.wait_s
        while len(self._queue) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        first = self._queue[0]
        batch, padded, real = [first], first.length, first.length
        for call in self._queue[1:]:
            if len(batch) == self.max_batch:
                break
            longest = max(padded, call.length)
            fits = self.spec.states or longest * (len(batch) + 1) <= PADDING_BUDGET * (real + call.length)
            if call.key == first.key and fits:
                batch.append(call)
                padded, real = longest, real + call.length
        self._queue = [call for call in self._queue if call not in batch]
        return batch

    def _run(self, batch: list[_Call]) -> None:
        """Run ``batch`` as one call (lock released); a failing batch is rerun call by call."""
        try:
            if len(batch) == 1 and not self.batch_sizes:
                results = [self.runner(dict(batch[0].inputs))]
            else:
                rows = next((size for size in self.batch_sizes or [] if size >= len(batch)), None)
                joined, lengths = join_calls(self.spec, [call.inputs for call in batch], rows)
                results = split_outputs(self.spec, self.runner(joined), lengths)
            self.batches[len(batch)] += 1
        except Exception as exc:
            if len(batch) > 1:
                for call in batch:
                    self._run([call])
                return
            results = [exc]
        for call, result in zip(batch, results):
            if isinstance(result, BaseException):
                call.error = result
            else:
                call.outputs = result
            call.done = True


def batching_runners(
    runners: Mapping[str, NetworkRunner], max_batch: int, addon_max: int, wait_s: float
) -> dict[str, NetworkRunner]:
    """``runners`` with every ``batch: true`` network's behind a :class:`BatchingRunner` (unchanged when ``max_batch`` is 1).

    A batch holds at most ``max_batch`` calls and the addon's ``batch.max``
    (``addon_max``). A static runner compiled for batch 1 only (its
    ``batch_sizes`` are ``[1]``) stays as it is: it has no batch to fill.
    """
    size = min(max_batch, addon_max)
    if size <= 1:
        return dict(runners)

    def batches(runner: NetworkRunner) -> bool:
        return runner.spec.batch and (getattr(runner, "batch_sizes", None) or [size])[-1] > 1

    return {name: BatchingRunner(runner, size, wait_s) if batches(runner) else runner for name, runner in runners.items()}
