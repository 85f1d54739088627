"""Reduced precision for a traced torch graph (the ``cpu`` backend): bf16/fp16 casts, int8 dynamic quantization.

Both rewrite ``ExportedProgram.module()`` (a ``torch.fx.GraphModule``) before
the trace; the artifact's inputs and outputs stay float32, so the runtime
contract is the same at every precision.

- ``bf16``/``fp16`` (:func:`cast_graph`): weights and buffers cast to the
  dtype, floating inputs cast in and floating outputs cast back, and every
  float32 dtype the graph names (an ``x.to(torch.float32)``, a metadata
  assert) renamed to the dtype, so no op mixes the two.
- ``int8`` (:func:`quantize_graph`): PyTorch's dynamic quantization
  (``torch.ao.nn.quantized.dynamic.Linear``, fbgemm kernels): weights int8
  per output channel, each call's activations quantized per tensor on the
  fly. Every ``aten.linear`` and ``aten.lstm_cell`` on constant weights is
  replaced (an LSTM cell by one quantized product of ``[x, h]`` with its
  stacked gate weights, then the cell's elementwise update in fp32);
  ``aten.conv1d`` (stride 1, no groups) by im2col (``unfold``) and the same
  quantized product. Anything else (a whole-sequence ``aten.lstm``,
  attention's products of activations) stays fp32; :func:`quantize_graph`
  says what it replaced and what it kept, recorded in the manifest.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

import torch
from torch import nn

from ..recurrent import ATEN_KERNELS

aten = torch.ops.aten

CAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class CastIO(nn.Module):
    """Runs ``graph`` in a lower float dtype with float32 inputs and outputs (the runtime contract)."""

    def __init__(self, graph: torch.fx.GraphModule, dtype: torch.dtype):
        super().__init__()
        self.graph_module = graph
        self.dtype = dtype

    def forward(self, *args):
        out = self.graph_module(*(a.to(self.dtype) if a.is_floating_point() else a for a in args))
        outputs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
        outputs = tuple(o.to(torch.float32) if o.is_floating_point() else o for o in outputs)
        return outputs[0] if isinstance(out, torch.Tensor) else outputs


def _renamed(value, dtype: torch.dtype):
    """``value`` with torch.float32 replaced by ``dtype``, inside lists and tuples too, and a float literal
    beyond the dtype's range (a ``masked_fill(-1e9)``) clamped to its largest finite value."""
    if value is torch.float32:
        return dtype
    if isinstance(value, float) and abs(value) > torch.finfo(dtype).max:
        return torch.finfo(dtype).max if value > 0 else torch.finfo(dtype).min
    if isinstance(value, (list, tuple)):
        return type(value)(_renamed(v, dtype) for v in value)
    return value


def cast_graph(module: torch.fx.GraphModule, precision: str) -> nn.Module:
    """A copy of ``module`` computing in bf16 or fp16 (see the module docstring); float32 in and out.

    Every float tensor the graph reads (parameters, buffers and lifted
    constants) is cast; the original module is left as it was.
    """
    dtype = CAST_DTYPES[precision]
    module = copy.deepcopy(module)
    for node in module.graph.nodes:
        if node.op == "call_function":
            node.args = _renamed(node.args, dtype)
            node.kwargs = {k: _renamed(v, dtype) for k, v in node.kwargs.items()}
        elif node.op == "get_attr":
            owner, _, name = node.target.rpartition(".")
            holder = module.get_submodule(owner) if owner else module
            value = getattr(holder, name)
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not isinstance(value, nn.Parameter):
                cast = value.to(dtype)
                if name in holder._buffers:
                    holder._buffers[name] = cast
                else:
                    setattr(holder, name, cast)
    module.recompile()
    return CastIO(module.to(dtype), dtype)


def _dynamic_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A ``torch.ao`` dynamically quantized linear layer (int8 weights per output channel) of these weights."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    plain = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if bias is not None:
            plain.bias.copy_(bias)
    plain.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        return DynamicLinear.from_float(plain)


