"""SpeechT5 (Hugging Face ``SpeechT5ForTextToSpeech``) as an addon: every backend equals the library's generate.

The tiny model is the library's own classes at test size with seeded weights;
its stop logits are biased far below the threshold, so each case decides the
length through one of ``generate_speech``'s rules: the length ratio cap, or
the minimum length and then the threshold (0, which every step meets).
"""

from __future__ import annotations

import importlib.util
import runpy
import sys

import numpy as np
import pytest
import torch

import ttsstack
from ttsstack.addon import AddonError, parse_spec
from ttsstack.backends import BackendError
from ttsstack.compiler import compile_addon
from ttsstack.parity import check_parity
from ttsstack.runtime import Voice
from ttsstack.runtime.blocks.autoregressive import DecoderCapWarning
from ttsstack.runtime.registry import BACKENDS
from ttsstack.tolerances import WAVEFORM, for_backend

from .conftest import REPO, TEST_BACKENDS

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = REPO / "addons" / "conformance" / "speecht5.py"
TEXT = "speech, t five!"  # 15 tokens, padded to the T_text bucket of 32 on static backends
DIMS = {"T_text": {"max": 32, "buckets": [32]}, "T_frames": {"max": 4096, "buckets": [32]}, "T_cache": {"max": 24}}
CASES = {  # AutoregressiveDecoder fields and generate_speech's arguments alike
    "max_length_ratio": {"threshold": 0.5, "min_length_ratio": 0.0, "max_length_ratio": 2.0},
    "min_length_then_threshold": {"threshold": 0.0, "min_length_ratio": 1.5, "max_length_ratio": 20.0},
}


def _script():
    spec = importlib.util.spec_from_file_location("speecht5_conformance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def speecht5(tmp_path_factory):
    """The tiny model, its speaker embedding, its addon compiled for every test backend, and loaded voices by backend."""
    script = _script()
    model = script.seeded_model(script.tiny_config(encoder_layers=1))  # two decoder layers: a cache per layer
    with torch.no_grad():
        model.speech_decoder_postnet.prob_out.bias.fill_(-6.0)  # sum of stop probabilities ~0.005: never stops alone
    speaker = script.seeded_speaker(model.config)
    vocoder = script.seeded_vocoder(script.tiny_vocoder_config(model.config.num_mel_bins))
    with torch.no_grad():
        vocoder.conv_post.weight.mul_(3e4)  # seeded HiFi-GAN whispers (~1e-5): make its waveform ~0.1 loud
    root = tmp_path_factory.mktemp("speecht5")
    script.build_addon(root / "addon", model, vocoder, speaker, dims=DIMS, decoder=CASES["max_length_ratio"])
    compile_addon(root / "addon", root / "compiled", TEST_BACKENDS, progress=False)
    return model, speaker, root / "compiled", {}, vocoder


def _voice(speecht5, backend: str, **decoder) -> Voice:
    """The compiled addon on ``backend`` (loaded once) with the AutoregressiveDecoder entry's fields changed."""
    _, _, compiled, loaded, _ = speecht5
    if backend not in loaded:
        loaded[backend] = ttsstack.load(compiled, backend=backend)
    voice = loaded[backend]
    data = voice.spec.to_dict()
    stack = data["stack"][0]["streamable_block"]["stack"]
    stack[0] = {**stack[0], **decoder}
    return Voice(parse_spec(data), voice.runners, BACKENDS.get(backend).block_variants, voice.options, backend)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ["eager", *TEST_BACKENDS])
