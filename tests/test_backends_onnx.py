"""The onnx backend: named dynamic axes, the provider choice, the toolchain in the manifest."""

from __future__ import annotations

import sys

import onnx
import onnxruntime
import pytest
import torch

import ttsstack
from ttsstack.addon import load_addon
from ttsstack.backends import onnx as onnx_backend
from ttsstack.backends.base import ModuleRunner, example_inputs
from ttsstack.cli import main
from ttsstack.compiler import read_manifest
from ttsstack.tolerances import ONNX_CPU


def test_artifacts_keep_the_named_dims_dynamic(tiny_compiled):
    entry = next(a for a in read_manifest(tiny_compiled).for_backend("onnx") if a.network == "decoder")
    graph = onnx.load(str(tiny_compiled / entry.file)).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.output]}
    assert dims == {"frames": [1, "T_frames", 8], "frames_mask": [1, "T_frames"], "mel": [1, "T_frames", 8]}


@pytest.mark.parametrize("length", [1, 40, 300])
def test_onnx_reproduces_the_programs_at_any_length(demo_compiled, length):
    addon = load_addon(demo_compiled)
    voice = ttsstack.load(demo_compiled, backend="onnx")
    for name, spec in addon.spec.networks.items():
        reference = ModuleRunner(spec, addon.load_program(name).module())
        inputs = example_inputs(spec, {d: length for t in spec.inputs.values() for _, d in t.named_dims}, seed=length)
        with torch.inference_mode():
            want, got = reference(inputs), voice.runners[name](inputs)
        for out in spec.outputs:
            error = (got[out] - want[out]).abs().max().item()
            assert ONNX_CPU.passes(error, want[out].abs().max().item()), (name, length, error)


def test_manifest_records_the_onnx_toolchain(tiny_compiled):
    for backend in ("onnx", "onnx-static"):
        for entry in read_manifest(tiny_compiled).for_backend(backend):
            assert set(entry.toolchain) == {"torch", "onnx", "onnxscript", "onnxruntime"}
            assert entry.toolchain["onnxruntime"] == onnxruntime.__version__


def test_cpu_provider_is_chosen_and_said_without_a_gpu(tiny_compiled, capsys):
    voice = ttsstack.load(tiny_compiled, backend="onnx")
    if onnx_backend.gpu_present():
        pytest.skip("this host has a GPU")
    assert {r.provider for r in voice.runners.values()} == {"CPUExecutionProvider"}
    assert main(["inspect", str(tiny_compiled)]) == 0
    assert "onnx         runs on ONNX Runtime CPUExecutionProvider" in capsys.readouterr().out


def test_cuda_provider_is_preferred_when_installed_and_a_gpu_is_present(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnx_backend, "gpu_present", lambda: True)
    assert onnx_backend.preferred_provider() == "CUDAExecutionProvider"
    assert onnx_backend.OnnxBackend().device == "cuda"
    monkeypatch.setattr(onnx_backend, "gpu_present", lambda: False)
    assert onnx_backend.preferred_provider() == "CPUExecutionProvider"


def test_missing_onnxruntime_makes_the_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    assert "onnxruntime is not installed; pip install 'ttsstack[onnx]'" in onnx_backend.OnnxBackend.unavailable_reason()


def test_exporter_registry_is_shared_only_during_export(tiny_addon, tmp_path):
    from torch.onnx._internal.exporter import _registration

    original = _registration.ONNXRegistry.__dict__["from_torchlib"]
    addon = load_addon(tiny_addon)
    spec = addon.spec.networks["duration_encoder"]
    for name in ("a.onnx", "b.onnx"):
        onnx_backend.export_onnx(addon.load_program("duration_encoder"), tuple(example_inputs(spec, {"T_text": 5}).values()),
                                 spec, tmp_path / name)
    assert _registration.ONNXRegistry.__dict__["from_torchlib"] is original
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    cached = [target for registry in onnx_backend._REGISTRIES.values() for target in registry.functions]
    assert cached and not [t for t in cached if "ttsstack" in str(t)]  # each export's custom translations stay its own


@pytest.mark.parametrize("backend", ["onnx", "onnx-static"])
def test_recurrent_layers_become_onnx_lstm(tiny_tacotron_compiled, backend):
    entries = [a for a in read_manifest(tiny_tacotron_compiled).for_backend(backend) if a.network == "encoder"]
    for entry in entries:
        ops = {node.op_type for node in onnx.load(str(tiny_tacotron_compiled / entry.file)).graph.node}
        assert "LSTM" in ops, entry.file


def _decoder_session(tiny_compiled, backend):
    entry = next(a for a in read_manifest(tiny_compiled).for_backend(backend) if a.network == "decoder"
                 and a.bucket in (None, {"T_frames": 32}))
    return load_addon(tiny_compiled).spec.networks["decoder"], onnx_backend.ort_session(tiny_compiled / entry.file, "CPUExecutionProvider")


