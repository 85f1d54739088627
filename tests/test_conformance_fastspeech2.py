"""Conformance: Hugging Face FastSpeech2-Conformer with its HiFi-GAN, built by its script, on every backend.

The addon equals the library's own forward (``FastSpeech2ConformerModel`` then
``FastSpeech2ConformerHifiGan``) on the same tokens, passes ``ttsstack parity``,
and its waveform streams exactly. Tiny configs of the library's classes; one
compile per session.
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
from ttsstack.runtime import RuntimeOptions
from ttsstack.tolerances import STREAMING, WAVEFORM, for_backend

from .concurrent_streams import batched_round
from .conftest import REPO, TEST_BACKENDS

pytest.importorskip("transformers", reason='the conformance addons need the transformers extra: pip install -e ".[transformers]"')

SCRIPT = REPO / "addons" / "conformance" / "fastspeech2_conformer.py"
DIMS = {"T_text": {"max": 256, "buckets": [48]}, "T_frames": {"max": 1024, "buckets": [256]}}
TEXTS = ("Hi.", "A conformer speaks, then its vocoder sings!")


def _script():
    spec = importlib.util.spec_from_file_location("fastspeech2_conformer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fs2(tmp_path_factory):
    """The build script, the tiny addon it writes compiled for every test backend, and the library models behind it."""
    script = _script()
    config, hifigan_config = script.tiny_configs()
    source = tmp_path_factory.mktemp("fs2c") / "addon"
    model, hifigan = script.build_addon(source, config, hifigan_config, DIMS, seed=0)
    compiled = source.parent / "compiled"
    compile_addon(source, compiled, TEST_BACKENDS, progress=False)
    return script, compiled, model, hifigan


@pytest.fixture(scope="module")
def voices(fs2):
    _, compiled, _, _ = fs2
    return {b: ttsstack.load(compiled, b, compile_if_needed=False) for b in ["eager", *TEST_BACKENDS]}


def test_networks_follow_the_library_structure(fs2):
    script, compiled, _, hifigan = fs2
    spec = ttsstack.load_addon(compiled).spec
    assert {n: (s.role, s.context) for n, s in spec.networks.items()} == {
        "encoder": ("encoder", "unbounded"), "decoder": ("decoder", "unbounded"),
        "vocoder": ("vocoder", script.receptive_radius(hifigan, 4)),
        "vocoder_stateful": ("stateful", "unbounded"),  # derived by compile: the HiFi-GAN streams with kept states
    }
    assert spec.networks["vocoder"].context == 9  # conv_pre 3, upsamplers 2, resblocks 3 + 1.5, conv_post 0.75 frames
    assert spec.vocoder == {"type": "Network", "network": "vocoder"}


@pytest.mark.parametrize("backend", ["eager", *TEST_BACKENDS])
def test_equals_the_library_forward(fs2, voices, backend):
    script, _, model, hifigan = fs2
    voice = voices[backend]
    tolerance = for_backend(backend)
    for text in TEXTS:
        (tokens,) = list(voice.frontend.pieces(text, voice.max_tokens))
        mel, waveform = script.library_forward(model, hifigan, tokens)
        got_mel = torch.from_numpy(voice.synthesize(text))
        got_audio = torch.from_numpy(voice.synthesize_audio(text))
        assert got_mel.shape == mel.shape and got_audio.shape == waveform.shape
        assert tolerance.passes(float((got_mel - mel).abs().max()), float(mel.abs().max()))
        assert float((got_audio - waveform).abs().max()) <= WAVEFORM.atol
        assert float(waveform.abs().max()) > 0.1  # a waveform worth comparing


@pytest.mark.parametrize("backend", ["onnx-static", "onnx"])
def test_waveform_streams_exactly(fs2, voices, backend):
    """On windows (a static backend) and through the HiFi-GAN's stateful twin (a dynamic one)."""
    whole = ttsstack.load(fs2[1], backend, options=parity.WHOLE, compile_if_needed=False, warmup=False)
    streamed = ttsstack.load(fs2[1], backend, options=RuntimeOptions(chunk_frames=32, first_chunk_frames=4),
                             compile_if_needed=False, warmup=False)
    assert streamed.vocoder.block.twin == (None if backend == "onnx-static" else "vocoder_stateful")
    chunks = list(streamed.stream_audio(TEXTS[1]))
    assert len(chunks) > 1
    assert np.abs(np.concatenate(chunks) - whole.synthesize_audio(TEXTS[1])).max() <= STREAMING.atol


def test_concurrent_streams_batched_equal_each_alone(fs2, voices, tmp_path):
    """The script's ``--batch`` build (every network ``batch: true``) on onnx: two streams of different
    lengths at once run batched calls, the library's masks keep the rows apart, and each waveform equals the
    same text streamed alone on the unbatched build (which equals the library's forward) within WAVEFORM."""
    script = fs2[0]
    config, hifigan_config = script.tiny_configs()
    script.build_addon(tmp_path / "addon", config, hifigan_config, DIMS, seed=0, batch=True)
    compile_addon(tmp_path / "addon", tmp_path / "compiled", ["onnx"], progress=False)
    voice = ttsstack.load(tmp_path / "compiled", "onnx", options=RuntimeOptions(batch=2, batch_wait_ms=20), compile_if_needed=False)
    texts = ["Hi there. A conformer speaks. Then its vocoder sings!", "One. Two three. Four five six."]
    for text, got in zip(texts, batched_round(voice, texts, audio=True)):
        want = voices["onnx"].synthesize_audio(text)
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= WAVEFORM.atol


def test_passes_parity(fs2):
    _, compiled, _, _ = fs2
    report = parity.check_parity(compiled, texts=TEXTS)
    assert report.passed, report.table()
    assert {r.stage for r in report.rows} >= {"encoder", "decoder", "vocoder", "vocoder_stateful", "audio, whole", "audio, streamed"}


def test_script_names_the_extra_without_transformers(tmp_path, monkeypatch, capsys):
    script = _script()
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--tiny", "--out", str(tmp_path / "addon")])
    with pytest.raises(SystemExit, match=r'needs transformers: pip install -e "\.\[transformers\]"'):
        script.main()
    assert not (tmp_path / "addon").exists()
