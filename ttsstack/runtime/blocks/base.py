"""The two integration abstractions, their composites, and the wiring check.

- :class:`SequenceBlock`: named tensors in, named tensors out, whole sequence.
- :class:`StreamableBlock`: yields chunks ``[1, n, C]`` on demand, pulling from an
  upstream stream and/or reading tensors that sequence blocks produced.

Data flows by tensor name. Before any text is synthesized the builder walks
the stack with a :class:`Wiring` table (name -> rank/dtype/writer) so that a
block reading a name nobody writes, two writers of one name, or a rank or
dtype mismatch fails at load with the config path of the offending entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import torch
from pydantic import BaseModel, ConfigDict

from ...addon import AddonError, TensorSpec

if TYPE_CHECKING:
    from ..builder import BuildContext

Tensors = dict[str, torch.Tensor]
Stream = Iterator[torch.Tensor]


class StackError(AddonError):
    """A stack config that cannot be built or is wired wrongly; names the entry's path."""


class PieceTooLong(RuntimeError):
    """A network with unbounded context got more steps along its dim than it can run at once.

    Raised before any chunk of the piece is yielded (such a network needs the
    whole piece first), so the Voice can split the piece's tokens at word
    boundaries and synthesize the parts instead. ``steps`` is what came,
    ``limit`` the most the network takes.
    """

    def __init__(self, message: str, steps: int, limit: int):
        super().__init__(message)
        self.steps = steps
        self.limit = limit


@dataclass(frozen=True)
class TensorInfo:
    """What the wiring check knows of a tensor: rank, dtype, last dim and who writes it."""

    rank: int | None
    dtype: str | None
    writer: str
    channels: int | None = None

    @classmethod
    def of(cls, spec: TensorSpec, writer: str) -> "TensorInfo":
        """Info from a network tensor spec."""
        last = spec.shape[-1] if spec.shape else None
        return cls(len(spec.shape), spec.dtype, writer, last if isinstance(last, int) else None)


class Wiring:
    """Symbolic tensor table used to check a stack before it runs."""

    def __init__(self, initial: dict[str, TensorInfo]):
        self.tensors = dict(initial)
        self.read_names: set[str] = set()
        """Every tensor some block reads (the Voice resamples the mel itself when no block reads ``speed``)."""

    def read(self, path: str, name: str, rank: int | None = None, dtype: str | None = None) -> TensorInfo:
        """Check that ``name`` is written before ``path`` reads it, with the expected rank/dtype."""
        info = self.tensors.get(name)
        if info is None:
            known = ", ".join(sorted(self.tensors)) or "(none)"
            raise StackError(f"{path}: reads tensor '{name}', which nobody writes; written before it: {known}")
        _expect(path, name, info, rank, dtype)
        self.read_names.add(name)
        return info

    def write(self, path: str, name: str, info: TensorInfo) -> None:
        """Record that ``path`` writes ``name``; a second writer is an error."""
        if name in self.tensors:
            raise StackError(f"{path}: writes tensor '{name}', already written by {self.tensors[name].writer}")
        self.tensors[name] = info


def _expect(path: str, name: str, info: TensorInfo, rank: int | None, dtype: str | None) -> None:
    if rank is not None and info.rank is not None and info.rank != rank:
        raise StackError(f"{path}: tensor '{name}' must have rank {rank}, but {info.writer} writes rank {info.rank}")
    if dtype is not None and info.dtype is not None and info.dtype != dtype:
        raise StackError(f"{path}: tensor '{name}' must be {dtype}, but {info.writer} writes {info.dtype}")


