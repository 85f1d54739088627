"""ONNX translations of ttsstack's operators, for ``torch.onnx.export(..., dynamo=True)``.

``ttsstack::lstm``/``ttsstack::gru`` (see :mod:`ttsstack.recurrent`) become the
ONNX ``LSTM``/``GRU`` operators, one per layer, with the true lengths as
``sequence_lens`` (padded steps give zeros and the backward direction starts
at the last real step, as with PyTorch's packed sequences) and the time axis
left dynamic. Pass :func:`custom_translation_table` to the exporter.
Requires ``onnxscript`` (the ``onnx`` extra).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from onnxscript import opset18 as op
from onnxscript.onnx_types import TensorType

# PyTorch stacks LSTM gate rows as (i, f, g, o) and GRU rows as (r, z, n); ONNX wants (i, o, f, c) and (z, r, h).
LSTM_GATES = (0, 3, 1, 2)
GRU_GATES = (1, 0, 2)
INT32 = 6  # onnx.TensorProto.INT32


def _reorder(tensor, gates: tuple[int, ...]):
    """Rows of ``tensor`` regrouped gate by gate in ONNX order (constant-folded: weights are initializers)."""
    size = tensor.shape[0] // len(gates)
    return op.Concat(*(op.Slice(tensor, [g * size], [(g + 1) * size], axes=[0]) for g in gates), axis=0)


def _stack(parts: list):
    return parts[0] if len(parts) == 1 else op.Concat(*parts, axis=0)


def _layer_weights(weights: Sequence, layer: int, num_layers: int, directions: int, gates: tuple[int, ...]):
    """ONNX ``W``, ``R``, ``B`` of one layer from PyTorch's flat weights (``w_ih, w_hh[, b_ih, b_hh]`` per direction)."""
    per_direction = len(weights) // (num_layers * directions)
    w, r, b = [], [], []
    for d in range(directions):
        start = (layer * directions + d) * per_direction
        params = weights[start : start + per_direction]
        w.append(op.Unsqueeze(_reorder(params[0], gates), [0]))
        r.append(op.Unsqueeze(_reorder(params[1], gates), [0]))
        if per_direction == 4:
            b.append(op.Unsqueeze(op.Concat(_reorder(params[2], gates), _reorder(params[3], gates), axis=0), [0]))
    return _stack(w), _stack(r), (_stack(b) if b else None)


def _recurrent(kind: str, x, lengths, states: list, weights: Sequence, num_layers: int, bidirectional: bool, batch_first: bool):
    """Layers of ONNX ``LSTM``/``GRU``; returns ``(output, h_n[, c_n])`` shaped as PyTorch's."""
    directions = 2 if bidirectional else 1
    rnn, gates, extra = (op.LSTM, LSTM_GATES, {}) if kind == "lstm" else (op.GRU, GRU_GATES, {"linear_before_reset": 1})
    seq = op.Transpose(x, perm=[1, 0, 2]) if batch_first else x  # ONNX layout 0: [T, B, C]
    seq_lens = op.Cast(lengths, to=INT32) if lengths is not None else None
    finals: list[list] = [[] for _ in states]
    for layer in range(num_layers):
        w, r, b = _layer_weights(weights, layer, num_layers, directions, gates)
        init = {
            name: op.Slice(state, [layer * directions], [(layer + 1) * directions], axes=[0])
            for name, state in zip(("initial_h", "initial_c"), states)
        }
        y, *last = rnn(
            seq, w, r, B=b, sequence_lens=seq_lens, **init, hidden_size=weights[1].shape[1],
            direction="bidirectional" if bidirectional else "forward", **extra,
        )
        for collected, state in zip(finals, last):
            collected.append(state)
        seq = op.Reshape(op.Transpose(y, perm=[0, 2, 1, 3]), op.Constant(value_ints=[0, 0, -1]))  # [T, B, D*H]
    out = op.Transpose(seq, perm=[1, 0, 2]) if batch_first else seq
    return (out, *(_stack(c) for c in finals))


def lstm(
    x: TensorType, lengths: Optional[TensorType], h0: TensorType, c0: TensorType, weights: Sequence[TensorType],
    num_layers: int, bidirectional: bool, batch_first: bool,
):
    """``ttsstack::lstm`` as ONNX ``LSTM`` layers."""
    return _recurrent("lstm", x, lengths, [h0, c0], weights, num_layers, bidirectional, batch_first)


def gru(
    x: TensorType, lengths: Optional[TensorType], h0: TensorType, weights: Sequence[TensorType],
    num_layers: int, bidirectional: bool, batch_first: bool,
):
    """``ttsstack::gru`` as ONNX ``GRU`` layers (``linear_before_reset``, as PyTorch computes it)."""
    return _recurrent("gru", x, lengths, [h0], weights, num_layers, bidirectional, batch_first)


def mul_scalar_complex(self: TensorType, other: complex) -> TensorType:
    """``aten.mul.Scalar`` of a complex tensor by a Python number (Vocos's ``x + 1j * y``).

    The exporter carries a complex tensor as a real one with its real and
    imaginary parts on a last axis of 2; torchlib has complex variants of
    ``mul.Tensor``, ``add.Tensor`` and ``_fft_c2r`` but none of ``mul.Scalar``.
    """
    other = complex(other)
    real = op.Slice(self, [0], [1], axes=[-1])
    imag = op.Slice(self, [1], [2], axes=[-1])
    a = op.CastLike(op.Constant(value_float=other.real), self)
    b = op.CastLike(op.Constant(value_float=other.imag), self)
    return op.Concat(op.Sub(op.Mul(real, a), op.Mul(imag, b)), op.Add(op.Mul(real, b), op.Mul(imag, a)), axis=-1)


def complex_translations() -> dict[Callable, Callable]:
    """Translations of ATen operators on complex tensors that torchlib lacks, registered with ``is_complex=True``."""
    return {torch.ops.aten.mul.Scalar: mul_scalar_complex}


def custom_translation_table() -> dict[Callable, Callable]:
    """The ``custom_translation_table`` argument of ``torch.onnx.export(..., dynamo=True)``."""
    return {torch.ops.ttsstack.lstm.default: lstm, torch.ops.ttsstack.gru.default: gru}