def test_mel_equals_the_library_generate_speech(speecht5, backend, case):
    model, speaker, *_ = speecht5
    voice = _voice(speecht5, backend, **CASES[case])
    (tokens,) = list(voice.frontend.pieces(TEXT, 1000))
    with torch.no_grad():
        want = model.generate_speech(
            tokens, torch.tensor([speaker]), attention_mask=torch.ones_like(tokens),
            threshold=CASES[case]["threshold"], minlenratio=CASES[case]["min_length_ratio"],
            maxlenratio=CASES[case]["max_length_ratio"],
        ).numpy()
    steps = int(len(TEXT) * (1.5 if case == "min_length_then_threshold" else 2.0) / model.config.reduction_factor)
    assert want.shape == (steps * model.config.reduction_factor, model.config.num_mel_bins)
    got = voice.synthesize(TEXT)
    assert got.shape == want.shape
    error = np.abs(got - want).max()
    assert for_backend(backend).passes(error, np.abs(want).max()), error


@pytest.mark.parametrize("backend", ["eager", *TEST_BACKENDS])
def test_audio_equals_generate_speech_with_the_hifigan_vocoder(speecht5, backend):
    model, speaker, *_, vocoder = speecht5
    voice = _voice(speecht5, backend)
    (tokens,) = list(voice.frontend.pieces(TEXT, 1000))
    with torch.no_grad():
        want = model.generate_speech(
            tokens, torch.tensor([speaker]), attention_mask=torch.ones_like(tokens), maxlenratio=2.0, vocoder=vocoder
        ).numpy()
    got = voice.synthesize_audio(TEXT)
    assert got.shape == want.shape == (len(TEXT) * 8 * 2,)  # 15 steps of 2 frames, 8 samples each
    assert 0.01 < np.abs(want).max() < 1.0
    assert WAVEFORM.passes(np.abs(got - want).max(), np.abs(want).max())


def test_the_speaker_is_an_input_of_each_call(speecht5):
    model, speaker, *_ = speecht5
    voice = _voice(speecht5, "onnx-static")
    (tokens,) = list(voice.frontend.pieces(TEXT, 1000))
    other = torch.randn(1, len(speaker), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = model.generate_speech(tokens, other, attention_mask=torch.ones_like(tokens), maxlenratio=2.0).numpy()
    got = voice.synthesize(TEXT, speaker=other[0].numpy())
    assert np.abs(got - want).max() <= for_backend("onnx-static").atol * 10
    assert np.abs(got - voice.synthesize(TEXT, speaker="seeded")).max() > 1e-3  # another voice sounds different


@pytest.mark.parametrize(
    ("speaker", "message"),
    [
        ("nobody", "unknown voice 'nobody'; the addon's voices: seeded"),
        ([0.5, 1.0], r"must have 16 values \(\[16\] or \[1, 16\]\), got shape \[2\]"),
        ([float("nan")] * 16, "non-finite"),
        (np.zeros((2, 16)), r"got shape \[2, 16\]"),
        ({"a": 1}, "expected a voice name or 16 numbers"),
    ],
)
def test_a_bad_speaker_is_refused_naming_it(speecht5, speaker, message):
    voice = _voice(speecht5, "eager")
    with pytest.raises(ValueError, match=f"speaker: .*{message}"):
        voice.synthesize(TEXT, speaker=speaker)


def test_a_speaker_for_an_addon_without_one_is_refused(demo_compiled):
    voice = ttsstack.load(demo_compiled, backend="cpu")
    with pytest.raises(ValueError, match="speaker: this addon takes no speaker embedding"):
        voice.synthesize("Hi.", speaker="seeded")


def test_parity_passes_on_every_backend(speecht5):
    compiled = speecht5[2]
    with pytest.warns(DecoderCapWarning, match="within 24 steps, the capacity of cache dim T_cache"):
        report = check_parity(compiled, texts=["Hi.", TEXT, "a piece longer than the largest bucket."])
    assert report.passed, report.table()
    assert {row.backend for row in report.rows} == set(TEST_BACKENDS)


def _spec_with(**step_changes) -> dict:
    script = _script()
    config = script.tiny_config(encoder_layers=1)
    vocoder = script.seeded_vocoder(script.tiny_vocoder_config(config.num_mel_bins))
    data = script.addon_spec(config, vocoder, [0.0] * config.speaker_embedding_dim, dims=DIMS)
    data["networks"]["decoder_step"].update(step_changes)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"position": None}, r"states.past_keys.cache: a cache state needs the network's `position:` input"),
        ({"cache_mask": "text_mask"}, r"cache_mask input 'text_mask' must have shape \[1, 'T_cache'\]"),
        ({"states": {"past_keys": {"output": "step_keys", "cache": "T_text"}}}, "'T_text' is not a dim of input 'past_keys'"),
        ({"states": {"past_keys": {"output": "past_keys_out", "cache": "T_cache"}}}, "state output 'past_keys_out' is not an output"),
    ],
)
def test_a_wrong_cache_declaration_fails_naming_it(change, message):
    with pytest.raises(AddonError, match=message):
        parse_spec(_spec_with(**change))


