"""Recurrent layers as ttsstack operators: exact against nn.LSTM/nn.GRU, dynamic time axis, lowered per backend."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ttsstack.backends.lowering import lower_to_aten
from ttsstack.recurrent import recurrent_as_ops, run_recurrent
from ttsstack.tolerances import ONNX_CPU

LAYERS = [
    pytest.param(nn.LSTM, False, id="lstm"),
    pytest.param(nn.LSTM, True, id="bilstm"),
    pytest.param(nn.GRU, False, id="gru"),
    pytest.param(nn.GRU, True, id="bigru"),
]
BIDIRECTIONAL = [p for p in LAYERS if p.values[1]]


class Runs(nn.Module):
    """A recurrent layer over a padded batch with true lengths, returning the output and h_n."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, lengths):
        out, state = run_recurrent(self.layer, x, lengths)
        return out, state[0] if isinstance(state, tuple) else state


def _layer(cls, bidirectional, batch_first=True):
    torch.manual_seed(0)
    return cls(5, 4, num_layers=2, bidirectional=bidirectional, batch_first=batch_first).eval()


def _packed_reference(layer, x, lengths):
    """What nn.LSTM/nn.GRU give for the packed batch, padded back to x's length."""
    out, state = layer(pack_padded_sequence(x, lengths, batch_first=layer.batch_first, enforce_sorted=False))
    out, _ = pad_packed_sequence(out, batch_first=layer.batch_first, total_length=x.shape[1 if layer.batch_first else 0])
    return out, state[0] if isinstance(state, tuple) else state


def _export(layer, time=9):
    x = torch.randn(2, time, 5)
    dim = torch.export.Dim("T", min=1, max=512)
    return torch.export.export(Runs(layer), (x, torch.tensor([time, 3])), dynamic_shapes=({1: dim}, {}))


@pytest.mark.parametrize("cls, bidirectional", LAYERS)
@pytest.mark.parametrize("batch_first", [True, False])
def test_operator_equals_the_module_exactly(cls, bidirectional, batch_first):
    layer = _layer(cls, bidirectional, batch_first)
    x = torch.randn(2, 11, 5) if batch_first else torch.randn(11, 2, 5)
    weights = [getattr(layer, n) for n in layer._flat_weights_names]
    zeros = torch.zeros(4 if bidirectional else 2, 2, 4)
    op = torch.ops.ttsstack.lstm if cls is nn.LSTM else torch.ops.ttsstack.gru
    states = [zeros, zeros] if cls is nn.LSTM else [zeros]
    with torch.inference_mode():
        want_out, want_state = layer(x)
        got_out, *got_state = op(x, None, *states, weights, 2, bidirectional, batch_first)
        want_state = list(want_state) if cls is nn.LSTM else [want_state]
        assert torch.equal(got_out, want_out)
        assert all(torch.equal(g, w) for g, w in zip(got_state, want_state))
        # with lengths: the packed-sequence result (zeros past a length, states at the last real step)
        lengths = torch.tensor([11, 6])
        padded_out, padded_h = _packed_reference(layer, x, lengths)
        got_out, got_h = op(x, lengths, *states, weights, 2, bidirectional, batch_first)[:2]
        assert torch.equal(got_out, padded_out) and torch.equal(got_h, padded_h)


@pytest.mark.parametrize("cls, bidirectional", BIDIRECTIONAL)
def test_exported_program_keeps_time_dynamic_and_honours_lengths(cls, bidirectional):
    layer = _layer(cls, bidirectional)
    program = _export(layer)
    assert any("ttsstack" in str(n.target) for n in program.graph.nodes)
    run = program.module()
    for time, lengths in [(9, [9, 3]), (40, [40, 17]), (1, [1, 1])]:
        x = torch.randn(2, time, 5)
        with torch.inference_mode():
            got = run(x, torch.tensor(lengths))
            want = _packed_reference(layer, x, torch.tensor(lengths))
        assert all(torch.equal(g, w) for g, w in zip(got, want)), (time, lengths)


def test_backward_direction_starts_at_the_last_real_step():
    layer = _layer(nn.LSTM, True)
    x = torch.randn(1, 6, 5)
    padded = torch.cat([x, torch.randn(1, 4, 5)], dim=1)  # garbage padding after the real steps
    with torch.inference_mode():
        alone, _ = run_recurrent(layer, x)
        out, _ = run_recurrent(layer, padded, torch.tensor([6]))
    assert torch.equal(out[:, :6], alone)
    assert torch.equal(out[:, 6:], torch.zeros_like(out[:, 6:]))


def test_stand_in_is_restored_even_when_export_fails():
    model = nn.Sequential(nn.LSTM(5, 4, batch_first=True))
    layer = model[0]
    with pytest.raises(RuntimeError, match="boom"):
        with recurrent_as_ops(model) as names:
            assert names == ["0"] and "forward" in layer.__dict__
            raise RuntimeError("boom")
    assert "forward" not in layer.__dict__
    assert type(layer).forward is nn.LSTM.forward


