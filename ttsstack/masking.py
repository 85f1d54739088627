"""Authoring helper: give a convolutional network (a HiFi-GAN vocoder, say) the ``mask`` input static backends need.

A static-shape backend pads a stream's last window to a bucket. A convolution
next to the padding then reads padded steps, and after a first layer those are
no longer zeros (biases, activations), so the last real outputs change.
Zeroing every convolution's input on the padded steps makes each one read
exactly the zeros its own padding reads at the true end of a whole run, so
a padded run equals the unpadded one on the real steps.

:func:`masked_convolutions` does that around the library's own code (hooks
on its ``Conv1d``/``ConvTranspose1d`` layers, removed on exit), so no model
code is copied; :class:`MaskedConvolutions` wraps a module whose ``forward``
takes the frames first. Every convolution must run at a whole
multiple of the mask's rate (a vocoder's upsampled layers do); the mask is
repeated to each one's length. Layers that mix steps other than convolutions
(attention, normalisation over time) are not covered and need their own mask.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

CONVOLUTIONS = (nn.Conv1d, nn.ConvTranspose1d)


@contextmanager
def masked_convolutions(module: nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """Within the block, every ``Conv1d``/``ConvTranspose1d`` of ``module`` reads its input times ``mask`` ``[B, T]``.

    Each convolution's input ``[B, C, T * rate]`` gets the mask repeated
    ``rate`` times per step (a whole number: the layer's length over the
    mask's). Raises ``ValueError`` when ``module`` has no convolution.
    """
    convolutions = [m for m in module.modules() if isinstance(m, CONVOLUTIONS)]
    if not convolutions:
        raise ValueError(f"{type(module).__name__} has no Conv1d/ConvTranspose1d layer to mask")

    def zero_padding(conv: nn.Module, args: tuple):
        x = args[0]
        rate = x.shape[-1] // mask.shape[-1]
        steps = mask.to(x.dtype).unsqueeze(-1).expand(-1, -1, rate).reshape(mask.shape[0], 1, -1)
        return (x * steps, *args[1:])

    hooks = [conv.register_forward_pre_hook(zero_padding) for conv in convolutions]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


class MaskedConvolutions(nn.Module):
    """``module(frames, *rest)`` with a ``mask`` ``[1, T]`` (1: real step) that zeroes padded steps before every convolution.

    ``forward(frames, mask, *rest)`` returns what ``module(frames, *rest)``
    returns; declare the mask as the network's ``mask:`` in ``addon.yaml``.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        if not any(isinstance(m, CONVOLUTIONS) for m in module.modules()):
            raise ValueError(f"{type(module).__name__} has no Conv1d/ConvTranspose1d layer to mask")
        self.module = module

    def forward(self, frames: torch.Tensor, mask: torch.Tensor, *rest):
        """Run the wrapped module with each convolution's input multiplied by the mask at its rate."""
        with masked_convolutions(self.module, mask):
            return self.module(frames, *rest)