class BlockConfig(BaseModel):
    """Base of every block's config: ``type`` plus the block's own fields; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str


class Block(ABC):
    """Common base: a block knows its config path and parses its config with pydantic."""

    Config: ClassVar[type[BlockConfig]] = BlockConfig

    def __init__(self, config: BlockConfig, ctx: "BuildContext", path: str):
        self.config = config
        self.path = path

    @property
    def label(self) -> str:
        """``path (Type)``, how errors and ``inspect`` name the block."""
        return f"{self.path} ({self.config.type})"

    def children(self) -> list["Block"]:
        """Nested blocks, for the block tree shown by ``ttsstack inspect``."""
        return []

    def records_alignment(self) -> bool:
        """Whether this block records which token each frame speaks (:mod:`~ttsstack.runtime.alignment`),
        which word timings need."""
        return False

    def describe(self) -> str:
        """One line about the block for ``ttsstack inspect``."""
        fields = self.config.model_dump(exclude={"type"}, exclude_defaults=True)
        simple = {k: v for k, v in fields.items() if not isinstance(v, (dict, list))}
        return self.config.type + (f" {simple}" if simple else "")


class SequenceBlock(Block):
    """Named tensors in, named tensors out, the whole sequence at once."""

    @abstractmethod
    def reads(self) -> list[str]:
        """Names of the tensors this block reads."""

    @abstractmethod
    def writes(self) -> list[str]:
        """Names of the tensors this block writes."""

    @abstractmethod
    def check(self, wiring: Wiring) -> None:
        """Read this block's inputs from ``wiring`` and record its outputs."""

    @abstractmethod
    def run(self, tensors: Tensors) -> Tensors:
        """Compute this block's outputs (only the new tensors) from ``tensors``."""


class StreamableBlock(Block):
    """Produces chunks ``[1, n, C]`` along a time axis on demand.

    Chunks follow one frame grid (:func:`~ttsstack.runtime.blocks.windows.chunk_sizes`)
    through the stack. A block that needs ``lookahead`` frames past a chunk's
    end before it can emit the chunk (a bounded network's right context)
    would otherwise wait a whole chunk more; so each block is told, by
    :meth:`set_downstream`, the lookahead of everything after it (the vocoder
    included), and ends its first chunk that much later: then every block,
    and the vocoder, emits as soon as the first block's chunk arrives.
    """

    lookahead: int = 0
    """Frames past a chunk's end this block must have received before it emits the chunk."""
    downstream: int = 0
    """The lookahead of every block and the vocoder after this one: frames its first chunk adds to the grid's."""

    def set_downstream(self, frames: int) -> None:
        """Record the lookahead of what consumes this block's stream (containers pass it on to their blocks)."""
        self.downstream = frames

    @abstractmethod
    def check(self, wiring: Wiring, upstream: str | None) -> str:
        """Validate reads (tensors and the ``upstream`` stream name); return the produced stream's name.

        A produced stream is also recorded in ``wiring`` (as a rank-3 tensor) so
        the next block can check what it consumes.
        """

    @abstractmethod
    def stream(self, tensors: Tensors, upstream: Stream | None) -> Stream:
        """Yield output chunks, pulling from ``upstream`` as needed."""


def require_upstream(block: Block, upstream: str | None, expected: str) -> None:
    """Fail when a stream-consuming block has no stream, or the wrong one, before it."""
    if upstream is None:
        raise StackError(f"{block.label}: consumes stream '{expected}' but no streamable block comes before it")
    if upstream != expected:
        raise StackError(f"{block.label}: consumes stream '{expected}' but the block before it produces '{upstream}'")


def single_network(ctx: "BuildContext", role: str, path: str) -> str:
    """The addon's one network with ``role``, for a block whose ``network:`` is left out."""
    found = list(ctx.spec.networks_with_role(role))
    if len(found) != 1:
        raise StackError(
            f"{path}: needs 'network:' since the addon has {len(found)} networks with role '{role}'"
            + (f" ({', '.join(found)})" if found else "")
        )
    return found[0]


def config_of(block_cls: type[Block], raw: dict[str, Any], path: str) -> BlockConfig:
    """Validate a block's raw config dict into its ``Config`` model, errors prefixed by ``path``."""
    from pydantic import ValidationError

    try:
        return block_cls.Config.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{path}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" if err["loc"] else f"{path}: {err['msg']}"
            for err in exc.errors()
        ]
        raise StackError("invalid block config:\n  " + "\n  ".join(lines)) from None
