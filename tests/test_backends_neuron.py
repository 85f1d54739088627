"""The neuron backend: per-bucket traces that refuse other shapes; real Neuron runs only on Neuron hosts."""

from __future__ import annotations

import sys

import pytest
import torch

import ttsstack
from ttsstack.addon import load_addon
from ttsstack.backends import BackendError
from ttsstack.backends.base import example_inputs
from ttsstack.backends.lowering import lower_to_aten
from ttsstack.backends.neuron import NeuronBackend
from ttsstack.compiler import compile_addon, read_manifest
from ttsstack.parity import check_parity

from .conftest import NO_NEURON, REAL_NEURON
from .neuron_emulator import trace


def test_one_artifact_per_bucket_with_the_toolchain(tiny_compiled):
    entries = read_manifest(tiny_compiled).for_backend("neuron")
    assert sorted((a.network, a.bucket[next(iter(a.bucket))]) for a in entries) == [
        ("decoder", 32), ("decoder", 64), ("duration_encoder", 16), ("duration_encoder", 32),
        ("text_encoder", 16), ("text_encoder", 32)]
    assert all(set(a.toolchain) >= {"torch", "torch-neuronx"} for a in entries)
    assert not list((tiny_compiled / "artifacts" / "neuron").glob("*.workdir"))  # compiler workdirs cleaned up


def test_emulator_refuses_untraced_shapes():
    module = torch.nn.Linear(4, 2)
    traced = trace(module, (torch.zeros(1, 3, 4),))
    assert traced(torch.ones(1, 3, 4)).shape == (1, 3, 2)
    with pytest.raises(torch.jit.Error, match=r"input 0 has shape \[1, 5, 4\], but the model was traced for \[1, 3, 4\]"):
        traced(torch.ones(1, 5, 4))


def test_recurrent_operators_are_lowered_before_the_trace(tiny_tacotron):
    """neuronx-cc (and the emulator) know no ttsstack operator: the backend traces the ATen lowering."""
    addon = load_addon(tiny_tacotron)
    spec, program = addon.spec.networks["encoder"], addon.load_program("encoder")
    args = tuple(example_inputs(spec, {"T_text": 8}).values())
    fp32 = ["--auto-cast", "none"]
    with pytest.raises(RuntimeError, match=r"unsupported operator\(s\) ttsstack::lstm"):
        trace(program.module(), args, compiler_args=fp32)
    assert trace(lower_to_aten(program.module()), args, compiler_args=fp32)(*args).shape == (1, 8, 8)


def test_saved_artifact_refuses_other_shapes_after_load(tiny_compiled):
    entry = next(a for a in read_manifest(tiny_compiled).for_backend("neuron") if a.bucket == {"T_text": 16}
                 and a.network == "text_encoder")
    module = torch.jit.load(str(tiny_compiled / entry.file))
    assert module(torch.zeros(1, 16, dtype=torch.int64), torch.ones(1, 16)).shape == (1, 16, 8)
    with pytest.raises(torch.jit.Error, match="traced for"):
        module(torch.zeros(1, 17, dtype=torch.int64), torch.ones(1, 17))


def test_a_batch_artifact_takes_only_its_traced_batch(tiny_tacotron_compiled):
    """A trace at batch 2 runs batch 2 and refuses batch 1, as a Neuron-compiled model's fixed shapes do."""
    entry = next(a for a in read_manifest(tiny_tacotron_compiled).for_backend("neuron")
                 if a.network == "postnet" and a.bucket == {"T_frames": 32, "batch": 2})
    module = torch.jit.load(str(tiny_tacotron_compiled / entry.file))
    assert module(torch.zeros(2, 32, 8), torch.ones(2, 32)).shape == (2, 32, 8)
    with pytest.raises(torch.jit.Error, match=r"traced for \[2, 32, 8\]" if not REAL_NEURON else ""):
        module(torch.zeros(1, 32, 8), torch.ones(1, 32))