def test_cache_output_must_hold_one_slot():
    data = _spec_with()
    data["networks"]["decoder_step"]["outputs"]["step_keys"]["shape"][3] = 2
    with pytest.raises(AddonError, match=r"cache output 'step_keys' must have shape \[2, 1, 2, 1, 16\]"):
        parse_spec(data)


def test_a_static_cache_too_large_to_allocate_is_refused_naming_the_dim():
    data = _spec_with()
    data["dims"]["T_cache"] = {"max": 1 << 20}  # allowed as a dim (waveform samples need that much), not as slots
    spec = parse_spec(data)
    static = BACKENDS.get("onnx-static")()
    with pytest.raises(BackendError, match=r"cache dim 'T_cache' holds 1048576 slots in every artifact of static backend "
                                           r"'onnx-static' .* give dims.T_cache.buckets"):
        static.buckets(spec.networks["decoder_step"], spec.dims, [1])
    data["dims"]["T_cache"] = {"max": 1 << 20, "buckets": [512]}
    spec = parse_spec(data)
    assert all(b["T_cache"] == 512 for b in static.buckets(spec.networks["decoder_step"], spec.dims, [1]))


def test_the_build_script_names_the_extra_without_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(SystemExit, match=r'pip install -e "\.\[transformers\]"'):
        runpy.run_path(str(SCRIPT))


def test_the_server_speaks_the_voice_a_request_picks(speecht5):
    """``voice`` picks one of the addon's speakers; OpenAI's names and none pick its default; others are 400."""
    import httpx

    from ttsstack.serve import create_app
    from ttsstack.tolerances import PCM16

    from .test_serve.conftest import running_server

    base = _voice(speecht5, "onnx-static")
    data = base.spec.to_dict()
    data["speaker"]["voices"]["other"] = torch.randn(16, generator=torch.Generator().manual_seed(7)).tolist()
    voice = Voice(parse_spec(data), base.runners, BACKENDS.get("onnx-static").block_variants, base.options, "onnx-static")
    text = "Hi."
    with running_server(create_app([voice])) as url:
        def speak(name):
            body = {"model": voice.spec.name, "input": text, "response_format": "pcm", "voice": name}
            return httpx.post(f"{url}/v1/audio/speech", json={k: v for k, v in body.items() if v is not None}, timeout=60)

        def samples(r):
            assert r.status_code == 200, r.text
            return np.frombuffer(r.content, dtype="<i2").astype(np.float32) / 32767.0

        default, other = (np.clip(voice.synthesize_audio(text, speaker=s), -1, 1) for s in ("seeded", "other"))
        assert np.abs(default - other).max() > 1e-3  # the two voices differ
        for name, want in [("other", other), ("seeded", default), ("alloy", default)]:
            got = samples(speak(name))
            assert got.shape == want.shape and np.abs(got - want).max() <= PCM16.atol + 1e-7, name
        r = speak("bob")
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["param"] == "voice" and "its voices: seeded, other" in error["message"]
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["voices"] == ["seeded", "other"]
