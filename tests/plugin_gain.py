"""The README's example plugin: a ``Gain`` block that makes the speech louder or quieter by ``db`` decibels.

Loaded by name (``--plugin tests.plugin_gain``) in the plugin tests, as an
operator would load their own module.
"""

from __future__ import annotations

import math

from ttsstack.runtime import BLOCKS, StreamableBlock
from ttsstack.runtime.blocks.base import BlockConfig


@BLOCKS.register("Gain")
class Gain(StreamableBlock):
    """Changes loudness by ``db`` decibels: the mel is the natural log of mel magnitudes, so a gain is an offset."""

    class Config(BlockConfig):
        db: float = -6.0

    def check(self, wiring, upstream):
        wiring.read(self.label, upstream, rank=3)
        return upstream

    def stream(self, tensors, upstream):
        offset = self.config.db / 20 * math.log(10)  # amplitude x 10^(db/20) is log-amplitude + db/20 * ln 10
        for chunk in upstream:
            yield chunk + offset
