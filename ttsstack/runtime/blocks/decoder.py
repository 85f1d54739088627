"""The decoder: runs a frame-level network over a stream with exact overlap."""

from __future__ import annotations

from typing import Iterator

import torch

from ..network import crop_steps, time_axis, with_length_inputs
from ..noise import with_noise_inputs
from ..registry import BLOCKS
from .base import (
    BlockConfig,
    PieceTooLong,
    StackError,
    Stream,
    StreamableBlock,
    TensorInfo,
    Tensors,
    Wiring,
    require_upstream,
    single_network,
)
from .windows import Window, chunk_sizes, prior_frames, run_whole, stream_windows


@BLOCKS.register("Decoder")
class Decoder(StreamableBlock):
    """Runs a frame-level network (default: the one with role ``decoder``) on a stream.

    Consumes the ``frames`` stream and produces the network's ``mel`` output
    as a stream. With a bounded ``context`` the network runs on windows with
    that many frames of overlap each side and the results are cropped, so the
    streamed output equals a whole-utterance run; ``context: unbounded`` runs
    once on the whole piece. Other inputs of the network are read from the
    utterance tensors; its ``noise`` inputs are drawn for each window's frames
    by their index in the stream, so windows see a whole run's noise.
    """

    role = "decoder"

    class Config(BlockConfig):
        network: str | None = None
        frames: str = "frames"
        mel: str = "mel"

    def __init__(self, config, ctx, path):
        super().__init__(config, ctx, path)
        name = config.network or single_network(ctx, self.role, path)
        self.runner = ctx.runner(name, f"{path}.network")
        self.spec = self.runner.spec
        self.network = name
        self.options = ctx.options
        self.frames_name, self.output_name = self.stream_tensors(config, path)
        self.extra_inputs = [n for n in self.spec.data_inputs if n != self.frames_name]
        named = self.spec.inputs[self.frames_name].named_dims
        self.max_window = ctx.spec.dims[named[0][1]].max if named else 1 << 31
        self.output_axis = time_axis(self.spec.outputs[self.output_name], named[0][1] if named else None)
        if self.output_axis is None:
            raise StackError(f"{path}: output '{self.output_name}' of network '{name}' has no time axis to stream along")
        if self.spec.bounded and self.max_window <= 2 * self.spec.context:
            raise StackError(f"{path}: dim max {self.max_window} leaves no room for context {self.spec.context} on each side")

    def stream_tensors(self, config, path: str) -> tuple[str, str]:
        """The network's input that the stream feeds and its output that is streamed on: ``frames:`` and ``mel:``."""
        for tensor, where in ((config.frames, self.spec.inputs), (config.mel, self.spec.outputs)):
            if tensor not in where:
                raise StackError(
                    f"{path}: network '{self.network}' has no tensor '{tensor}'; it has {', '.join(where)} "
                    f"(rename with frames:/mel: in the stack entry)"
                )
        return config.frames, config.mel

    def describe(self) -> str:
        return f"{self.config.type} {self.network} [context {self.spec.context}]"

    def check(self, wiring: Wiring, upstream: str | None) -> str:
        require_upstream(self, upstream, self.frames_name)
        wiring.read(self.label, self.frames_name, rank=3, dtype=self.spec.inputs[self.frames_name].dtype)
        for name in self.extra_inputs:
            t = self.spec.inputs[name]
            wiring.read(self.label, name, rank=len(t.shape), dtype=t.dtype)
        wiring.write(self.label, self.output_name, TensorInfo.of(self.spec.outputs[self.output_name], self.label))
        return self.output_name

    def stream(self, tensors: Tensors, upstream: Stream | None) -> Stream:
        extra = {n: tensors[n] for n in self.extra_inputs}
        emitted = 0  # frames output before this window's: it starts `left` frames earlier

        def run(window: torch.Tensor, left: int, count: int) -> torch.Tensor:
            nonlocal emitted
            inputs = with_noise_inputs(self.spec, {self.frames_name: window, **extra}, emitted - left, window.shape[1])
            emitted += count
            out = self.call_window(inputs, window.shape[1])
            return crop_steps(out, self.output_axis, window.shape[1], left, count)

        if self.spec.bounded:
            return stream_windows(upstream, run, self.spec.context, self.chunk_schedule(prior_frames(tensors)))

        def run_at_most_max(whole: torch.Tensor, left: int, count: int) -> torch.Tensor:
            if whole.shape[1] > self.max_window:
                raise PieceTooLong(
                    f"{self.label} network '{self.network}': {whole.shape[1]} frames exceed the dim's max "
                    f"({self.max_window}) and the network has unbounded context",
                    whole.shape[1],
                    self.max_window,
                )
            return run(whole, left, count)

        return self.run_unbounded(upstream, run_at_most_max)

    def run_unbounded(self, upstream: Stream, run: Window) -> Stream:
        """How a network with unbounded context runs over ``upstream``: once, on the whole piece."""
        return run_whole(upstream, run)

    def most_steps(self) -> int:
        """The most frames one call of the network takes: its dim's max (static backends: also their largest bucket)."""
        return self.max_window

    @property
    def lookahead(self) -> int:
        """A bounded network's context (it emits a chunk once that many frames past it arrived); 0 when unbounded."""
        return self.spec.context if self.spec.bounded else 0

    def chunk_schedule(self, prior: int = 0) -> Iterator[int]:
        """Frames per output chunk: the options' :func:`chunk_sizes` led by the downstream lookahead (going on from
        ``prior`` frames of the utterance's earlier pieces), capped so a window fits the dim."""
        largest = self.max_window - 2 * self.spec.context
        sizes = chunk_sizes(self.options.first_chunk_frames, self.options.chunk_frames, self.downstream, prior)
        return (min(size, largest) for size in sizes)

    def call_window(self, inputs: dict[str, torch.Tensor], length: int) -> torch.Tensor:
        """Run the network on one window of ``length`` frames; return its stream output (static backends pad here)."""
        return self.runner(with_length_inputs(self.spec, inputs, length, length))[self.output_name]


@BLOCKS.register("Postnet")
class Postnet(Decoder):
    """A :class:`Decoder` whose network defaults to the one with role ``postnet``.

    It refines the frames an earlier block streams (``frames`` in, ``mel``
    out), e.g. after an ``AutoregressiveDecoder``; with a bounded ``context``
    the overlapped windows make the streamed result equal the whole-utterance one.
    """

    role = "postnet"
