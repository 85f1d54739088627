"""Stateful streaming: a convolutional vocoder's program rewritten to keep each layer's past between calls.

Streamed on overlapping windows, a bounded-context network recomputes
``context`` frames on each side of every window: for a HiFi-GAN (13 frames a
side) that is half again the frames of a two-sentence text. A network built
of 1-D convolutions (stride 1, or transposed ones that upsample by their
stride) and operators that act step by step along time (activations, sums,
views, normalisations and matrix products over channels) streams exactly
without recomputing anything: each convolution keeps the last steps of its
input from the previous call (``dilation * (kernel - 1)``, for a transposed
one ``(kernel - 1) // stride``) and convolves them with the new ones, so a
call takes a chunk of frames and returns as many frames' worth of samples,
lagging the input by the receptive field on the right (``delay`` samples).
Operands of one operator that lag by different amounts (a residual sum) are
aligned by a delay line of the difference. Before every convolution the
steps outside ``[0, end)`` are zeroed, which is what its own zero padding
reads in a whole run, so the concatenated output equals the whole run's.

:func:`stateful_program` derives that program from the network's
``torch.export`` program at compile time, with every kept step a recurrent
state of the addon format (``states:``, zeros at the first call) and two
inputs the runtime fills, the chunk's first frame and the sequence's end.
A program with any operator that mixes steps otherwise (attention, a
recurrent layer, a pad or slice along time, a reduction over time) raises
:class:`NotStreamable` naming that operator, and the runtime keeps the
overlapping windows.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import sympy
import torch
import yaml
from torch import fx
from torch.fx.operator_schemas import normalize_function
from torch.nn import functional as F

from ..addon import ADDON_FILE, NetworkSpec, StatefulSpec, StateSpec, TensorSpec, parse_spec
from ..runtime.stateful import OPEN_END

aten = torch.ops.aten

DERIVATION = 1
"""The version of the rewrite below, recorded in each twin's ``stateful.derivation``: raise it when the rewrite
changes, so that a compile derives existing twins again instead of reusing them."""
START = "stream_start"
"""The derived program's input: the chunk's first frame's index in the sequence (``[1]`` int64)."""
END = "stream_end"
"""The derived program's input: the sequence's length in frames once known, else
:data:`~ttsstack.runtime.stateful.OPEN_END` (``[1]`` int64)."""

SKIPPED = {aten._assert_scalar.default, aten._assert_tensor_metadata.default, aten.sym_constrain_range_for_size.default}
"""Checks the source program made of its whole-sequence sizes; the chunk's are checked by its own export."""
SAME_STEPS = {
    aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.transpose.int,
    aten.permute.default, aten.expand.default, aten.alias.default, aten.contiguous.default, aten.clone.default,
    aten.to.dtype, aten.to.dtype_layout, aten._to_copy.default, aten.detach.default, aten.dropout.default,
}
"""Operators that keep each tensor element at its step (an axis may move)."""
RESHAPES = {aten.reshape.default, aten.view.default, aten._unsafe_view.default}
CONVOLUTIONS = {aten.conv1d.default, aten.conv1d.padding, aten.conv_transpose1d.default, aten.convolution.default}
SOURCES = {aten.zeros.default, aten.ones.default, aten.full.default, aten.arange.default, aten.arange.start}
"""Operators that may make a tensor along time from its length alone."""
OVER_CHANNELS = {
    aten.linear.default, aten.matmul.default, aten.layer_norm.default, aten.native_layer_norm.default,
    aten.softmax.int, aten._softmax.default, aten.log_softmax.int, aten._log_softmax.default, aten.mean.dim,
    aten.sum.dim_IntList, aten.amax.default, aten.slice.Tensor, aten.select.int, aten.split.Tensor,
    aten.split_with_sizes.default, aten.chunk.default, aten.unbind.int, aten.cat.default, aten.flip.default,
}
"""Operators that act along other axes than time: allowed when the axes they read along exclude it."""


class NotStreamable(ValueError):
    """The program mixes steps in a way stateful streaming does not cover; the message names the operator."""


@dataclass(frozen=True)
class Timed:
    """A tensor along time: its time ``axis``, ``rate`` steps per frame and the ``delay`` (steps) it lags the input."""

    axis: int
    rate: int
    delay: int


