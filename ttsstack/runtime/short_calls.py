"""Calls shorter than a dim's ``min``: padded up to it, the network's mask marking the padding, outputs cropped back.

A program exported for ``min..max`` steps (a reflect-padded convolution
needs more steps than it pads) cannot run a shorter call: a short sentence,
the whole stream of a one-word text. A network with a ``mask`` or
``lengths`` input along that dim is told which steps are real, as a static
backend pads to a bucket, so such a call is padded to ``min`` and cropped;
one without either is refused with an error naming the dim, before the
program's own assertion would fail inside the backend.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..addon import DimSpec
from .network import NetworkRunner, cropped_outputs, padded_window, sequence_dim, step_length


class ShortCallError(ValueError):
    """A call shorter than its dim's ``min`` to a network that declares no ``mask``/``lengths`` to pad it with."""


class ShortCallPadding:
    """A runner that pads calls shorter than ``minimum`` steps along the network's sequence dim up to it."""

    def __init__(self, name: str, runner: NetworkRunner, minimum: int):
        self.name = name
        self.runner = runner
        self.spec = runner.spec
        self.static_lengths = runner.static_lengths
        self.dim = sequence_dim(self.spec)
        self.minimum = minimum

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        length = step_length(self.spec, inputs)
        if length >= self.minimum:
            return self.runner(inputs)
        if not (self.spec.mask or self.spec.lengths):
            raise ShortCallError(
                f"network '{self.name}': {length} steps along {self.dim}, fewer than its min {self.minimum}, and it "
                f"declares no mask/lengths input to pad the call with (declare one, or lower dims.{self.dim}.min)"
            )
        padded = padded_window(self.spec, inputs, self.dim, self.minimum, 0, length)
        return cropped_outputs(self.spec, self.dim, self.runner(padded), self.minimum, 0, length)


def short_call_runners(runners: Mapping[str, NetworkRunner], dims: Mapping[str, DimSpec]) -> dict[str, NetworkRunner]:
    """``runners`` with each dynamic one whose sequence dim has a ``min`` above 1 behind :class:`ShortCallPadding`.

    Static runners are left alone: they pad every call to a bucket, and buckets are at least ``min``.
    """
    wrapped = {}
    for name, runner in runners.items():
        dim = sequence_dim(runner.spec)
        minimum = dims[dim].min if dim in dims else 1
        dynamic = runner.static_lengths is None
        wrapped[name] = ShortCallPadding(name, runner, minimum) if dynamic and minimum > 1 else runner
    return wrapped
