"""Session fixtures: the tiny addon exported once, tiny and demo addons compiled once for every test backend.

Where ``torch_neuronx`` is missing (any host but Inferentia/Trainium), the
emulator in ``neuron_emulator.py`` stands in for it for the whole session, so
the neuron backend compiles and runs everywhere; real-Neuron tests skip.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="session")
def tiny_addon(tmp_path_factory) -> Path:
    """The tiny source addon (exported once per session)."""
    return build_tiny_addon(tmp_path_factory.mktemp("tiny") / "addon")


@pytest.fixture(scope="session")
def tiny_compiled(tiny_addon, tmp_path_factory) -> Path:
    """The tiny addon compiled for every test backend."""
    out = tmp_path_factory.mktemp("tiny-compiled") / "compiled"
    compile_addon(tiny_addon, out, TEST_BACKENDS, progress=False)
    return out


@pytest.fixture(scope="session")
def demo_compiled(tmp_path_factory) -> Path:
    """The bundled demo addon compiled for every test backend (the suite's one full compile)."""
    out = tmp_path_factory.mktemp("demo-compiled") / "compiled"
    compile_addon(DEMO_ADDON, out, TEST_BACKENDS, progress=False)
    return out


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
    return build_tiny_tacotron(tmp_path_factory.mktemp("tiny-tacotron") / "addon")


@pytest.fixture(scope="session")
def tiny_tacotron_compiled(tiny_tacotron, tmp_path_factory) -> Path:
    """The tiny Tacotron-like addon compiled for every test backend."""
    out = tmp_path_factory.mktemp("tiny-tacotron-compiled") / "compiled"
    compile_addon(tiny_tacotron, out, TEST_BACKENDS, progress=False)
    return out


@pytest.fixture(scope="session")
def tacotron_compiled(tmp_path_factory) -> Path:
    """The bundled tacotron2-demo addon compiled for every test backend, static ones for its two smallest
    buckets of each dim (the texts of the tests fit them; half the compile time)."""
    out = tmp_path_factory.mktemp("tacotron-compiled") / "compiled"
    compile_addon(TACOTRON_ADDON, out, TEST_BACKENDS, buckets=TACOTRON_TEST_BUCKETS, progress=False)
    return out


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
    return build_transformer_addon(tmp_path_factory.mktemp("tiny-transformer") / "addon")


@pytest.fixture(scope="session")
def transformer_compiled(transformer_addon, tmp_path_factory) -> Path:
    """The transformer addon compiled for every test backend (its decoder takes the cpu backend's AOTInductor route)."""
    out = tmp_path_factory.mktemp("tiny-transformer-compiled") / "compiled"
    compile_addon(transformer_addon, out, TEST_BACKENDS, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_vocoder_compiled(tiny_compiled, tmp_path_factory) -> Path:
    """The compiled tiny addon plus a tiny HiFi-GAN-like vocoder network, compiled for every test backend."""
    out = tmp_path_factory.mktemp("tiny-vocoder") / "compiled"
    shutil.copytree(tiny_compiled, out)
    return add_tiny_vocoder(out, TEST_BACKENDS)