@dataclass(frozen=True)
class Slot:
    """One kept state: a tensor's last ``shape[axis]`` steps, carried from one call to the next."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    axis: int


@dataclass(frozen=True)
class Convolution:
    """A 1-D convolution run on its ``kept`` steps (state ``slot``) followed by the chunk's, with its input's
    ``timed``; the steps outside ``[0, rate * end)`` of the sequence are zeroed first, unless ``masked``."""

    slot: int | None
    timed: Timed
    kept: int
    transposed: bool
    params: dict
    masked: bool
    """Its input is already multiplied by the network's mask, which is 0 there (see :func:`_reads_masked`)."""


@dataclass(frozen=True)
class Aligned:
    """A step-by-step operator whose operands (argument position, flattened) are delayed to one lag."""

    delays: tuple[tuple[int, int, Timed, int], ...]  # (flat argument index, slot, operand timing, extra delay)


@dataclass
class Plan:
    """What the rewritten program does per node, the states it keeps and its output's timing."""

    actions: dict[fx.Node, object] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    output: Timed | None = None
    sources: dict[fx.Node, Timed] = field(default_factory=dict)

    def keep(self, value, axis: int, steps: int) -> int:
        """A new state slot of ``steps`` steps of a tensor like ``value`` (its meta value)."""
        shape = list(value.shape)
        for i, size in enumerate(shape):
            if i != axis and not isinstance(size, int):
                raise NotStreamable(f"a kept tensor has a second dynamic axis ({size})")
        shape[axis] = steps
        self.slots.append(Slot(tuple(int(s) for s in shape), value.dtype, axis))
        return len(self.slots) - 1


def _time_axis(value, symbol: sympy.Symbol, where: str) -> tuple[int, int] | None:
    """``(axis, rate)`` of a meta tensor whose one axis is ``rate * symbol``; None when no axis depends on it."""
    if not isinstance(value, torch.Tensor):
        return None
    found = []
    for axis, size in enumerate(value.shape):
        if isinstance(size, torch.SymInt):
            expr = sympy.expand(size.node.expr)
            if not expr.free_symbols:
                continue  # a size computed from sizes that is a constant (a length over itself)
            if symbol not in expr.free_symbols:
                raise NotStreamable(f"{where}: axis {axis} depends on another dynamic size ({expr})")
            rate = sympy.simplify(expr / symbol)
            if not (rate.is_Integer and int(rate) >= 1):
                raise NotStreamable(f"{where}: axis {axis} has {expr} steps, not a whole number of steps per frame")
            found.append((axis, int(rate)))
    if len(found) > 1:
        raise NotStreamable(f"{where}: more than one axis along time")
    return found[0] if found else None


def _flat_nodes(args) -> list:
    out = []
    fx.node.map_aggregate(args, out.append)
    return out


def _is_symbolic(value) -> bool:
    return isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool))


def _conv_params(node: fx.Node) -> tuple[dict, bool]:
    """The convolution's arguments by name, and whether it is transposed."""
    _, kwargs = normalize_function(node.target, node.args, node.kwargs, normalize_to_only_use_kwargs=True)
    if node.target is aten.convolution.default:
        return kwargs, bool(kwargs["transposed"])
    return kwargs, node.target is aten.conv_transpose1d.default


def _ints(value, size: int = 1) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * size


def _reads_masked(node: fx.Node, mask: fx.Node | None) -> bool:
    """Whether convolution ``node``'s input is a product with the network's ``mask`` input (through views and casts).

    Such a network (``ttsstack.masking.MaskedConvolutions``) zeroes the steps
    outside the sequence itself: the runtime feeds mask 0 past the end, and
    the mask's delay line starts at 0 before the start, so the twin need not
    zero them again (a pass over the tensor per convolution saved).
    """
    if mask is None:
        return False
    source = node.args[0]
    if not (isinstance(source, fx.Node) and source.target is aten.mul.Tensor):
        return False
    for operand in source.args[:2]:
        while isinstance(operand, fx.Node) and operand.op == "call_function" and operand.target in SAME_STEPS | RESHAPES:
            operand = operand.args[0]
        if operand is mask:
            return True
    return False


