"""Recurrent layers as custom operators, so exported programs keep a dynamic time axis.

``torch.export`` unrolls ``nn.LSTM``/``nn.GRU`` over the example's time steps,
which pins the sequence dim. This module registers two operators,
``ttsstack::lstm`` and ``ttsstack::gru``, each with a fake kernel that only
gives the output shapes, so a program that calls them keeps the dim symbolic;
every backend lowers them (TorchScript: their ATen kernels, ``ATEN_KERNELS``,
see :mod:`ttsstack.backends.lowering`; ONNX: the ``LSTM``/``GRU`` operators,
see :mod:`ttsstack.backends.onnx_translations`).

Authoring side:

- :func:`recurrent_as_ops` stands every ``nn.LSTM``/``nn.GRU`` of a module in
  with the operator for the duration of an export, and restores the modules.
- :func:`run_recurrent` runs a layer on a padded batch with true ``lengths``
  (a bidirectional layer's backward direction then starts at the last real
  step, like a packed sequence); in eager mode it is plain PyTorch, under
  export it emits the operator.

This module is part of the addon format (the programs of an addon may contain
these operators) and imports nothing else of ttsstack; importing it registers
the operators, which loading a program that uses them requires.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

RECURRENT_TYPES = (nn.LSTM, nn.GRU)


def recurrent_reference(
    mode: str,
    x: Tensor,
    lengths: Optional[Tensor],
    hx: list[Tensor],
    weights: list[Tensor],
    num_layers: int,
    bidirectional: bool,
    batch_first: bool,
    dropout: float = 0.0,
    train: bool = False,
) -> tuple[Tensor, list[Tensor]]:
    """One ``nn.LSTM``/``nn.GRU`` call in ATen ops: ``(output, [h_n, c_n])`` (``[h_n]`` for a GRU).

    ``mode`` is ``"lstm"`` or ``"gru"``; ``weights`` are the layer's flat
    weights in ``_flat_weights_names`` order; ``hx`` holds ``h_0`` (and ``c_0``).
    With ``lengths`` the batch runs as a packed sequence: steps past a
    sequence's length are zeros in the output and ``h_n``/``c_n`` are taken at
    its last real step. Traced by TorchScript, this records the ATen RNN
    kernels with the time axis left dynamic.
    """
    per_direction = len(weights) // (num_layers * (2 if bidirectional else 1))
    has_bias = per_direction == 4
    kernel = torch._VF.lstm if mode == "lstm" else torch._VF.gru
    batch_axis = 0 if batch_first else 1
    # A zero initial state exported as ``new_zeros(..., batch, ...)`` is traced at the example's batch;
    # broadcast along the batch axis, it fits any batch.
    hx = [h.expand(h.shape[0], x.size(batch_axis), h.shape[2]) for h in hx]
    state = hx if mode == "lstm" else hx[0]
    if lengths is None:
        out, *new = kernel(x, state, weights, has_bias, num_layers, dropout, train, bidirectional, batch_first)
        return out, list(new)
    # Sorted by length here rather than by ``enforce_sorted=False``, whose inverse permutation is an
    # ``arange`` of the batch size: a trace would fix the batch (a ``batch: true`` network takes any).
    order = torch.argsort(lengths, descending=True, stable=True).to(x.device)
    unorder = torch.argsort(order)
    packed = pack_padded_sequence(
        x.index_select(batch_axis, order), lengths.index_select(0, order.to(lengths.device)).cpu(),
        batch_first=batch_first, enforce_sorted=True,
    )
    state = [h.index_select(1, order) for h in hx] if mode == "lstm" else hx[0].index_select(1, order)
    data, *new = kernel(packed.data, packed.batch_sizes, state, weights, has_bias, num_layers, dropout, train, bidirectional)
    total = x.size(1 - batch_axis)  # the time axis
    out, _ = pad_packed_sequence(PackedSequence(data, packed.batch_sizes), batch_first, total_length=total)
    return out.index_select(batch_axis, unorder), [h.index_select(1, unorder) for h in new]


def _output_like(x: Tensor, h0: Tensor, weights: list[Tensor], bidirectional: bool, batch_first: bool) -> Tensor:
    hidden = weights[1].shape[1]  # weight_hh_l0: [gates * hidden, hidden]
    time, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    width = hidden * (2 if bidirectional else 1)
    return x.new_empty((batch, time, width) if batch_first else (time, batch, width))


def lstm(
    x: Tensor, lengths: Optional[Tensor], h0: Tensor, c0: Tensor, weights: list[Tensor],
    num_layers: int, bidirectional: bool, batch_first: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``nn.LSTM`` in ATen ops: ``(output, h_n, c_n)``; the kernel of ``ttsstack::lstm``, see :func:`recurrent_reference`."""
    out, (h, c) = recurrent_reference("lstm", x, lengths, [h0, c0], weights, num_layers, bidirectional, batch_first)
    return out, h, c


def gru(
    x: Tensor, lengths: Optional[Tensor], h0: Tensor, weights: list[Tensor],
    num_layers: int, bidirectional: bool, batch_first: bool,
) -> tuple[Tensor, Tensor]:
    """``nn.GRU`` in ATen ops: ``(output, h_n)``; the kernel of ``ttsstack::gru``, see :func:`recurrent_reference`."""
    out, (h,) = recurrent_reference("gru", x, lengths, [h0], weights, num_layers, bidirectional, batch_first)
    return out, h


