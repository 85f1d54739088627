"""The autoregressive decoder: one network call per frame, state carried between calls, until stop."""

from __future__ import annotations

import math
import warnings

import torch
from pydantic import Field

from ..network import Step, bind_inputs, step_length, with_length_inputs
from ..registry import BLOCKS
from .base import (
    BlockConfig,
    StackError,
    Stream,
    StreamableBlock,
    TensorInfo,
    Tensors,
    Wiring,
    single_network,
)
from .windows import chunk_sizes


class DecoderCapWarning(RuntimeWarning):
    """An autoregressive decoder reached ``max_decoder_steps`` without its stop token firing."""


@BLOCKS.register("AutoregressiveDecoder")
class AutoregressiveDecoder(StreamableBlock):
    """Runs a one-step network (default: the one with role ``decoder_step``) once per frame.

    The network's inputs are of three kinds. Data inputs (the encoder memory,
    ...) are read from the utterance tensors and prepared once per utterance,
    with the ``mask``/``lengths`` inputs the network declares. State inputs are
    those the addon declares in ``states:``: each starts at its ``init`` value
    (its named dims sized like the data inputs') and then takes the paired
    output of the previous call; the frame fed back as the next input is such
    a state (``previous_frame: {output: frame}``). Each call's ``frame`` output
    joins the stream, which is yielded in chunks as frames are made.

    Decoding stops after the step whose ``sigmoid(stop) > threshold``, or after
    ``max_decoder_steps`` steps with a :class:`DecoderCapWarning`, so a
    decoder that never stops still ends. Nothing may stream into this block;
    it makes its own stream (named ``frames``), which the next block of a
    ``StreamableStack`` (e.g. ``Postnet``) consumes.

    The prepared inputs are bound to the network once per utterance
    (:meth:`bind_step`), so each step passes only the states, which go from
    one call's outputs to the next call's inputs without a copy. Backends with
    static shapes override :meth:`prepare` (pad the data inputs to a bucket,
    mask the padding); binding then picks that bucket's artifact.
    """

    role = "decoder_step"

    class Config(BlockConfig):
        network: str | None = None
        frame: str = "frame"
        stop: str = "stop"
        frames: str = "frames"
        threshold: float = Field(0.5, ge=0.0, le=1.0)
        max_decoder_steps: int = Field(1000, ge=1)

    def __init__(self, config, ctx, path):
        super().__init__(config, ctx, path)
        self.network = config.network or single_network(ctx, self.role, path)
        self.runner = ctx.runner(self.network, f"{path}.network")
        self.spec = self.runner.spec
        self.options = ctx.options
        outputs = self.spec.outputs
        for field, name in (("frame", config.frame), ("stop", config.stop)):
            if name not in outputs:
                raise StackError(
                    f"{path}.{field}: network '{self.network}' has no output '{name}'; it has {', '.join(outputs)}"
                )
        if len(outputs[config.frame].shape) != 3:
            raise StackError(f"{path}.frame: output '{config.frame}' must be [1, frames, channels], got {outputs[config.frame].shape}")
        if any(d != 1 for d in outputs[config.stop].shape):
            raise StackError(f"{path}.stop: output '{config.stop}' must hold one logit, got shape {outputs[config.stop].shape}")
        self.data_inputs = list(self.spec.data_inputs)
        self.states = {name: state.output for name, state in self.spec.states.items()}
        self._check_state_dims(path)
        self.stop_logit = _logit(config.threshold)

    def _check_state_dims(self, path: str) -> None:
        known = {d for name in self.data_inputs for _, d in self.spec.inputs[name].named_dims}
        for name in self.states:
            for axis, dim in self.spec.inputs[name].named_dims:
                if dim not in known:
                    raise StackError(
                        f"{path}: state '{name}' of network '{self.network}' has dim '{dim}' (shape[{axis}]), "
                        f"which no data input fixes; data inputs have: {', '.join(sorted(known)) or 'none'}"
                    )

    def describe(self) -> str:
        return (
            f"{self.config.type} {self.network} [{len(self.states)} states, stop > {self.config.threshold}, "
            f"max {self.config.max_decoder_steps} steps]"
        )

    def check(self, wiring: Wiring, upstream: str | None) -> str:
        if upstream is not None:
            raise StackError(f"{self.label}: makes its own stream, so it must come first, but follows a block producing '{upstream}'")
        for name in self.data_inputs:
            t = self.spec.inputs[name]
            wiring.read(self.label, name, rank=len(t.shape), dtype=t.dtype)
        wiring.write(self.label, self.config.frames, TensorInfo.of(self.spec.outputs[self.config.frame], self.label))
        return self.config.frames

    def prepare(self, tensors: Tensors) -> dict[str, torch.Tensor]:
        """The per-utterance inputs: data inputs plus ``mask``/``lengths`` (static backends pad here)."""
        inputs = {name: tensors[name] for name in self.data_inputs}
        length = step_length(self.spec, inputs)
        return with_length_inputs(self.spec, inputs, length, length)

    def bind_step(self, prepared: dict[str, torch.Tensor]) -> Step:
        """The network's step for one utterance: the ``prepared`` inputs bound once, the states passed per call."""
        return bind_inputs(self.runner, prepared)

    def initial_states(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every state input at its ``init`` value, named dims sized like the prepared inputs'."""
        sizes = {d: inputs[name].shape[axis] for name in inputs for axis, d in self.spec.inputs[name].named_dims}
        states = {}
        for name, spec in self.spec.states.items():
            tensor = self.spec.inputs[name]
            shape = [sizes[d] if isinstance(d, str) else d for d in tensor.shape]
            states[name] = torch.full(shape, spec.init, dtype=tensor.torch_dtype)
        return states

    def stream(self, tensors: Tensors, upstream: Stream | None) -> Stream:
        prepared = self.prepare(tensors)
        step = self.bind_step(prepared)
        states = self.initial_states(prepared)
        sizes = chunk_sizes(self.options.first_chunk_frames, self.options.chunk_frames)
        size, pending, count = next(sizes), [], 0
        frame, stop, pairs = self.config.frame, self.config.stop, self.states.items()
        for _ in range(self.config.max_decoder_steps):
            outputs = step(states)
            for name, output in pairs:
                states[name] = outputs[output]
            pending.append(outputs[frame])
            count += outputs[frame].shape[1]
            stopped = outputs[stop].item() > self.stop_logit
            if stopped or count >= size:
                yield torch.cat(pending, dim=1)  # a copy: the last frame is also the next step's input
                size, pending, count = next(sizes), [], 0
            if stopped:
                return
        warnings.warn(
            f"{self.label}: the stop token did not fire within max_decoder_steps={self.config.max_decoder_steps}; "
            "the piece was cut there (raise max_decoder_steps in the stack entry for longer pieces)",
            DecoderCapWarning,
            stacklevel=2,
        )
        if pending:
            yield torch.cat(pending, dim=1)


def _logit(threshold: float) -> float:
    """The stop logit above which ``sigmoid(logit) > threshold`` (no sigmoid per step)."""
    if threshold <= 0.0:
        return -math.inf
    if threshold >= 1.0:
        return math.inf
    return math.log(threshold / (1.0 - threshold))