def test_plain_module_calls_export_through_the_stand_in():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = _layer(nn.GRU, True)

        def forward(self, x):
            return self.rnn(x)[0]

    model = Plain().eval()
    with recurrent_as_ops(model):
        program = torch.export.export(model, (torch.randn(2, 7, 5),), dynamic_shapes=({1: torch.export.Dim("T", max=99)},))
    x = torch.randn(2, 30, 5)
    with torch.inference_mode():
        assert torch.equal(program.module()(x), model(x))


def test_packed_sequence_under_export_names_the_fix():
    layer = _layer(nn.LSTM, False)
    packed = pack_padded_sequence(torch.randn(1, 4, 5), torch.tensor([4]), batch_first=True)
    with recurrent_as_ops(layer), pytest.raises(TypeError, match="run_recurrent"):
        layer(packed)


@pytest.mark.parametrize("cls, bidirectional", BIDIRECTIONAL)
def test_torchscript_lowering_runs_aten_kernels_at_any_length(cls, bidirectional):
    layer = _layer(cls, bidirectional)
    module = lower_to_aten(_export(layer).module())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (torch.randn(2, 23, 5), torch.tensor([23, 23])), check_trace=False, strict=False)
    graph = str(traced.graph)
    assert f"aten::{cls.__name__.lower()}" in graph and "ttsstack::" not in graph
    for time, lengths in [(5, [5, 2]), (61, [61, 30])]:
        x = torch.randn(2, time, 5)
        with torch.inference_mode():
            got, want = traced(x, torch.tensor(lengths)), _packed_reference(layer, x, torch.tensor(lengths))
        assert all(torch.equal(g, w) for g, w in zip(got, want)), (time, lengths)


@pytest.mark.parametrize("cls, batch_first", [(nn.LSTM, True), (nn.GRU, False)], ids=["bilstm", "bigru-time-first"])
def test_torchscript_lowering_traced_at_batch_1_runs_any_batch(cls, batch_first):
    """A ``batch: true`` network is traced at batch 1 and run on batches of streams: neither the zero initial
    state nor the length sort may keep the traced batch."""
    layer = _layer(cls, True, batch_first)
    batch_axis = 0 if batch_first else 1
    shape = lambda batch: (batch, 9, 5) if batch_first else (9, batch, 5)  # noqa: E731
    batch, dim = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("T", min=1, max=512)
    program = torch.export.export(
        Runs(layer), (torch.randn(shape(2)), torch.tensor([9, 3])),
        dynamic_shapes=({batch_axis: batch, 1 - batch_axis: dim}, {0: batch}),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lower_to_aten(program.module()), (torch.randn(shape(1)), torch.tensor([9])),
                                 check_trace=False, strict=False)
    lengths = torch.tensor([4, 9, 1])
    x = torch.randn(shape(3))
    with torch.inference_mode():
        got, want = traced(x, lengths), _packed_reference(layer, x, lengths)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


class Stacked(nn.Module):
    """A bidirectional LSTM into a GRU, both honouring the lengths: one ONNX export covers both translations."""

    def __init__(self):
        super().__init__()
        self.lstm, self.gru = _layer(nn.LSTM, True), nn.GRU(8, 3, batch_first=True)

    def forward(self, x, lengths):
        out, (h, c) = run_recurrent(self.lstm, x, lengths)
        out, g = run_recurrent(self.gru, out, lengths)
        return out, h, c, g


def test_onnx_translation_matches_with_dynamic_time():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from ttsstack.backends.onnx_translations import custom_translation_table

    model = Stacked().eval()
    args = (torch.randn(2, 9, 5), torch.tensor([9, 3]))
    program = torch.export.export(model, args, dynamic_shapes=({1: torch.export.Dim("T", max=512)}, {}))
    onnx_program = torch.onnx.export(
        program, args, dynamo=True, custom_translation_table=custom_translation_table(), verbose=False
    )
    assert {"LSTM", "GRU"} <= {n.op_type for n in onnx_program.model_proto.graph.node}
    session = ort.InferenceSession(onnx_program.model_proto.SerializeToString())
    names = [i.name for i in session.get_inputs()]
    for time, lengths in [(9, [9, 3]), (33, [33, 20])]:
        x = torch.randn(2, time, 5)
        got = session.run(None, dict(zip(names, (x.numpy(), torch.tensor(lengths).numpy()))))
        with torch.inference_mode():
            want = model(x, torch.tensor(lengths))
        for g, w in zip(got, want):
            assert ONNX_CPU.passes((torch.from_numpy(g) - w).abs().max().item(), w.abs().max().item())