class Int8LSTMCell(nn.Module):
    """``aten.lstm_cell`` with one quantized product of ``[x, h]`` and the stacked gate weights."""

    def __init__(self, w_ih, w_hh, b_ih, b_hh):
        super().__init__()
        bias = None if b_ih is None and b_hh is None else sum(b for b in (b_ih, b_hh) if b is not None)
        self.gates = _dynamic_linear(torch.cat([w_ih, w_hh], dim=1), bias)

    def forward(self, x, h, c):
        i, f, g, o = self.gates(torch.cat([x, h], dim=-1)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class Int8Conv1d(nn.Module):
    """``aten.conv1d`` (stride 1, dilation 1, one group) as im2col and a quantized product."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, padding: int):
        super().__init__()
        self.kernel = weight.shape[2]
        self.padding = padding
        self.linear = _dynamic_linear(weight.flatten(1), bias)

    def forward(self, x):  # [B, C, T] -> [B, out, T']
        columns = nn.functional.pad(x, (self.padding, self.padding)).unfold(2, self.kernel, 1)  # [B, C, T', k]
        return self.linear(columns.transpose(1, 2).flatten(2)).transpose(1, 2)


def _constant(module: torch.fx.GraphModule, node) -> torch.Tensor | None:
    """The tensor a ``get_attr`` node reads (a weight), None for None, or raise LookupError for an activation."""
    if node is None:
        return None
    if isinstance(node, torch.fx.Node) and node.op == "get_attr":
        owner = module
        for part in node.target.split("."):
            owner = getattr(owner, part)
        return owner.detach()
    raise LookupError(node)


def _conv_padding(args) -> int | None:
    """The symmetric padding of a conv1d call it can replace (stride 1, dilation 1, one group), else None."""
    stride, padding, dilation, groups = (list(args[3:]) + [[1], [0], [1], 1][len(args) - 3:])[:4]
    if list(stride) != [1] or list(dilation) != [1] or groups != 1 or isinstance(padding, str):
        return None
    return int(padding[0])


def _replacement(module: torch.fx.GraphModule, node) -> tuple[nn.Module, tuple] | None:
    """The quantized module for one call and the arguments to call it with, or None to keep it fp32."""
    try:
        if node.target is aten.linear.default:
            x, weight, *bias = node.args
            return _dynamic_linear(_constant(module, weight), _constant(module, bias[0] if bias else None)), (x,)
        if node.target is aten.lstm_cell.default:
            x, (h, c), w_ih, w_hh, *biases = node.args
            b_ih, b_hh = (biases + [None, None])[:2]
            weights = [_constant(module, n) for n in (w_ih, w_hh, b_ih, b_hh)]
            return Int8LSTMCell(*weights), (x, h, c)
        if node.target is aten.conv1d.default and (padding := _conv_padding(node.args)) is not None:
            x, weight, *bias = node.args[:3]
            return Int8Conv1d(_constant(module, weight), _constant(module, bias[0] if bias else None), padding), (x,)
    except LookupError:  # weights computed from activations: not a layer
        return None
    return None


def quantize_graph(module: torch.fx.GraphModule) -> tuple[torch.fx.GraphModule, dict[str, str]]:
    """``module`` with its layers dynamically quantized to int8 (see the module docstring), and what changed.

    The second value says which ops were quantized and which layers kept
    fp32 (``{"int8": "linear x7, lstm_cell x2", "kept fp32": "lstm x1"}``).
    """
    done, kept = Counter(), Counter()
    layers = (aten.linear, aten.lstm_cell, aten.conv1d, aten.conv2d, aten.lstm, aten.gru, aten.gru_cell, aten.rnn_tanh)
    recurrent = {kernel: op.__name__.split(".")[0] for op, kernel in ATEN_KERNELS.items()}  # lowered ttsstack::lstm/gru
    for index, node in enumerate(list(module.graph.nodes)):
        if node.op != "call_function":
            continue
        if node.target in recurrent:
            kept[recurrent[node.target]] += 1
            continue
        if getattr(node.target, "overloadpacket", None) not in layers:
            continue
        op = node.target.overloadpacket.__name__
        found = _replacement(module, node)
        if found is None:
            kept[op] += 1
            continue
        layer, args = found
        name = f"int8_{index}"
        module.add_submodule(name, layer)
        with module.graph.inserting_before(node):
            call = module.graph.call_module(name, args)
        node.replace_all_uses_with(call)
        module.graph.erase_node(node)
        done[op] += 1
    module.graph.eliminate_dead_code()
    module.recompile()
    describe = lambda counts: ", ".join(f"{op} x{n}" for op, n in sorted(counts.items())) or "none"  # noqa: E731
    return module, {"int8": describe(done), "kept fp32": describe(kept)}
