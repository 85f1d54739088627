"""How blocks call networks: the runner protocol and the inputs the runtime fills itself."""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from ..addon import NetworkSpec, TensorSpec


class NetworkRunner(Protocol):
    """A loaded network on some backend: named tensors in, named tensors out.

    ``spec`` is the network's entry in ``addon.yaml``. ``static_lengths``, when
    not None, maps a named dim to the sorted sizes the artifact accepts
    (static-shape backends); dynamic runners accept any size up to the dim's max.
    A runner may also define ``bind(fixed)``, see :func:`bind_inputs`.
    """

    spec: NetworkSpec
    static_lengths: dict[str, list[int]] | None

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the network once."""
        ...


def sequence_dim(spec: NetworkSpec) -> str | None:
    """The dim that ``lengths``/``mask`` refer to: the mask's dim, else the first named dim of the data inputs."""
    if spec.mask is not None:
        named = spec.inputs[spec.mask].named_dims
        if named:
            return named[0][1]
    for tensor in spec.data_inputs.values():
        if tensor.named_dims:
            return tensor.named_dims[0][1]
    return None


def with_length_inputs(spec: NetworkSpec, inputs: dict[str, torch.Tensor], padded: int, valid: int) -> dict[str, torch.Tensor]:
    """Add the ``lengths``/``mask`` inputs the network declares for ``valid`` real steps of ``padded``."""
    if spec.lengths is not None:
        inputs[spec.lengths] = torch.tensor([valid], dtype=spec.inputs[spec.lengths].torch_dtype)
    if spec.mask is not None:
        mask = torch.zeros(1, padded, dtype=spec.inputs[spec.mask].torch_dtype)
        mask[:, :valid] = 1
        inputs[spec.mask] = mask
    return inputs


def time_axis(tensor: TensorSpec, dim: str | None) -> int | None:
    """The axis of ``tensor`` that runs along the sequence ``dim``, at the same or another rate.

    The axis named ``dim`` itself; else the axis of the tensor's one other
    named dim, read as an integer number of steps per ``dim`` step (a
    vocoder's ``T_samples`` along its ``T_frames``); else None (the tensor has
    no time axis).
    """
    if dim is None:
        return None
    named = tensor.named_dims
    same = [axis for axis, d in named if d == dim]
    if same:
        return same[0]
    return named[0][0] if len(named) == 1 else None


def crop_steps(tensor: torch.Tensor, axis: int, steps: int, start: int, count: int) -> torch.Tensor:
    """The part of ``tensor`` made for input steps ``[start, start + count)`` of the ``steps`` it was made from.

    ``tensor`` holds a whole number of outputs per input step along ``axis``
    (1 for frames from frames, ``hop`` samples per frame for a vocoder), so a
    crop of input steps is a crop of that many times more outputs.
    """
    size = tensor.shape[axis]
    if steps <= 0 or size % steps:
        raise ValueError(
            f"an output of {size} steps along axis {axis} from {steps} input steps is not a whole number of "
            f"steps per input step, so its windows cannot be cropped"
        )
    rate = size // steps
    return tensor.narrow(axis, start * rate, count * rate)


def pad_steps(tensor: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """``tensor`` zero-padded at the end of ``axis`` to ``size`` steps (itself when it has them): a mask reads 0 there."""
    missing = size - tensor.shape[axis]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=axis)


def padded_window(
    spec: NetworkSpec, inputs: dict[str, torch.Tensor], dim: str, size: int, start: int, length: int
) -> dict[str, torch.Tensor]:
    """Steps ``[start, start + length)`` of the inputs padded to ``size``, with the ``mask``/``lengths`` inputs set."""
    padded = {}
    for name, tensor in inputs.items():
        axis = next((axis for axis, d in spec.inputs[name].named_dims if d == dim), None)
        padded[name] = tensor if axis is None else pad_steps(tensor.narrow(axis, start, length), axis, size)
    return with_length_inputs(spec, padded, size, length)


def cropped_outputs(
    spec: NetworkSpec, dim: str | None, outputs: dict[str, torch.Tensor], steps: int, start: int, length: int
) -> dict[str, torch.Tensor]:
    """The outputs made for input steps ``[start, start + length)`` of the ``steps`` run (outputs without a time axis as they are).

    An output along another named dim holds a whole number of its steps per
    ``dim`` step (a vocoder's samples per frame) and is cropped by as many
    (:func:`crop_steps`).
    """
    cropped = {}
    for name, out in outputs.items():
        axis = time_axis(spec.outputs[name], dim)
        cropped[name] = out if axis is None else crop_steps(out, axis, steps, start, length)
    return cropped


def step_length(spec: NetworkSpec, inputs: dict[str, torch.Tensor]) -> int:
    """The size of the sequence dim in the given data inputs (1 when the network has none)."""
    dim = sequence_dim(spec)
    for name, tensor in spec.data_inputs.items():
        for axis, d in tensor.named_dims:
            if d == dim and name in inputs:
                return inputs[name].shape[axis]
    return 1


Step = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""One call of a network whose other inputs are bound: the remaining inputs in, all outputs out."""


def bind_inputs(runner: NetworkRunner, fixed: dict[str, torch.Tensor]) -> Step:
    """``runner`` with the ``fixed`` inputs given once, for many calls that change only the other inputs.

    An autoregressive decoder binds the encoder memory and its mask once per
    utterance and then passes only the state at each step. A runner that
    defines ``bind(fixed)`` prepares the fixed inputs once there (ONNX Runtime
    keeps them converted, on CUDA on the device; a static runner picks their
    bucket's artifact); any other runner gets them merged into every call.
    """
    bind = getattr(runner, "bind", None)
    if bind is not None:
        return bind(fixed)
    return lambda inputs: runner({**fixed, **inputs})