def test_io_binding_path_gives_the_plain_run(tiny_compiled):
    """The CUDA path's binding code, run with host buffers (no GPU here; the CUDA provider itself is not run)."""
    spec, session = _decoder_session(tiny_compiled, "onnx")
    plain, bound = onnx_backend.OrtRunner(spec, session, "decoder"), onnx_backend.OrtRunner(spec, session, "decoder")
    bound.binding_device = "cpu"
    inputs = {"frames": torch.randn(1, 20, 8), "frames_mask": torch.ones(1, 20)}
    assert torch.equal(bound(inputs)["mel"], plain(inputs)["mel"])


def test_cuda_graph_runner_reuses_its_buffers(tiny_compiled):
    """The CUDA graph path's fixed-buffer code, with host buffers (no GPU here; graphs themselves are not captured)."""
    from ttsstack.backends.onnx_static import CudaGraphRunner

    spec, session = _decoder_session(tiny_compiled, "onnx-static")
    plain = onnx_backend.OrtRunner(spec, session, "decoder")
    fixed = CudaGraphRunner(spec, session, {"frames": [1, 32, 8], "frames_mask": [1, 32], "mel": [1, 32, 8]}, device="cpu")
    for seed in (0, 1):
        inputs = {"frames": torch.randn(1, 32, 8, generator=torch.Generator().manual_seed(seed)), "frames_mask": torch.ones(1, 32)}
        assert torch.equal(fixed(inputs)["mel"], plain(inputs)["mel"])


def _steps(step, states: dict[str, torch.Tensor], spec, count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` calls of a step, each output state fed back as the next input (outputs cloned as they come)."""
    outputs = []
    for _ in range(count):
        out = {name: tensor.clone() for name, tensor in step(states).items()}
        states = {name: out[state.output] for name, state in spec.states.items()}
        outputs.append(out)
    return outputs


def _decoder_step(tiny_tacotron_compiled, backend, length):
    entry = next(a for a in read_manifest(tiny_tacotron_compiled).for_backend(backend) if a.network == "decoder_step"
                 and a.bucket in (None, {"T_text": length}))
    spec = load_addon(tiny_tacotron_compiled).spec.networks["decoder_step"]
    inputs = example_inputs(spec, {"T_text": length}, seed=3)
    fixed = {name: inputs[name] for name in ("memory", "memory_mask")}
    states = {name: inputs[name] for name in spec.states}
    return spec, onnx_backend.ort_session(tiny_tacotron_compiled / entry.file, "CPUExecutionProvider"), fixed, states


def _plain_steps(spec, session, fixed, states, count):
    plain = onnx_backend.OrtRunner(spec, session, "decoder_step")
    return _steps(lambda s: plain({**fixed, **s}), states, spec, count)


@pytest.mark.parametrize("binding_device", [None, "cpu"])
def test_bound_step_gives_the_plain_calls(tiny_tacotron_compiled, binding_device):
    """Memory bound once, states fed back unconverted; "cpu" runs the CUDA path's I/O binding with host buffers."""
    spec, session, fixed, states = _decoder_step(tiny_tacotron_compiled, "onnx", 11)
    bound = onnx_backend.OrtRunner(spec, session, "decoder_step")
    bound.binding_device = binding_device
    got, want = _steps(bound.bind(fixed), states, spec, 5), _plain_steps(spec, session, fixed, states, 5)
    assert all(torch.equal(g[name], w[name]) for g, w in zip(got, want) for name in w)


def test_cuda_graph_runner_rebinds_memory_after_another_caller(tiny_tacotron_compiled):
    """Two utterances interleaved on one fixed-buffer runner each keep their own memory (host buffers, no GPU here)."""
    from ttsstack.backends.onnx_static import CudaGraphRunner, _fixed_shapes

    spec, session, fixed, states = _decoder_step(tiny_tacotron_compiled, "onnx-static", 8)
    runner = CudaGraphRunner(spec, session, _fixed_shapes(spec, {"T_text": 8}), device="cpu")
    other = {"memory": fixed["memory"].flip(1), "memory_mask": fixed["memory_mask"]}
    first, second = runner.bind(fixed), runner.bind(other)
    interleaved = [_steps(step, states, spec, 1)[0] for step in (first, second, first, second)]
    for got, memory in zip(interleaved, (fixed, other, fixed, other)):
        want = _plain_steps(spec, session, memory, states, 1)[0]
        assert all(torch.equal(got[name], want[name]) for name in want)


def test_cuda_sessions_turn_tf32_off(monkeypatch, tmp_path):
    """The accelerator tolerance assumes fp32 matrix products: the CUDA provider is asked for no TF32."""
    import onnxruntime

    from ttsstack.backends.onnx import CUDA, ort_session

    asked = {}

    def record(path, options, providers):
        asked["providers"] = providers

    monkeypatch.setattr(onnxruntime, "InferenceSession", record)
    ort_session(tmp_path / "x.onnx", CUDA, {"enable_cuda_graph": "1"})
    assert asked["providers"][0] == (CUDA, {"use_tf32": "0", "enable_cuda_graph": "1"})
