"""The autoregressive decoder: one network call per frame, state carried between calls, until stop."""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from pydantic import Field

from ..alignment import ALIGNMENT
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
from .windows import chunk_sizes, prior_frames


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

    A step may make several frames (``frame`` ``[1, r, channels]``: SpeechT5's
    reduction factor); the network itself picks the frame it feeds back.
    Decoding stops by ``stop_rule``: ``sigmoid`` (one stop logit, stop after
    the step whose ``sigmoid(stop) > threshold``: Tacotron 2) or
    ``sigmoid_sum`` (one logit per frame of the step, stop when the sum of
    their sigmoids ``>= threshold``: SpeechT5's ``generate_speech``). As in
    SpeechT5, ``min_length_ratio``/``max_length_ratio`` bound the steps by the
    text: never stop before ``int(T * min_length_ratio / r)`` steps, always
    after ``int(T * max_length_ratio / r)`` (``T`` the true length of the
    data inputs' sequence dim, at least one step). Past ``max_decoder_steps``
    steps (or a ``cache`` state's capacity) the piece is cut with a
    :class:`DecoderCapWarning`, so a decoder that never stops still ends.

    ``cache`` states (``addon.yaml``: ``states: {past_keys: {output:
    step_keys, cache: T_cache}}``) are key/value caches: the block allocates
    their slots once per utterance (:meth:`cache_capacity`: here the steps the
    utterance may take, up to the dim's ``max``; static backends use their
    compiled size), writes each call's entry into slot ``position``, fills the
    network's ``position`` input with the call's index and its ``cache_mask``
    input with 1 for the filled slots. Nothing may stream into this block;
    it makes its own stream (named ``frames``), which the next block of a
    ``StreamableStack`` (e.g. ``Postnet``) consumes.

    With ``alignment:`` naming an output of the step (its attention weights
    over the text, ``[..., T_text]``), each step's frames are aligned to the
    token of the largest weight, from which word timings are read
    (:mod:`~ttsstack.runtime.alignment`).

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
        stop_rule: Literal["sigmoid", "sigmoid_sum"] = "sigmoid"
        min_length_ratio: float = Field(0.0, ge=0.0)
        max_length_ratio: float | None = Field(None, gt=0.0)
        alignment: str | None = None

    def __init__(self, config, ctx, path):
        super().__init__(config, ctx, path)
        self.network = config.network or single_network(ctx, self.role, path)
        self.runner = ctx.runner(self.network, f"{path}.network")
        self.spec = self.runner.spec
        self.options = ctx.options
        outputs = self.spec.outputs
        named = [("frame", config.frame), ("stop", config.stop)]
        for field, name in named + ([("alignment", config.alignment)] if config.alignment else []):
            if name not in outputs:
                raise StackError(
                    f"{path}.{field}: network '{self.network}' has no output '{name}'; it has {', '.join(outputs)}"
                )
        frame_shape, stop_shape = outputs[config.frame].shape, outputs[config.stop].shape
        if len(frame_shape) != 3 or not isinstance(frame_shape[1], int):
            raise StackError(f"{path}.frame: output '{config.frame}' must be [1, frames, channels] with a fixed number of frames, got {frame_shape}")
        self.frames_per_step = frame_shape[1]
        if config.stop_rule == "sigmoid" and any(d != 1 for d in stop_shape):
            raise StackError(f"{path}.stop: output '{config.stop}' must hold one logit (stop_rule sigmoid), got shape {stop_shape}")
        if config.stop_rule == "sigmoid_sum" and not all(isinstance(d, int) for d in stop_shape):
            raise StackError(f"{path}.stop: output '{config.stop}' must have a fixed shape (one logit per frame), got {stop_shape}")
        self.data_inputs = list(self.spec.data_inputs)
        self.states = {name: state.output for name, state in self.spec.states.items() if state.cache is None}
        self.caches = {
            name: (state.output, self.spec.inputs[name].shape.index(state.cache))
            for name, state in self.spec.states.items() if state.cache is not None
        }
        self.cache_dim = next(iter(self.spec.cache_dims), None)
        if self.spec.noise:
            raise StackError(
                f"{path}: network '{self.network}' declares noise inputs ({', '.join(self.spec.noise)}), which an "
                f"autoregressive decoder does not fill; give the step network its noise as a state or a data input"
            )
        if len(self.spec.cache_dims) > 1:
            raise StackError(f"{path}: network '{self.network}' has cache states along several dims ({', '.join(sorted(self.spec.cache_dims))}); one is supported")
        self.cache_max = ctx.spec.dims[self.cache_dim].max if self.cache_dim else None
        self._check_state_dims(path)
        self.stop_logit = _logit(config.threshold)

    def _check_state_dims(self, path: str) -> None:
        known = {d for name in self.data_inputs for _, d in self.spec.inputs[name].named_dims} | self.spec.cache_dims
        for name in self.spec.states:
            for axis, dim in self.spec.inputs[name].named_dims:
                if dim not in known:
                    raise StackError(
                        f"{path}: state '{name}' of network '{self.network}' has dim '{dim}' (shape[{axis}]), "
                        f"which no data input fixes; data inputs have: {', '.join(sorted(known)) or 'none'}"
                    )

    def records_alignment(self) -> bool:
        """When ``alignment:`` names the step's attention weights over the tokens."""
        return self.config.alignment is not None

    def describe(self) -> str:
        return (
            f"{self.config.type} {self.network} [{len(self.states)} states, {len(self.caches)} caches, "
            f"{self.frames_per_step} frame(s) per step, {self.config.stop_rule} stop at {self.config.threshold}, "
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

    def initial_states(self, inputs: dict[str, torch.Tensor], capacity: int = 0) -> dict[str, torch.Tensor]:
        """Every state input at its ``init`` value, named dims sized like the prepared inputs', caches to ``capacity`` slots."""
        sizes = {d: inputs[name].shape[axis] for name in inputs for axis, d in self.spec.inputs[name].named_dims}
        if self.cache_dim:
            sizes[self.cache_dim] = capacity
        states = {}
        for name, spec in self.spec.states.items():
            tensor = self.spec.inputs[name]
            shape = [sizes[d] if isinstance(d, str) else d for d in tensor.shape]
            states[name] = torch.full(shape, spec.init, dtype=tensor.torch_dtype)
        return states

    def step_bounds(self, length: int) -> tuple[int, int | None]:
        """The fewest steps before the stop token counts and the steps after which decoding ends (None: no bound).

        SpeechT5's ``generate_speech``: ``int(length * ratio / frames per step)``
        for a text of ``length`` steps (at least one step either way).
        """
        ratio = self.config.max_length_ratio
        low = int(length * self.config.min_length_ratio / self.frames_per_step)
        return low, (None if ratio is None else max(1, int(length * ratio / self.frames_per_step)))

    def cache_capacity(self, steps: int) -> int:
        """Cache slots to allocate for an utterance of at most ``steps`` steps: that many, up to the dim's ``max``."""
        return min(steps, self.cache_max)

    def stream(self, tensors: Tensors, upstream: Stream | None) -> Stream:
        data = {name: tensors[name] for name in self.data_inputs}
        low, high = self.step_bounds(step_length(self.spec, data))
        limit = max(low, high) if high is not None else self.config.max_decoder_steps
        limit = min(limit, self.config.max_decoder_steps)
        prepared = self.prepare(tensors)
        step = self.bind_step(prepared)
        capacity = self.cache_capacity(limit) if self.cache_dim else limit
        limit = min(limit, capacity)
        states = self.initial_states(prepared, capacity)
        if self.cache_dim:
            cache_mask = torch.zeros(1, capacity, dtype=self.spec.inputs[self.spec.cache_mask].torch_dtype)
            states[self.spec.cache_mask] = cache_mask
        sizes = chunk_sizes(self.options.first_chunk_frames, self.options.chunk_frames, self.downstream, prior_frames(tensors))
        size, pending, count = next(sizes), [], 0
        frame, stop, pairs, caches = self.config.frame, self.config.stop, self.states.items(), self.caches.items()
        alignment = tensors.get(ALIGNMENT) if self.config.alignment else None
        for index in range(limit):
            if self.cache_dim:
                states[self.spec.position] = torch.tensor([index], dtype=torch.int64)
            outputs = step(states)
            for name, output in pairs:
                states[name] = outputs[output]
            for name, (output, axis) in caches:
                states[name].narrow(axis, index, 1).copy_(outputs[output])
            if self.cache_dim:
                cache_mask[0, index] = 1
            pending.append(outputs[frame])
            count += outputs[frame].shape[1]
            if alignment is not None:
                alignment.attention(outputs[self.config.alignment], outputs[frame].shape[1])
            stopped = index + 1 >= low and ((high is not None and index + 1 >= high) or self._stops(outputs[stop]))
            if stopped or count >= size:
                yield torch.cat(pending, dim=1)  # a copy: the last frame is also the next step's input
                size, pending, count = next(sizes), [], 0
            if stopped:
                return
        if limit == self.config.max_decoder_steps:
            bound, remedy = f"max_decoder_steps={limit}", "raise max_decoder_steps in the stack entry"
        else:
            bound, remedy = f"{limit} steps, the capacity of cache dim {self.cache_dim}", f"raise dims.{self.cache_dim}"
        warnings.warn(
            f"{self.label}: the stop token did not fire within {bound}; the piece was cut there ({remedy} for longer pieces)",
            DecoderCapWarning,
            stacklevel=2,
        )
        if pending:
            yield torch.cat(pending, dim=1)

    def _stops(self, stop: torch.Tensor) -> bool:
        """Whether the step's ``stop`` output ends decoding under ``stop_rule``."""
        if self.config.stop_rule == "sigmoid":
            return stop.item() > self.stop_logit
        return torch.sigmoid(stop).sum().item() >= self.config.threshold


def _logit(threshold: float) -> float:
    """The stop logit above which ``sigmoid(logit) > threshold`` (no sigmoid per step)."""
    if threshold <= 0.0:
        return -math.inf
    if threshold >= 1.0:
        return math.inf
    return math.log(threshold / (1.0 - threshold))
