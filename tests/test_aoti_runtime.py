"""AOTInductor packages run through their C interface (GIL released), like torch's own loader, from any thread."""

from __future__ import annotations

import threading
import zipfile

import pytest
import torch

import ttsstack
from ttsstack.addon import load_addon
from ttsstack.backends.aoti_runtime import AotiModel, UnsupportedPackage
from ttsstack.backends.base import example_inputs
from ttsstack.compiler import read_manifest


def _decoder_package(folder):
    entry = next(a for a in read_manifest(folder).for_backend("cpu") if a.network == "decoder")
    assert entry.details["route"] == "aotinductor"
    return folder / entry.file


def _inputs(folder, length: int, seed: int) -> list[torch.Tensor]:
    spec = load_addon(folder).spec.networks["decoder"]
    return list(example_inputs(spec, {"T_frames": length}, seed=seed).values())


def test_cpu_backend_runs_aotinductor_artifacts_through_the_c_interface(transformer_compiled):
    from torch._inductor import aoti_load_package

    runner = ttsstack.load(transformer_compiled, backend="cpu", warmup=False).runners["decoder"]
    assert isinstance(runner.module, AotiModel)
    reference = aoti_load_package(str(_decoder_package(transformer_compiled)))
    for length in (1, 33, 300):
        inputs = _inputs(transformer_compiled, length, seed=length)
        with torch.inference_mode():
            got, want = runner.module(*inputs), reference(*inputs)
        got, want = (got,) if isinstance(got, torch.Tensor) else got, (want,) if isinstance(want, torch.Tensor) else want
        assert len(got) == len(want) and all(torch.equal(g, w) for g, w in zip(got, want))


def test_a_view_input_reads_as_its_contiguous_copy(transformer_compiled):
    """AOTInductor code indexes inputs by the strides it was built for: the runner hands it contiguous tensors."""
    runner = ttsstack.load(transformer_compiled, backend="cpu", warmup=False).runners["decoder"]
    spec = runner.spec
    inputs = example_inputs(spec, {"T_frames": 40}, seed=3)
    frames = next(n for n in spec.data_inputs if inputs[n].dtype.is_floating_point and inputs[n].dim() == 3)
    view = torch.stack([inputs[frames], inputs[frames]], dim=-1)[..., 0]  # same values, strides of a view
    assert not view.is_contiguous() and torch.equal(view, inputs[frames])
    with torch.inference_mode():
        want, got = runner(inputs), runner({**inputs, frames: view})
    assert all(torch.equal(got[n], want[n]) for n in want)


def test_calls_from_several_threads_each_get_their_own_outputs(transformer_compiled):
    model = AotiModel(_decoder_package(transformer_compiled))
    cases = {length: _inputs(transformer_compiled, length, seed=length) for length in (5, 17, 64, 130)}
    with torch.inference_mode():
        want = {length: model(*inputs) for length, inputs in cases.items()}
    got, failures = {}, []

    def call(length):
        try:
            with torch.inference_mode():
                for _ in range(5):
                    got[length] = model(*cases[length])
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=call, args=(length,)) for length in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    for length in cases:
        w, g = want[length], got[length]
        w, g = (w,) if isinstance(w, torch.Tensor) else w, (g,) if isinstance(g, torch.Tensor) else g
        assert all(torch.equal(a, b) for a, b in zip(g, w)), length


def test_packages_it_cannot_run_are_left_to_torchs_loader(transformer_compiled, tmp_path):
    not_zip = tmp_path / "broken.aoti.pt2"
    not_zip.write_bytes(b"not a package")
    with pytest.raises(UnsupportedPackage, match="not a zip archive"):
        AotiModel(not_zip)
    extern = tmp_path / "extern.aoti.pt2"  # a model that calls operators through a proxy executor
    with zipfile.ZipFile(_decoder_package(transformer_compiled)) as source, zipfile.ZipFile(extern, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr("package/data/aotinductor/model/extern_kernels.json", "{}")
    with pytest.raises(UnsupportedPackage, match="1 extern-kernel files"):
        AotiModel(extern)
