"""Composite blocks: a container of sequence blocks, a chain of streams, and a pipeline of both."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field

from ..registry import BLOCKS
from .base import (
    BlockConfig,
    SequenceBlock,
    StackError,
    Stream,
    StreamableBlock,
    Tensors,
    Wiring,
)


@BLOCKS.register("SequenceBlockContainer")
class SequenceBlockContainer(SequenceBlock):
    """Nested sequence blocks run in dependency order (by the tensor names they read and write).

    The order is fixed at check time: a block runs once everything it reads
    exists. Subclasses fill ``self.blocks`` differently (``Encoders`` from the
    addon's networks); this base takes them from ``blocks:`` in the config.
    """

    class Config(BlockConfig):
        blocks: list[dict[str, Any]] = Field(default_factory=list)

    def __init__(self, config, ctx, path):
        super().__init__(config, ctx, path)
        self.blocks: list[SequenceBlock] = [self._sequence(b) for b in self.build_children(config, ctx, path)]
        self.levels: list[list[SequenceBlock]] = []

    def build_children(self, config, ctx, path: str) -> list:
        """The nested blocks: here from ``blocks:`` in the config; subclasses fill them otherwise."""
        return [ctx.build(raw, f"{path}.blocks[{i}]") for i, raw in enumerate(config.blocks)]

    @staticmethod
    def _sequence(block) -> SequenceBlock:
        if not isinstance(block, SequenceBlock):
            raise StackError(f"{block.label}: a sequence block container holds sequence blocks only")
        return block

    def children(self):
        return list(self.blocks)

    def check(self, wiring: Wiring) -> None:
        """Order the children into levels; each level reads only what earlier levels wrote."""
        pending = list(self.blocks)
        self.levels = []
        while pending:
            ready = [b for b in pending if all(n in wiring.tensors for n in b.reads())]
            if not ready:
                blocked = pending[0]
                missing = next(n for n in blocked.reads() if n not in wiring.tensors)
                raise StackError(
                    f"{blocked.label}: reads tensor '{missing}', which nobody writes; "
                    f"written before it: {', '.join(sorted(wiring.tensors))}"
                )
            for block in ready:
                block.check(wiring)
            self.levels.append(ready)
            pending = [b for b in pending if b not in ready]

    def reads(self) -> list[str]:
        """Tensors read from outside the container."""
        written = {n for b in self.blocks for n in b.writes()}
        return [n for b in self.blocks for n in b.reads() if n not in written]

    def writes(self) -> list[str]:
        """Tensors written by any child."""
        return [n for b in self.blocks for n in b.writes()]

    def run(self, tensors: Tensors) -> Tensors:
        """Run the children level by level, in order."""
        env = dict(tensors)
        for level in self.levels:
            for block in level:
                env.update(block.run(env))
        return {n: env[n] for n in self.writes()}


class ParallelSequenceBlockContainer(SequenceBlockContainer):
    """Like the container, but the independent blocks of each level run in parallel threads."""

    def __init__(self, config, ctx, path):
        super().__init__(config, ctx, path)
        self._pool: ThreadPoolExecutor | None = None

    def run(self, tensors: Tensors) -> Tensors:
        """Run each level's blocks concurrently; results are identical to the sequential run."""
        width = max((len(level) for level in self.levels), default=1)
        if self._pool is None and width > 1:
            self._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="ttsstack-encoders")
        env = dict(tensors)
        for level in self.levels:
            if len(level) == 1 or self._pool is None:
                results = [block.run(env) for block in level]
            else:
                results = list(self._pool.map(lambda block: block.run(env), level))
            for result in results:
                env.update(result)
        return {n: env[n] for n in self.writes()}


@BLOCKS.register("StreamableStack")
class StreamableStack(StreamableBlock):
    """A chain of streamable blocks, each pulling from the one before."""

    class Config(BlockConfig):
        stack: list[dict[str, Any]] = Field(min_length=1)

    def __init__(self, config, ctx, path):
        super().__init__(config, ctx, path)
        prefix = f"{path}.stack" if path else "stack"
        self.blocks: list[StreamableBlock] = []
        for i, raw in enumerate(config.stack):
            block = ctx.build(raw, f"{prefix}[{i}]")
            if not isinstance(block, StreamableBlock):
                raise StackError(f"{block.label}: a StreamableStack holds streamable blocks only")
            self.blocks.append(block)

    def children(self):
        return list(self.blocks)

    def check(self, wiring: Wiring, upstream: str | None) -> str:
        for block in self.blocks:
            upstream = block.check(wiring, upstream)
        return upstream

    @property
    def lookahead(self) -> int:
        """The blocks' lookaheads add up: each waits for its own past what the one before emits."""
        return sum(block.lookahead for block in self.blocks)

    def set_downstream(self, frames: int) -> None:
        """Each block's downstream is the lookahead of the blocks after it plus the stack's own downstream."""
        super().set_downstream(frames)
        for block in reversed(self.blocks):
            block.set_downstream(frames)
            frames += block.lookahead

    def stream(self, tensors: Tensors, upstream: Stream | None) -> Stream:
        for block in self.blocks:
            upstream = block.stream(tensors, upstream)
        return upstream


@BLOCKS.register("StreamablePipeline")
class StreamablePipeline(StreamableBlock):
    """One sequence block run on the utterance, then one streamable block streamed."""

    class Config(BlockConfig):
        sequence_block: dict[str, Any]
        streamable_block: dict[str, Any]

    def __init__(self, config, ctx, path):
        super().__init__(config, ctx, path)
        self.sequence = ctx.build(config.sequence_block, f"{path}.sequence_block")
        if not isinstance(self.sequence, SequenceBlock):
            raise StackError(f"{self.sequence.label}: sequence_block must be a sequence block")
        self.streamable = ctx.build(config.streamable_block, f"{path}.streamable_block")
        if not isinstance(self.streamable, StreamableBlock):
            raise StackError(f"{self.streamable.label}: streamable_block must be a streamable block")

    def children(self):
        return [self.sequence, self.streamable]

    def check(self, wiring: Wiring, upstream: str | None) -> str:
        self.sequence.check(wiring)
        return self.streamable.check(wiring, upstream)

    @property
    def lookahead(self) -> int:
        """The streamable block's."""
        return self.streamable.lookahead

    def set_downstream(self, frames: int) -> None:
        """Passed on to the streamable block."""
        super().set_downstream(frames)
        self.streamable.set_downstream(frames)

    def stream(self, tensors: Tensors, upstream: Stream | None) -> Stream:
        env = dict(tensors)
        env.update(self.sequence.run(env))
        yield from self.streamable.stream(env, upstream)