LSTM_OP = torch.library.custom_op("ttsstack::lstm", lstm, mutates_args=())
GRU_OP = torch.library.custom_op("ttsstack::gru", gru, mutates_args=())


@LSTM_OP.register_fake
def _lstm_fake(x, lengths, h0, c0, weights, num_layers, bidirectional, batch_first):
    return _output_like(x, h0, weights, bidirectional, batch_first), h0.new_empty(h0.shape), c0.new_empty(c0.shape)


@GRU_OP.register_fake
def _gru_fake(x, lengths, h0, weights, num_layers, bidirectional, batch_first):
    return _output_like(x, h0, weights, bidirectional, batch_first), h0.new_empty(h0.shape)


# What each operator means in plain ATen: the TorchScript (and Neuron trace) lowering.
ATEN_KERNELS = {torch.ops.ttsstack.lstm.default: lstm, torch.ops.ttsstack.gru.default: gru}


def run_recurrent(
    module: nn.LSTM | nn.GRU,
    x: Tensor,
    lengths: Tensor | None = None,
    hx: Tensor | tuple[Tensor, Tensor] | None = None,
):
    """Call ``module`` on a padded batch, honouring true ``lengths`` (``[batch]`` int64) when given.

    Returns what ``module(x, hx)`` returns (``(output, (h_n, c_n))`` for an
    LSTM, ``(output, h_n)`` for a GRU), for a padded batch as for the packed
    one: steps past a length are zeros, final states come from the last real
    step. Unbatched ``[T, C]`` input works as with ``nn.LSTM``. Under
    ``torch.export`` it emits ``ttsstack::lstm``/``ttsstack::gru``; otherwise it
    runs the same ATen kernels directly (dropout and autograd as usual).
    """
    if not isinstance(module, RECURRENT_TYPES) or getattr(module, "proj_size", 0):
        raise TypeError(f"run_recurrent: supports nn.LSTM and nn.GRU without proj_size, got {module!r}")
    is_lstm = isinstance(module, nn.LSTM)
    unbatched = x.dim() == 2
    if unbatched:
        x = x.unsqueeze(0 if module.batch_first else 1)
    if hx is None:
        zeros = _zero_states(x, module.num_layers * (2 if module.bidirectional else 1), module.hidden_size, module.batch_first)
        states = [zeros, zeros] if is_lstm else [zeros]
    else:
        states = list(hx) if is_lstm else [hx]
        if unbatched:
            states = [h.unsqueeze(1) for h in states]
    weights = [getattr(module, name) for name in module._flat_weights_names]
    if torch.compiler.is_exporting():
        op = torch.ops.ttsstack.lstm if is_lstm else torch.ops.ttsstack.gru
        out, *new = op(x, lengths, *states, weights, module.num_layers, module.bidirectional, module.batch_first)
    else:
        out, new = recurrent_reference(
            "lstm" if is_lstm else "gru", x, lengths, states, weights, module.num_layers, module.bidirectional,
            module.batch_first, module.dropout, module.training,
        )
    if unbatched:
        out = out.squeeze(0 if module.batch_first else 1)
        new = [h.squeeze(1) for h in new]
    return (out, tuple(new)) if is_lstm else (out, new[0])


def _zero_states(x: Tensor, layers: int, hidden: int, batch_first: bool) -> Tensor:
    """Zero initial states ``[layers, batch, hidden]`` for ``x``, their batch size taken from ``x`` as a tensor.

    ``x.new_zeros(layers, batch, hidden)`` would put the batch size in the
    exported graph as an int, which a TorchScript trace records as a
    constant: a batch network traced at 2 rows would then take only 2. A
    zero column of ``x`` expanded to the states' shape keeps it dynamic.
    """
    column = torch.zeros_like(x.select(1 if batch_first else 0, 0)[:, :1])  # [batch, 1]
    return column.unsqueeze(0).expand(layers, -1, hidden).contiguous()


def _stand_in(module: nn.LSTM | nn.GRU):
    def forward(input, hx=None):
        if isinstance(input, PackedSequence):
            raise TypeError(
                f"{type(module).__name__}: a PackedSequence cannot be exported; pass the padded tensor and its "
                "lengths to ttsstack.recurrent.run_recurrent(module, x, lengths) instead"
            )
        return run_recurrent(module, input, hx=hx)

    return forward


@contextlib.contextmanager
def recurrent_as_ops(root: nn.Module) -> Iterator[list[str]]:
    """Within the block, every ``nn.LSTM``/``nn.GRU`` under ``root`` calls the ttsstack operator.

    Yields the names of the modules stood in for. Each module's ``forward``
    is shadowed by an instance attribute, and on exit, whatever happened
    inside, the modules are left exactly as they were.
    """
    patched = [(name, m, m.__dict__.get("forward")) for name, m in root.named_modules() if isinstance(m, RECURRENT_TYPES)]
    try:
        for _, module, _ in patched:
            module.forward = _stand_in(module)
        yield [name for name, _, _ in patched]
    finally:
        for _, module, shadowed in patched:
            if shadowed is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = shadowed