def _plan_convolution(plan: Plan, node: fx.Node, timed: Timed, where: str, mask: fx.Node | None) -> Timed:
    params, transposed = _conv_params(node)
    weight = params["weight"].meta["val"]
    x = params["input"].meta["val"]
    if weight.dim() != 3 or timed.axis != x.dim() - 1:
        raise NotStreamable(f"{where}: only 1-D convolutions along time stream with state")
    kernel = int(weight.shape[-1])
    stride, padding = _ints(params.get("stride", 1))[0], params.get("padding", 0)
    dilation = _ints(params.get("dilation", 1))[0]
    if isinstance(padding, str):
        if padding != "same":
            raise NotStreamable(f"{where}: padding '{padding}'")
        padding = dilation * (kernel - 1) // 2
    padding = _ints(padding)[0]
    if transposed:
        if dilation != 1 or kernel < stride or any(_ints(params.get("output_padding", 0))):
            raise NotStreamable(f"{where}: a transposed convolution that is dilated, has output padding or a kernel "
                                f"shorter than its stride")
        kept = (kernel - 1) // stride
        out = Timed(timed.axis, timed.rate * stride, stride * timed.delay + padding)
    else:
        if stride != 1:
            raise NotStreamable(f"{where}: a strided convolution (stride {stride}) lowers the rate")
        kept = dilation * (kernel - 1)
        out = Timed(timed.axis, timed.rate, timed.delay + kept - padding)
    slot = plan.keep(x, timed.axis, kept) if kept else None
    clean = {k: v for k, v in params.items() if k not in ("input", "weight", "bias")}
    plan.actions[node] = Convolution(slot, timed, kept, transposed, clean, _reads_masked(node, mask))
    return out


def _check_over_channels(node: fx.Node, timed_inputs: list, where: str) -> None:
    """Refuse an operator of :data:`OVER_CHANNELS` that reads along the time axis."""
    target = node.target
    first, timed = timed_inputs[0]
    ndim, axis = first.meta["val"].dim(), timed.axis
    _, kwargs = normalize_function(target, node.args, node.kwargs, normalize_to_only_use_kwargs=True)
    if target in (aten.linear.default, aten.matmul.default):
        if first is not node.args[0] or len(timed_inputs) > 1:
            raise NotStreamable(f"{where}: a matrix product with a tensor along time on its right")
        reads = [ndim - 1]
    elif target in (aten.layer_norm.default, aten.native_layer_norm.default):
        reads = list(range(ndim - len(kwargs["normalized_shape"]), ndim))
    elif target is aten.cat.default:
        reads = [kwargs.get("dim", 0) % ndim]
    elif target in (aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.flip.default):
        dims = kwargs.get("dim", kwargs.get("dims"))
        reads = list(range(ndim)) if not dims else [d % ndim for d in _ints(dims)]
    else:
        reads = [kwargs.get("dim", 0) % ndim]
    if axis in reads:
        raise NotStreamable(f"{where}: reads along time (axis {axis})")


def _out_of_place(gm: fx.GraphModule) -> None:
    """Rewrite ``gm``'s in-place operators (``res += x`` exports as ``aten.add_``) as their out-of-place forms.

    The twin runs an operator on a delayed operand, a view into a kept
    state's buffer, which an in-place write would turn into a scatter in the
    exported graph. Out of place is the same value wherever no node reads the
    mutated tensor after the write; a graph where one does is refused.
    """
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    for node in gm.graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload) or not target._schema.is_mutable:
            continue
        name = target._schema.name.split("::")[-1]
        packet = getattr(aten, name[:-1], None) if name.endswith("_") else None
        functional = getattr(packet, target._overloadname, None) if packet is not None else None
        mutated = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        if functional is None or mutated is None:
            raise NotStreamable(f"node {node.name} ({target}): an in-place operator with no out-of-place form")
        if any(order[user] > order[node] for user in mutated.users if user is not node):
            raise NotStreamable(f"node {node.name} ({target}): writes in place a tensor read again later")
        node.target = functional
    gm.recompile()


