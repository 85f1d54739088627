"""Conformance: ``transformers``' UnivNet as the FastSpeech2-Conformer addon's vocoder, built by its script, on ``onnx``.

UnivNet takes a noise sequence (a ``noise:`` input the runtime draws per
frame) and location-variable convolutions whose kernels it predicts from the
mel. Spoken through ttsstack, whole and streamed, the waveform equals the
libraries' own forward fed the runtime's noise, and ``ttsstack parity``
passes. Tiny configs; one compile, for ``onnx`` only (the other backends are
covered by the FastSpeech2-Conformer tests).
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

import ttsstack
from ttsstack import parity
from ttsstack.compiler import compile_addon
from ttsstack.runtime.noise import noise_steps
from ttsstack.tolerances import WAVEFORM

from .conftest import REPO

pytest.importorskip("transformers", reason='the conformance addons need the transformers extra: pip install -e ".[transformers]"')

FOLDER = REPO / "addons" / "conformance"
TEXTS = ("Hello, world.", "The quick brown fox jumps over the lazy dog, twice over.")


def _script():
    sys.path.insert(0, str(FOLDER))  # vocoders.py imports fastspeech2_conformer.py beside it
    try:
        spec = importlib.util.spec_from_file_location("conformance_vocoders", FOLDER / "vocoders.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(FOLDER))
    return module


@pytest.fixture(scope="module")
def univnet(tmp_path_factory):
    """The script module, the seeded acoustic model and UnivNet, and the addon compiled for ``onnx``."""
    script = _script()
    root = tmp_path_factory.mktemp("univnet")
    model, library, _ = script.build_addon(root / "addon", "univnet", tiny=True)
    compile_addon(root / "addon", root / "compiled", ["onnx"], progress=False)
    return script, model, library, root / "compiled"


def test_the_waveform_equals_the_libraries_forward(univnet):
    script, model, library, compiled = univnet
    voice = ttsstack.load(compiled, "onnx", compile_if_needed=False)
    net = voice.spec.networks["vocoder"]
    for text in TEXTS:
        (tokens,) = list(voice.frontend.pieces(text, voice.max_tokens))
        with torch.no_grad():
            frames = model(tokens, return_dict=True).spectrogram.shape[1]
            noise = noise_steps("noise", net.noise["noise"], net.inputs["noise"], 0, frames)
            _, want = script.library_forward(model, "univnet", library, tokens, noise)
        whole = voice.synthesize_audio(text)
        streamed = np.concatenate(list(voice.stream_audio(text)))
        assert whole.shape == tuple(want.shape) == streamed.shape
        assert np.abs(whole - want.numpy()).max() <= WAVEFORM.atol
        assert np.abs(streamed - want.numpy()).max() <= WAVEFORM.atol


def test_parity_passes(univnet):
    report = parity.check_parity(univnet[3], texts=TEXTS)
    assert report.passed, report.table()