def test_trace_failure_names_the_kept_workdir(tiny_addon, tmp_path, monkeypatch):
    import torch_neuronx

    def failing(module, example_inputs, compiler_workdir=None, compiler_args=None):
        raise RuntimeError("neuronx-cc: unsupported operator")

    monkeypatch.setattr(torch_neuronx, "trace", failing)
    with pytest.raises(Exception, match=r"decoder \[neuron \{'T_frames': 32\}\]: BackendError: torch_neuronx.trace failed "
                                        r"\(compiler logs kept in .*decoder.T_frames32.neuron.*\.workdir\)"):
        compile_addon(tiny_addon, tmp_path / "out", ["neuron"], progress=False)


def test_missing_torch_neuronx_makes_the_backend_unavailable(tiny_compiled, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)  # import fails
    reason = NeuronBackend.unavailable_reason()
    assert "torch-neuronx is not installed" in reason and "pip.repos.neuron.amazonaws.com" in reason
    with pytest.raises(BackendError, match="backend 'neuron' is not available on this host: torch-neuronx is not installed"):
        ttsstack.load(tiny_compiled, backend="neuron")


@pytest.mark.skipif(not REAL_NEURON, reason=NO_NEURON)
def test_real_neuron_matches_the_reference(tiny_compiled):
    report = check_parity(tiny_compiled, ["neuron"])
    assert report.passed, report.table()


def test_compiler_args_are_explicit_and_recorded(tiny_compiled):
    entries = read_manifest(tiny_compiled).for_backend("neuron")
    assert {a.settings["compiler_args"] for a in entries} == {"--auto-cast none --optlevel 2"}
    assert {a.settings["precision"] for a in entries} == {"fp32"}


def test_emulator_checks_compiler_args_like_neuronx_cc():
    module = torch.nn.Linear(4, 2)
    with pytest.raises(RuntimeError, match=r"unrecognized arguments: --fast-math"):
        trace(module, (torch.zeros(1, 3, 4),), compiler_args=["--fast-math"])
    with pytest.raises(RuntimeError, match=r"argument --auto-cast: invalid choice: 'most'"):
        trace(module, (torch.zeros(1, 3, 4),), compiler_args="--auto-cast most")


def test_without_auto_cast_none_matrix_products_lose_fp32_precision():
    """neuronx-cc's default casts matmuls to bf16: what the tolerances' fp32 claim relies on being switched off."""
    torch.manual_seed(0)
    module = torch.nn.Linear(64, 64).eval()
    x = torch.randn(1, 8, 64)
    want = module(x)
    fp32 = trace(module, (x,), compiler_args=["--auto-cast", "none"])(x)
    default = trace(module, (x,))(x)
    assert (fp32 - want).abs().max().item() <= 1e-5
    assert (default - want).abs().max().item() > 1e-3


def test_compiler_settings_change_the_cache_key(tiny_addon, tmp_path):
    assert NeuronBackend(precision="bf16").settings() == {
        "precision": "bf16", "compiler_args": "--auto-cast all --auto-cast-type bf16 --optlevel 2"
    }
    with pytest.raises(BackendError, match=r"precision 'int3' \(precisions are fp32, fp16, bf16, int8\); it offers: fp32, bf16, fp16"):
        NeuronBackend(precision="int3")
    out = tmp_path / "out"
    compile_addon(tiny_addon, out, ["neuron"], buckets={"T_text": [16], "T_frames": [32]}, progress=False)
    keys = {a.key for a in read_manifest(out).artifacts}
    from ttsstack.runtime.registry import BACKENDS

    class Optlevel3Neuron(NeuronBackend):
        """The neuron backend at another optimization level."""

        def __init__(self):
            super().__init__(optlevel=3)

    original = BACKENDS.get("neuron")
    BACKENDS.unregister("neuron")
    BACKENDS.register("neuron")(Optlevel3Neuron)
    try:
        report = compile_addon(tiny_addon, out, ["neuron"], buckets={"T_text": [16], "T_frames": [32]}, progress=False)
    finally:
        BACKENDS.unregister("neuron")
        BACKENDS.register("neuron")(original)
    assert report.compiled and not report.reused  # new flags, new artifacts
    assert keys.isdisjoint(a.key for a in read_manifest(out).artifacts)