def plan_program(gm: fx.GraphModule, frame_input: int, mask_input: int | None = None) -> Plan:
    """Each node's rewrite for stateful streaming along the dynamic axis of input number ``frame_input``
    (``mask_input``: the number of the network's mask input, if any); raises :class:`NotStreamable`.
    In-place operators of ``gm`` are made out-of-place first (:func:`_out_of_place`)."""
    _out_of_place(gm)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    mask = placeholders[mask_input] if mask_input is not None else None
    frames = placeholders[frame_input].meta["val"]
    symbols = [s for s in frames.shape if isinstance(s, torch.SymInt)]
    if len(symbols) != 1:
        raise NotStreamable(f"input '{placeholders[frame_input].name}' must have one dynamic axis, the frames")
    symbol = symbols[0].node.expr
    plan = Plan()
    timing: dict[fx.Node, Timed | None] = {}
    for node in gm.graph.nodes:
        where = f"node {node.name} ({node.target})"
        value = node.meta.get("val")
        if node.op == "placeholder":
            found = _time_axis(value, symbol, f"input {node.name}")
            timing[node] = Timed(found[0], found[1], 0) if found else None
            continue
        if node.op != "call_function":
            timing[node] = None
            continue
        target = node.target
        if target in SKIPPED:
            timing[node] = None
            continue
        inputs = [a for a in _flat_nodes((node.args, node.kwargs)) if isinstance(a, fx.Node)]
        if not isinstance(value, (list, tuple, torch.Tensor)):
            timing[node] = None  # sizes and arithmetic on them: evaluated on the chunk's
            continue
        timed_inputs = [(a, timing[a]) for a in inputs if timing.get(a) is not None]
        if any(_is_symbolic(a.meta.get("val")) for a in inputs) and target not in SAME_STEPS | RESHAPES | SOURCES:
            raise NotStreamable(f"{where}: computes with the sequence's length")
        if target is operator.getitem:
            source, found = timing.get(node.args[0]), _time_axis(value, symbol, where)
            timing[node] = Timed(found[0], found[1], source.delay) if source is not None and found else None
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        outs = [_time_axis(v, symbol, where) for v in values]
        out = next((o for o in outs if o), None)
        if not timed_inputs:
            if out is None:
                timing[node] = None
            elif target in SOURCES or (target in SAME_STEPS | RESHAPES):
                timing[node] = Timed(out[0], out[1], 0)
                if target in (aten.arange.default, aten.arange.start):
                    plan.sources[node] = timing[node]
            else:
                raise NotStreamable(f"{where}: makes a tensor along time from its length")
            continue
        if target in CONVOLUTIONS:
            timing[node] = _plan_convolution(plan, node, timed_inputs[0][1], where, mask)
            continue
        if out is None:
            raise NotStreamable(f"{where}: reduces along time")
        rates = {t.rate for _, t in timed_inputs}
        if target in RESHAPES:
            source, timed = timed_inputs[0]
            before_in = math.prod(int(s) for s in source.meta["val"].shape[: timed.axis])
            before_out = math.prod(int(s) for s in value.shape[: out[0]])
            if before_in != before_out or (timed.delay * out[1]) % timed.rate:
                raise NotStreamable(f"{where}: a reshape that moves steps across time")
            timing[node] = Timed(out[0], out[1], timed.delay * out[1] // timed.rate)
            continue
        pointwise = isinstance(target, torch._ops.OpOverload) and torch.Tag.pointwise in target.tags
        if target in SAME_STEPS:
            (_, timed), = timed_inputs
            if timed.rate != out[1]:
                raise NotStreamable(f"{where}: changes the steps per frame")
            timing[node] = Timed(out[0], out[1], timed.delay)
            continue
        if not (pointwise or target in OVER_CHANNELS or target is aten.where.self):
            raise NotStreamable(f"{where}: mixes steps along time (not covered)")
        if target in OVER_CHANNELS:
            _check_over_channels(node, timed_inputs, where)
        if len(rates) != 1 or out[1] not in rates:
            raise NotStreamable(f"{where}: operands at different steps per frame")
        lag = max(t.delay for _, t in timed_inputs)
        flat = _flat_nodes((node.args, node.kwargs))
        delays = []
        for index, arg in enumerate(flat):
            t = timing.get(arg) if isinstance(arg, fx.Node) else None
            if t is not None and t.delay < lag:
                slot = plan.keep(arg.meta["val"], t.axis, lag - t.delay)
                delays.append((index, slot, t, lag - t.delay))
        if delays:
            plan.actions[node] = Aligned(tuple(delays))
        timing[node] = Timed(out[0], out[1], lag)
    (result,) = [n for n in gm.graph.nodes if n.op == "output"][0].args[0]
    plan.output = timing.get(result)
    if plan.output is None:
        raise NotStreamable("the output has no axis along time")
    if not plan.slots:
        raise NotStreamable("nothing to keep between calls (no convolution wider than one step)")
    return plan


def _positions_valid(x: torch.Tensor, axis: int, first: int, rate: int, start: torch.Tensor, end: torch.Tensor):
    """1 where ``x``'s steps, the first at ``rate * start + first``, fall inside ``[0, rate * end)``; broadcasts to ``x``.

    The steps are counted from ``x`` itself (a cumulative sum of ones), not
    from its length as a number, so a trace of the program keeps them dynamic.
    """
    line = x
    for dim in range(x.dim()):
        if dim != axis:
            line = line.narrow(dim, 0, 1)
    steps = torch.ones_like(line, dtype=torch.int64).cumsum(axis) + (start * rate + first - 1)
    return ((steps >= 0) & (steps < end * rate)).to(x.dtype)


def _crop(x: torch.Tensor, axis: int, first: int, last: int) -> torch.Tensor:
    """``x`` without its first ``first`` and last ``last`` steps along ``axis``.

    A slice counted from both ends, never from the length as a number, so a
    trace of the program keeps it dynamic.
    """
    return x[(slice(None),) * (axis % x.dim()) + (slice(first or None, -last if last else None),)]


class StatefulNetwork(torch.nn.Module):
    """The source program's graph, run on one chunk with its kept states: ``forward(*inputs, start, end, *states)``.

    Returns the output chunk (``rate * n`` steps for ``n`` frames, lagging
    ``plan.output.delay`` steps) and the next states.
    """

    def __init__(self, source: fx.GraphModule, plan: Plan):
        super().__init__()
        self.source = source
        self.plan = plan
        self.inputs = [n for n in source.graph.nodes if n.op == "placeholder"]

    def forward(self, *args):
        """Run one chunk (see the class docstring)."""
        count = len(self.inputs)
        start, end = args[count], args[count + 1]
        states = list(args[count + 2:])
        env: dict[fx.Node, object] = dict(zip(self.inputs, args[:count]))
        result = None
        for node in self.source.graph.nodes:
            if node.op == "get_attr":
                env[node] = operator.attrgetter(node.target)(self.source)
            elif node.op == "call_function":
                env[node] = self._call(node, env, start, end, states)
            elif node.op == "output":
                (result,) = fx.node.map_arg(node.args[0], lambda n: env[n])
        return (result, *states)

    def _call(self, node: fx.Node, env, start, end, states):
        if node.target in SKIPPED:
            return None
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
        action = self.plan.actions.get(node)
        if isinstance(action, Convolution):
            return self._convolve(node, action, args, kwargs, start, end, states)
        if isinstance(action, Aligned):
            flat, spec = torch.utils._pytree.tree_flatten((args, kwargs))
            for index, slot, timed, steps in action.delays:
                joined = torch.cat([states[slot], flat[index]], timed.axis)
                flat[index] = _crop(joined, timed.axis, 0, steps)
                states[slot] = joined.narrow(timed.axis, -steps, steps)
            args, kwargs = torch.utils._pytree.tree_unflatten(flat, spec)
        out = node.target(*args, **kwargs)
        source = self.plan.sources.get(node)
        if source is not None:  # an arange along time: the steps' indices in the sequence
            out = out + (start * source.rate).to(out.dtype).reshape([1] * out.dim())
        return out

    def _convolve(self, node, action: Convolution, args, kwargs, start, end, states):
        _, params = normalize_function(node.target, args, kwargs, normalize_to_only_use_kwargs=True)
        x, timed = params["input"], action.timed
        if action.slot is not None:
            joined = torch.cat([states[action.slot], x], timed.axis)
            states[action.slot] = joined.narrow(timed.axis, -action.kept, action.kept)
        else:
            joined = x
        if not action.masked:
            joined = joined * _positions_valid(joined, timed.axis, -timed.delay - action.kept, timed.rate, start, end)
        p = action.params
        if action.transposed:
            stride = _ints(p.get("stride", 1))[0]
            weight = params["weight"]
            y = F.conv_transpose1d(joined, weight, params.get("bias"), stride=stride, padding=0,
                                   groups=int(p.get("groups", 1)))
            # the chunk's own steps: after the kept steps' outputs, before the last (kernel - stride) tail
            return _crop(y, timed.axis, action.kept * stride, int(weight.shape[-1]) - stride)
        return F.conv1d(joined, params["weight"], params.get("bias"), stride=1, padding=0,
                        dilation=_ints(p.get("dilation", 1))[0], groups=int(p.get("groups", 1)))


def stateful_spec(name: str, spec: NetworkSpec, plan: Plan, file: str) -> NetworkSpec:
    """The derived network's spec: the source's inputs, the chunk's start and end, and one state per kept tensor."""
    dtypes = {torch.float32: "float32", torch.float16: "float16", torch.int64: "int64", torch.bool: "bool"}
    states = {f"state_{i}": TensorSpec(shape=list(s.shape), dtype=dtypes[s.dtype]) for i, s in enumerate(plan.slots)}
    position = TensorSpec(shape=[1], dtype="int64")
    output = next(iter(spec.outputs))
    return NetworkSpec(
        role="stateful",
        file=file,
        inputs={**spec.inputs, START: position, END: position, **states},
        outputs={**spec.outputs, **{f"{n}_next": s for n, s in states.items()}},
        context="unbounded",
        lengths=spec.lengths,
        mask=spec.mask,
        noise=spec.noise,
        states={n: StateSpec(output=f"{n}_next") for n in states},
        stateful=StatefulSpec(of=name, delay=plan.output.delay, output=output, start=START, end=END,
                              derivation=DERIVATION),
    )


def stateful_program(addon_spec, name: str, program: torch.export.ExportedProgram, frame_input: str, file: str):
    """The stateful twin of network ``name`` (:class:`StatefulNetwork` exported) and its spec; or :class:`NotStreamable`."""
    spec = addon_spec.networks[name]
    if spec.batch:
        raise NotStreamable("a batch network (batch: true)")
    gm = program.module()
    plan = plan_for(spec, gm, frame_input)
    twin = stateful_spec(name, spec, plan, file)
    module = StatefulNetwork(gm, plan)
    examples = []
    frames = 8
    for tensor_name, t in twin.inputs.items():
        shape = [frames if isinstance(s, str) else s for s in t.shape]
        if tensor_name in (START, END):
            examples.append(torch.tensor([0 if tensor_name == START else OPEN_END]))
        elif t.dtype == "int64":
            examples.append(torch.full(shape, frames, dtype=torch.int64))
        else:
            examples.append(torch.zeros(shape, dtype=t.torch_dtype) if tensor_name.startswith("state_")
                            else torch.ones(shape, dtype=t.torch_dtype))
    # any chunk of 1 frame or more: the twin has no layer that needs the source's minimum
    dims = {d: torch.export.Dim(d, min=1, max=addon_spec.dims[d].max) for d in addon_spec.dims}
    shapes = tuple({axis: dims[d] for axis, d in t.named_dims} or None for t in twin.inputs.values())
    exported = torch.export.export(module, tuple(examples), dynamic_shapes=(shapes,),
                                   prefer_deferred_runtime_asserts_over_guards=True)
    return exported, twin


def plan_for(spec: NetworkSpec, gm: fx.GraphModule, frame_input: str) -> Plan:
    """:func:`plan_program` for a network of ``spec`` (its module ``gm``) streamed along input ``frame_input``."""
    names = list(spec.inputs)
    return plan_program(gm, names.index(frame_input), names.index(spec.mask) if spec.mask else None)


def twin_name(name: str) -> str:
    """The derived network's name in the compiled addon."""
    return f"{name}_stateful"


def frame_input(addon_spec, name: str) -> str:
    """The vocoder's one frame input (its data inputs but the speaker embedding); :class:`NotStreamable` if not one."""
    speaker = addon_spec.speaker.input if addon_spec.speaker is not None else None
    frames = [n for n in addon_spec.networks[name].data_inputs if n != speaker]
    if len(frames) != 1:
        raise NotStreamable(f"takes {len(frames)} frame inputs, not one")
    return frames[0]


def candidates(addon_spec) -> list[str]:
    """Vocoder networks with bounded context whose twin's name is free: those compile tries to derive one for."""
    return [n for n, s in addon_spec.networks.items()
            if s.role == "vocoder" and s.bounded and twin_name(n) not in addon_spec.networks]


def derivations(folder) -> dict[str, int]:
    """The ``stateful.derivation`` of each twin in the ``addon.yaml`` a previous compile wrote to ``folder``
    (none when there is no such file, or it does not read)."""
    try:
        networks = yaml.safe_load((folder / ADDON_FILE).read_text())["networks"]
        return {name: int(entry["stateful"]["derivation"]) for name, entry in networks.items()
                if isinstance(entry, dict) and isinstance(entry.get("stateful"), dict) and "derivation" in entry["stateful"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return {}


def without_twins(addon_spec):
    """The spec without the stateful twins a previous compile derived (compiling a compiled addon derives them
    afresh from their source networks, so none outlives a change of its source)."""
    twins = [n for n, s in addon_spec.networks.items() if s.stateful]
    if not twins:
        return addon_spec
    data = addon_spec.to_dict()
    for name in twins:
        del data["networks"][name]
    return parse_spec(data, "addon.yaml without its derived stateful networks")
