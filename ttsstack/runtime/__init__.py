"""The runtime: integration blocks, registries, stack builder and the Voice."""

from . import vocoders  # noqa: F401  (registration)
from .blocks import autoregressive, containers, decoder, encoders, upsampler, vocoder  # noqa: F401  (registration)
from .blocks.base import SequenceBlock, StackError, StreamableBlock
from .builder import RuntimeOptions
from .frontend import TimingsUnavailable
from .registry import BACKENDS, BLOCKS, FRONTENDS, VOCODERS, Registry
from .timings import TimedChunk, WordTiming
from .voice import Voice

__all__ = [
    "BACKENDS",
    "BLOCKS",
    "FRONTENDS",
    "VOCODERS",
    "Registry",
    "RuntimeOptions",
    "SequenceBlock",
    "StackError",
    "StreamableBlock",
    "TimedChunk",
    "TimingsUnavailable",
    "Voice",
    "WordTiming",
]
