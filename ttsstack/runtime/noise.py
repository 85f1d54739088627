"""Noise inputs the runtime fills (``noise:`` in a network's entry): seeded per step, whatever the windowing.

A sampling model (VITS draws its prior sample and its durations) takes its
noise as an input, so the programs stay deterministic functions. The runtime
draws it in blocks of :data:`BLOCK` steps along the input's named dim, each
block from its own generator seeded by the noise's ``seed``, the input's name
and the block's index: the value at step t is the same whether it is drawn
for a whole utterance or for any window holding t, so streaming stays exact.
"""

from __future__ import annotations

import zlib

import torch

from ..addon import NetworkSpec, NoiseSpec, TensorSpec

BLOCK = 64
"""Steps drawn per generator: large enough to amortise seeding, small enough for short windows."""


def noise_steps(name: str, noise: NoiseSpec, tensor: TensorSpec, start: int, length: int) -> torch.Tensor:
    """The noise input ``name`` for steps ``[start, start + length)`` of its named dim, in the input's shape and dtype."""
    ((axis, _),) = tensor.named_dims
    fixed = [size for i, size in enumerate(tensor.shape) if i != axis]
    per_step = 1
    for size in fixed:
        per_step *= size
    first, last = start // BLOCK, (start + max(length, 1) - 1) // BLOCK
    blocks = [
        torch.randn(BLOCK, per_step, generator=torch.Generator().manual_seed(_block_seed(noise.seed, name, k)))
        for k in range(first, last + 1)
    ]
    steps = torch.cat(blocks).narrow(0, start - first * BLOCK, length) * noise.scale
    return steps.reshape(length, *fixed).movedim(0, axis).contiguous().to(tensor.torch_dtype)


def _block_seed(seed: int, name: str, block: int) -> int:
    return zlib.crc32(f"{seed}:{name}:{block}".encode())


def with_noise_inputs(spec: NetworkSpec, inputs: dict[str, torch.Tensor], start: int, length: int) -> dict[str, torch.Tensor]:
    """Add the network's ``noise`` inputs for steps ``[start, start + length)`` of its sequence."""
    for name, noise in spec.noise.items():
        inputs[name] = noise_steps(name, noise, spec.inputs[name], start, length)
    return inputs
