"""The cpu backend's two routes: TorchScript where a trace holds, AOTInductor for what it cannot (attention, flows)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import ttsstack
from ttsstack.addon import load_addon
from ttsstack.backends import BackendError
from ttsstack.backends.base import ModuleRunner, example_inputs
from ttsstack.backends.cpu import CpuBackend
from ttsstack.compiler import CompileError, compile_addon, read_manifest
from ttsstack.tolerances import AOTINDUCTOR, TORCHSCRIPT, for_backend

TEXT = "attention over frames, sliced positions and a flow."


def _routes(folder) -> dict[str, str]:
    return {a.network: a.details.get("route") for a in read_manifest(folder).for_backend("cpu")}


def test_trace_route_where_it_holds_aotinductor_where_it_does_not(transformer_compiled):
    routes = _routes(transformer_compiled)
    assert routes == {"text_encoder": "torchscript", "duration_encoder": "torchscript", "decoder": "aotinductor"}
    decoder = next(a for a in read_manifest(transformer_compiled).for_backend("cpu") if a.network == "decoder")
    assert decoder.file.endswith(".aoti.pt2")
    assert decoder.details["machine"] and decoder.details["isa"] and decoder.details["torch"] == torch.__version__
    assert "route torchscript:" in decoder.details["rejected"]  # why the trace was not kept


@pytest.mark.parametrize("length", [1, 7, 23, 100, 512])
def test_aotinductor_artifact_keeps_the_length_dynamic(transformer_compiled, length):
    addon = load_addon(transformer_compiled)
    spec = addon.spec.networks["decoder"]
    runner = ttsstack.load(transformer_compiled, backend="cpu", warmup=False).runners["decoder"]
    reference = ModuleRunner(spec, addon.load_program("decoder").module())
    inputs = example_inputs(spec, {"T_frames": length}, seed=length)
    with torch.inference_mode():
        want, got = reference(inputs)["mel"], runner(inputs)["mel"]
    assert got.shape == want.shape == (1, length, 8)
    assert AOTINDUCTOR.passes((got - want).abs().max().item(), want.abs().max().item())


def test_aotinductor_artifacts_are_held_to_their_own_bound(transformer_compiled):
    # the full-size FastSpeech2-Conformer encoder's AOTInductor artifact: 3.2e-5 off on outputs of magnitude 7.7
    assert not TORCHSCRIPT.passes(3.2e-5, 7.7) and AOTINDUCTOR.passes(3.2e-5, 7.7)
    assert read_manifest(transformer_compiled).routes("cpu") == ["aotinductor", "torchscript"]
    assert for_backend("cpu", routes=read_manifest(transformer_compiled).routes("cpu")) == AOTINDUCTOR
    assert for_backend("cpu", routes=["torchscript"]) == TORCHSCRIPT == for_backend("cpu")
    assert for_backend("cpu", precision="int8", routes=["aotinductor"]).atol > AOTINDUCTOR.atol  # precision's bound first


def test_compile_validates_each_route_with_its_own_bound(tiny_addon, tmp_path, monkeypatch):
    """An artifact 5e-5 off (as the full-size FastSpeech2-Conformer encoder's AOTInductor one was) is over
    TorchScript's bound and within AOTInductor's: the text encoder's trace is rejected, its package kept."""
    load = CpuBackend.load

    def off_by_5e_5(self, network):
        runner = load(self, network)
        if network.name == "text_encoder":
            module = runner.module

            def shifted(*inputs):
                out = module(*inputs)
                out = (out,) if isinstance(out, torch.Tensor) else out
                return tuple(t + 5e-5 if t.is_floating_point() else t for t in out)

            runner.module = shifted
        return runner

    monkeypatch.setattr(CpuBackend, "load", off_by_5e_5)
    compile_addon(tiny_addon, tmp_path / "out", ["cpu"], progress=False)
    entry = next(a for a in read_manifest(tmp_path / "out").for_backend("cpu") if a.network == "text_encoder")
    assert entry.details["route"] == "aotinductor"
    assert "route torchscript: ValidationFailure" in entry.details["rejected"]


def test_streamed_speech_equals_the_reference(transformer_compiled):
    cpu = ttsstack.load(transformer_compiled, backend="cpu").synthesize(TEXT)
    eager = ttsstack.load(transformer_compiled, backend="eager").synthesize(TEXT)
    assert cpu.shape == eager.shape and cpu.shape[0] > 50
    tolerance = for_backend("cpu", routes=read_manifest(transformer_compiled).routes("cpu"))
    assert tolerance.passes(np.abs(cpu - eager).max(), np.abs(eager).max())


def test_artifact_for_another_cpu_is_refused_at_load(transformer_compiled, tmp_path):
    import shutil

    folder = tmp_path / "compiled"
    shutil.copytree(transformer_compiled, folder)
    data = yaml.safe_load((folder / "manifest.yaml").read_text())
    for artifact in data["artifacts"]:
        if artifact["details"].get("route") == "aotinductor":
            artifact["details"]["isa"] = "amx_tile_fp8"
    (folder / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(BackendError, match=r"network 'decoder'.*built for the amx_tile_fp8 instruction set, which this CPU lacks"):
        ttsstack.load(folder, backend="cpu", compile_if_needed=False)


def test_no_route_names_network_backend_and_every_route(transformer_addon, tmp_path, monkeypatch):
    def no_compiler(self, program, out):
        raise RuntimeError("C++ compiler 'c++' not found")

    monkeypatch.setattr(CpuBackend, "_compile_aoti", no_compiler)
    with pytest.raises(CompileError) as failed:
        compile_addon(transformer_addon, tmp_path / "out", ["cpu"], progress=False)
    message = str(failed.value)
    assert "decoder [cpu]" in message and "no route of backend 'cpu' compiles network 'decoder'" in message
    assert "route torchscript: RuntimeError: The size of tensor a (7) must match" in message and "route aotinductor: RuntimeError: C++ compiler 'c++' not found" in message
    assert set(failed.value.report.compiled) == {"text_encoder [cpu]", "duration_encoder [cpu]"}  # the others are written
    assert {a.network for a in read_manifest(tmp_path / "out").artifacts} == {"text_encoder", "duration_encoder"}
