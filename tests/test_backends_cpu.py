"""The cpu backend: TorchScript artifacts reproduce their .pt2 programs; loading checks the manifest."""

from __future__ import annotations

import pytest
import torch
import yaml

import ttsstack
from ttsstack.addon import load_addon
from ttsstack.backends import BackendError
from ttsstack.backends.base import ModuleRunner, example_inputs
from ttsstack.compiler import ManifestError, read_manifest
from ttsstack.tolerances import TORCHSCRIPT


@pytest.mark.parametrize("length", [1, 5, 23, 150])
def test_torchscript_reproduces_the_program(demo_compiled, length):
    addon = load_addon(demo_compiled)
    voice = ttsstack.load(demo_compiled, backend="cpu")
    for name, spec in addon.spec.networks.items():
        reference = ModuleRunner(spec, addon.load_program(name).module())
        runner = voice.runners[name]
        sizes = {d: length for t in spec.inputs.values() for _, d in t.named_dims}
        inputs = example_inputs(spec, sizes, seed=length)
        with torch.inference_mode():
            want, got = reference(inputs), runner(inputs)
        for out in spec.outputs:
            assert got[out].shape == want[out].shape
            assert (got[out] - want[out]).abs().max().item() <= TORCHSCRIPT.atol, (name, out, length)


def test_corrupted_artifact_fails_at_load(tiny_compiled_copy):
    folder = tiny_compiled_copy
    entry = next(a for a in read_manifest(folder).artifacts if a.network == "decoder")
    with open(folder / entry.file, "ab") as f:
        f.write(b"garbage")
    with pytest.raises(ManifestError, match=r"decoder \[cpu\]: .*decoder\.ts' is corrupted or was modified"):
        ttsstack.load(folder, backend="cpu")


def test_corrupted_program_fails_at_load(tiny_compiled_copy):
    folder = tiny_compiled_copy
    with open(folder / "networks" / "text_encoder.pt2", "ab") as f:
        f.write(b"x")
    with pytest.raises(ManifestError, match=r"programs\.text_encoder: .*corrupted"):
        ttsstack.load(folder, backend="cpu")


def test_incompatible_toolchain_is_refused(tiny_compiled_copy):
    folder = tiny_compiled_copy
    data = yaml.safe_load((folder / "manifest.yaml").read_text())
    for artifact in data["artifacts"]:
        artifact["toolchain"]["torch"] = "1.13.1"
    (folder / "manifest.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(BackendError, match=r"artifacts were made with torch 1\.13\.1, this host has torch .*recompile with: ttsstack compile"):
        ttsstack.load(folder, backend="cpu")


def test_missing_backend_names_the_fix(tiny_compiled_copy):
    folder = tiny_compiled_copy
    data = yaml.safe_load((folder / "manifest.yaml").read_text())
    data["artifacts"] = []
    (folder / "manifest.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(BackendError, match=r"no 'cpu' artifact for network 'text_encoder'.*run: ttsstack compile SOURCE_ADDON -o .* --backend cpu"):
        ttsstack.load(folder, backend="cpu", compile_if_needed=False)
