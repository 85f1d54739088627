"""Session fixtures: the tiny addon exported once, tiny and demo addons compiled once for every test backend.

The README runs the suite on two pytest-xdist workers (``-n 2 --dist loadfile``:
the tests of one file stay on one worker, so a file's own fixtures are built
once). The fixtures every file shares are built once for the whole run
(:func:`built_once`), whichever worker asks first, the other waiting.

Where ``torch_neuronx`` is missing (any host but Inferentia/Trainium), the
emulator in ``neuron_emulator.py`` stands in for it for the whole session, so
the neuron backend compiles and runs everywhere; real-Neuron tests skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from filelock import FileLock

from ttsstack.compiler import compile_addon

from . import neuron_emulator
from .tiny_addon import build_tiny_addon
from .tiny_tacotron import build_tiny_tacotron
from .tiny_transformer import build_transformer_addon
from .tiny_vocoder import add_tiny_vocoder

REPO = Path(__file__).resolve().parent.parent
DEMO_ADDON = REPO / "addons" / "fastpitch-demo" / "addon"
TACOTRON_ADDON = REPO / "addons" / "tacotron2-demo" / "addon"
TEST_BACKENDS = ["cpu", "onnx", "onnx-static", "neuron"]
TACOTRON_TEST_BUCKETS = {"T_text": [32, 64], "T_frames": [64, 128]}
REAL_NEURON = importlib.util.find_spec("torch_neuronx") is not None
NO_NEURON = "torch-neuronx is not installed (Inferentia/Trainium hosts only); the neuron backend runs against tests/neuron_emulator.py here"


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Path]) -> Path:
    """What ``build(folder)`` returns, built once per test run: under pytest-xdist all workers share one
    ``folder`` (the first to ask builds it under a file lock, the others wait), so no network is exported
    or compiled twice; a test that must change it works on a copy (:func:`tiny_compiled_copy`)."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the run's folder, shared by the workers' own base folders
    folder = root / f"shared-{name}"
    built = folder / ".built"
    with FileLock(f"{folder}.lock"):
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            built.write_text(str(build(folder).relative_to(folder)))
    return folder / built.read_text()


@pytest.fixture(scope="session", autouse=True)
def neuron_toolchain():
    """``torch_neuronx``: the real one where installed, else the emulator for the whole session."""
    if REAL_NEURON:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "torch_neuronx", neuron_emulator)
        yield


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Source addons compiled on demand go to a per-session cache, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TTSSTACK_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _compiled(source: Path, out: Path, buckets=None) -> Path:
    """``source`` compiled to ``out`` for every test backend."""
    compile_addon(source, out, TEST_BACKENDS, buckets=buckets, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_addon(tmp_path_factory) -> Path:
    """The tiny source addon (exported once per session)."""
    return built_once(tmp_path_factory, "tiny", lambda folder: build_tiny_addon(folder / "addon"))


@pytest.fixture(scope="session")
def tiny_compiled(tiny_addon, tmp_path_factory) -> Path:
    """The tiny addon compiled for every test backend."""
    return built_once(tmp_path_factory, "tiny-compiled", lambda folder: _compiled(tiny_addon, folder / "compiled"))


@pytest.fixture(scope="session")
def demo_compiled(tmp_path_factory) -> Path:
    """The bundled demo addon compiled for every test backend (the suite's one full compile)."""
    return built_once(tmp_path_factory, "demo-compiled", lambda folder: _compiled(DEMO_ADDON, folder / "compiled"))


@pytest.fixture
def tiny_copy(tiny_addon, tmp_path) -> Path:
    """A private copy of the tiny source addon that a test may break."""
    dst = tmp_path / "addon"
    shutil.copytree(tiny_addon, dst)
    return dst


@pytest.fixture
def tiny_compiled_copy(tiny_compiled, tmp_path) -> Path:
    """A private copy of the compiled tiny addon that a test may recompile or break."""
    dst = tmp_path / "compiled"
    shutil.copytree(tiny_compiled, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_tacotron(tmp_path_factory) -> Path:
    """The tiny Tacotron-like source addon: its stop token fires after 3 frames per token."""
    return built_once(tmp_path_factory, "tiny-tacotron", lambda folder: build_tiny_tacotron(folder / "addon"))


@pytest.fixture(scope="session")
def tiny_tacotron_compiled(tiny_tacotron, tmp_path_factory) -> Path:
    """The tiny Tacotron-like addon compiled for every test backend."""
    return built_once(tmp_path_factory, "tiny-tacotron-compiled", lambda folder: _compiled(tiny_tacotron, folder / "compiled"))


@pytest.fixture(scope="session")
def tacotron_compiled(tmp_path_factory) -> Path:
    """The bundled tacotron2-demo addon compiled for every test backend, static ones for its two smallest
    buckets of each dim (the texts of the tests fit them; half the compile time)."""
    return built_once(
        tmp_path_factory, "tacotron-compiled", lambda folder: _compiled(TACOTRON_ADDON, folder / "compiled", TACOTRON_TEST_BUCKETS)
    )


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for the module: a decoder step's ops are too small to split, and on a
    busy host every extra thread's wait costs more than the op (over 100x per step measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def transformer_addon(tmp_path_factory) -> Path:
    """The tiny addon with a transformer decoder (attention, sliced positions, a flow): no trace holds it."""
    return built_once(tmp_path_factory, "tiny-transformer", lambda folder: build_transformer_addon(folder / "addon"))


@pytest.fixture(scope="session")
def transformer_compiled(transformer_addon, tmp_path_factory) -> Path:
    """The transformer addon compiled for every test backend (its decoder takes the cpu backend's AOTInductor route)."""
    return built_once(tmp_path_factory, "tiny-transformer-compiled", lambda folder: _compiled(transformer_addon, folder / "compiled"))


@pytest.fixture(scope="session")
def tiny_vocoder_compiled(tiny_compiled, tmp_path_factory) -> Path:
    """The compiled tiny addon plus a tiny HiFi-GAN-like vocoder network, compiled for every test backend."""
    def build(folder: Path) -> Path:
        shutil.copytree(tiny_compiled, folder / "compiled")
        return add_tiny_vocoder(folder / "compiled", TEST_BACKENDS)

    return built_once(tmp_path_factory, "tiny-vocoder", build)
