"""``ttsstack compile --precision``: refusals, the manifest and cache key, int8/fp16 artifacts within their tolerance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttsstack.backends.base import BackendError
from ttsstack.backends.torch_precision import cast_graph, quantize_graph
from ttsstack.cli import main
from ttsstack.compiler import compile_addon
from ttsstack.compiler.manifest import read_manifest
from ttsstack.parity import check_parity
from ttsstack.tolerances import PRECISION_TOLERANCES, TORCHSCRIPT

TEXTS = ("Hi.", "The quick brown fox jumps over the lazy dog.")


@pytest.mark.parametrize(("backend", "precision"), [("onnx", "bf16"), ("eager", "int8"), ("neuron", "int8")])
def test_a_precision_a_backend_lacks_is_refused_before_any_work(tiny_addon, tmp_path, backend, precision):
    out = tmp_path / "out"
    with pytest.raises(BackendError, match=rf"backend '{backend}' cannot compile at precision '{precision}'; it offers: fp32"):
        compile_addon(tiny_addon, out, [backend], progress=False, precision=precision)
    assert not (out / "manifest.yaml").exists()


def test_the_cli_refuses_an_unknown_or_unoffered_precision(tiny_addon, tmp_path, capsys):
    assert main(["compile", str(tiny_addon), "-o", str(tmp_path / "a"), "--backend", "onnx", "--precision", "bf16", "-q"]) == 2
    assert "backend 'onnx' cannot compile at precision 'bf16'; it offers: fp32, fp16, int8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compile", str(tiny_addon), "-o", str(tmp_path / "b"), "--precision", "int4"])
    assert "argument --precision: invalid choice: 'int4'" in capsys.readouterr().err


def test_int8_on_cpu_is_recorded_keyed_apart_and_within_its_tolerance(tiny_tacotron, tiny_tacotron_compiled, tmp_path, capsys):
    out = tmp_path / "out"
    compile_addon(tiny_tacotron, out, ["cpu"], progress=False, precision="int8")
    fp32_keys = {a.key for a in read_manifest(tiny_tacotron_compiled).for_backend("cpu")}
    manifest = read_manifest(out)
    assert fp32_keys.isdisjoint(a.key for a in manifest.artifacts)
    assert {a.settings["precision"] for a in manifest.artifacts} == {"int8"}
    step = next(a for a in manifest.artifacts if a.network == "decoder_step")
    assert step.details["int8"] == "linear x3, lstm_cell x1"  # prenet, query, frame; the LSTM cell
    encoder = next(a for a in manifest.artifacts if a.network == "encoder")
    assert encoder.details["kept fp32"] == "lstm x1"  # the BiLSTM over the whole text stays fp32

    parity = check_parity(out, ["cpu"], TEXTS)
    assert parity.passed, parity.table()
    assert parity.placements["cpu"].endswith("int8")
    rows = {row.stage: row for row in parity.rows}
    assert {row.tolerance for row in parity.rows} == {PRECISION_TOLERANCES["int8"]}
    assert rows["decoder_step"].max_abs > TORCHSCRIPT.atol  # quantized for real: not fp32 arithmetic
    assert rows["mel, whole"].mean_abs > 0

    assert main(["inspect", str(out)]) == 0
    assert "decoder_step         dynamic int8 artifacts/cpu/decoder_step.ts" in capsys.readouterr().out


@pytest.mark.parametrize(("precision", "weights"), [("fp16", "FLOAT16"), ("int8", "UINT8")])
def test_onnx_lower_precision_keeps_fp32_inputs_and_outputs(tiny_tacotron, tmp_path, precision, weights):
    """fp16 weights, or 8-bit ones (unsigned: x86 u8 x s8 kernels without VNNI saturate), fp32 at the edges."""
    import onnx

    out = tmp_path / "out"
    compile_addon(tiny_tacotron, out, ["onnx"], progress=False, precision=precision)
    step = next(a for a in read_manifest(out).artifacts if a.network == "decoder_step")
    for entry in read_manifest(out).artifacts:
        model = onnx.load(str(out / entry.file))
        edges = {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
        assert edges <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.BOOL}, entry.network
    model = onnx.load(str(out / step.file))
    assert any(i.data_type == getattr(onnx.TensorProto, weights) for i in model.graph.initializer)
    parity = check_parity(out, ["onnx"], TEXTS)
    assert parity.passed, parity.table()
    assert {row.tolerance for row in parity.rows} == {PRECISION_TOLERANCES[precision]}
    assert next(r for r in parity.rows if r.stage == "decoder_step").max_abs > 1e-5  # not fp32 arithmetic


class _Layers(nn.Module):
    """A conv (im2col when quantized), a linear layer and a product of activations (never quantized)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(16, 32, 5, padding=2)
        self.linear = nn.Linear(32, 24)

    def forward(self, x):  # [1, T, 16]
        y = self.linear(torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2))
        return y @ y.transpose(1, 2), y


def _exported():
    torch.manual_seed(0)
    x = torch.randn(1, 37, 16)
    return torch.export.export(_Layers().eval(), (x,), dynamic_shapes=({1: torch.export.Dim("T", min=2)},)), x


def test_int8_quantizes_convs_and_linears_and_matches_within_tolerance():
    program, x = _exported()
    want = program.module()(x)
    quantized, details = quantize_graph(program.module())
    assert details == {"int8": "conv1d x1, linear x1", "kept fp32": "none"}
    got = torch.jit.trace(quantized, (torch.randn(1, 11, 16),))(x)  # traced at another length: stays dynamic
    tol = PRECISION_TOLERANCES["int8"]
    for g, w in zip(got, want):
        error = (g - w).abs().max().item()
        assert tol.passes(error, w.abs().max().item()) and error > TORCHSCRIPT.atol


def test_bf16_cast_runs_in_bf16_with_fp32_io_and_leaves_the_program_alone():
    program, x = _exported()
    cast = cast_graph(program.module(), "bf16")
    got = cast(x)
    assert all(t.dtype == torch.float32 for t in got)
    assert all(p.dtype == torch.float32 for p in program.state_dict.values())  # the shared program is not cast
    want = program.module()(x)
    tol = PRECISION_TOLERANCES["bf16"]
    assert all(tol.passes((g - w).abs().max().item(), w.abs().max().item()) for g, w in zip(got, want))
    assert any((g - w).abs().max().item() > TORCHSCRIPT.atol for g, w in zip(got, want))
