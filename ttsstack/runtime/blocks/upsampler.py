"""The length regulator: repeat each token's vector by its duration, in chunks on demand."""

from __future__ import annotations

import torch

from ..alignment import ALIGNMENT
from ..registry import BLOCKS
from .base import BlockConfig, Stream, StreamableBlock, TensorInfo, Tensors, Wiring
from .windows import chunk_sizes, prior_frames


@BLOCKS.register("Upsampler")
class Upsampler(StreamableBlock):
    """Repeats ``encoded`` ``[1, T_text, C]`` by ``durations`` ``[1, T_text]`` into a ``frames`` stream.

    Each token is repeated ``round(duration / speed)`` times (negative
    durations count as 0), where ``speed`` is the per-call speaking rate
    (``Voice.stream(text, speed=...)``; set ``speed: null`` in the stack entry
    when a network applies it itself). Frames are produced lazily, one chunk
    at a time, so a long utterance never exists as one ``[1, T_frames, C]`` tensor.
    """

    class Config(BlockConfig):
        encoded: str = "encoded"
        durations: str = "durations"
        speed: str | None = "speed"
        frames: str = "frames"

    def __init__(self, config, ctx, path):
        super().__init__(config, ctx, path)
        self.options = ctx.options

    def records_alignment(self) -> bool:
        """Always: the durations say which token each frame repeats."""
        return True

    def check(self, wiring: Wiring, upstream: str | None) -> str:
        encoded = wiring.read(self.label, self.config.encoded, rank=3)
        wiring.read(self.label, self.config.durations, rank=2)
        if self.config.speed is not None:
            wiring.read(self.label, self.config.speed, rank=1)
        wiring.write(self.label, self.config.frames, TensorInfo(3, encoded.dtype, self.label, encoded.channels))
        return self.config.frames

    def stream(self, tensors: Tensors, upstream: Stream | None) -> Stream:
        encoded = tensors[self.config.encoded]
        durations = tensors[self.config.durations]
        if self.config.speed is not None:
            durations = durations / tensors[self.config.speed]
        repeats = repeats_of(durations)
        alignment = tensors.get(ALIGNMENT)
        if alignment is not None:
            alignment.durations(repeats)
        ends = torch.cumsum(repeats, dim=0)
        total = int(ends[-1]) if len(ends) else 0
        sizes = chunk_sizes(self.options.first_chunk_frames, self.options.chunk_frames, self.downstream, prior_frames(tensors))
        start = 0
        while start < total:
            stop = min(total, start + next(sizes))
            token_index = torch.searchsorted(ends, torch.arange(start, stop), right=True)
            yield encoded.index_select(1, token_index)
            start = stop


def repeats_of(durations: torch.Tensor) -> torch.Tensor:
    """Frames per token: ``round(duration)``, negatives as 0, as int64 ``[T_text]``."""
    return durations.reshape(-1).round().clamp(min=0).to(torch.int64)
