"""The bundled tacotron2-demo addon: stop token, every backend's parity over 250 steps, exact streaming, the parity command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ttsstack
from ttsstack.addon import parse_spec
from ttsstack.cli import main
from ttsstack.runtime import RuntimeOptions, Voice
from ttsstack.runtime.blocks.autoregressive import DecoderCapWarning
from ttsstack.runtime.network import with_length_inputs
from ttsstack.runtime.registry import BACKENDS
from ttsstack.tolerances import STREAMING, for_backend

from .conftest import TEST_BACKENDS

pytestmark = pytest.mark.usefixtures("one_thread")
pytest.importorskip("espeakng_loader", reason="the demo's phonemes frontend needs espeak-ng (the [espeak] extra)")

TEXT = "The quick brown fox jumps over the lazy dog."
FORCED_STEPS = 250


def _with_decoder(voice: Voice, **decoder) -> Voice:
    """The same loaded networks and block variants with the AutoregressiveDecoder entry's config changed."""
    data = voice.spec.to_dict()
    stack = data["stack"][0]["streamable_block"]["stack"]
    stack[0] = {**stack[0], **decoder}
    return Voice(parse_spec(data), voice.runners, BACKENDS.get(voice.backend).block_variants, voice.options, voice.backend)


def _frames_per_step(voice: Voice) -> int:
    return voice.spec.networks["decoder_step"].outputs["frame"].shape[1]


def _forced(voice: Voice) -> np.ndarray:
    """Mel of TEXT decoded for exactly FORCED_STEPS steps (the stop token can never fire)."""
    with pytest.warns(DecoderCapWarning):
        return _with_decoder(voice, threshold=1.0, max_decoder_steps=FORCED_STEPS).synthesize(TEXT)


@pytest.fixture(scope="module")
def cpu(tacotron_compiled) -> Voice:
    return ttsstack.load(tacotron_compiled, backend="cpu")


def test_stop_token_ends_the_utterance_well_before_the_cap(cpu):
    cap = cpu.spec.stack[0]["streamable_block"]["stack"][0]["max_decoder_steps"] * _frames_per_step(cpu)
    short, long = cpu.synthesize("Hello world."), cpu.synthesize(TEXT)
    for text, mel in (("Hello world.", short), (TEXT, long)):
        assert 3 <= len(mel) / len(text) <= 10  # speech-like frames per character (espeak-ng: 6-8)
        assert len(mel) < cap / 4


@pytest.fixture(scope="module")
def forced_eager(tacotron_compiled) -> np.ndarray:
    return _forced(ttsstack.load(tacotron_compiled, backend="eager"))


@pytest.mark.parametrize("backend", TEST_BACKENDS)
def test_every_backend_matches_eager_for_250_steps(tacotron_compiled, forced_eager, backend):
    """Static backends pad the memory to the 64 bucket (33 phonemes) and mask it: the frames stay the reference's."""
    voice = ttsstack.load(tacotron_compiled, backend=backend)
    forced = _forced(voice)
    assert forced.shape == forced_eager.shape == (FORCED_STEPS * _frames_per_step(voice), 80)
    error = np.abs(forced - forced_eager).max()
    assert for_backend(backend).passes(error, np.abs(forced_eager).max()), error


def _whole_utterance(voice: Voice, text: str) -> np.ndarray:
    """Reference without blocks: encoder once, decoder_step until the stop token, postnet on every frame at once."""
    run = voice.runners
    (tokens,) = list(voice.frontend.pieces(text, 10_000))
    length = tokens.shape[1]
    with torch.inference_mode():
        encoded = run["encoder"](with_length_inputs(run["encoder"].spec, {"tokens": tokens}, length, length))
        step_spec = run["decoder_step"].spec
        inputs = with_length_inputs(step_spec, dict(encoded), length, length)
        for name in step_spec.states:
            shape = [length if d == "T_text" else d for d in step_spec.inputs[name].shape]
            inputs[name] = torch.zeros(shape)
        frames = []
        while True:
            out = run["decoder_step"](inputs)
            inputs.update({name: out[state.output] for name, state in step_spec.states.items()})
            frames.append(out["frame"])
            if torch.sigmoid(out["stop"]).item() > 0.5:
                break
        frames = torch.cat(frames, dim=1)
        postnet = with_length_inputs(run["postnet"].spec, {"frames": frames}, frames.shape[1], frames.shape[1])
        return run["postnet"](postnet)["mel"][0].numpy()


@pytest.fixture(scope="module")
def whole_cpu(cpu) -> np.ndarray:
    return _whole_utterance(cpu, TEXT)


@pytest.mark.parametrize("chunk", [1, 13, 100_000])
def test_streamed_postnet_equals_the_whole_utterance(tacotron_compiled, whole_cpu, chunk):
    reference = whole_cpu
    options = RuntimeOptions(chunk_frames=chunk, first_chunk_frames=chunk)
    voice = ttsstack.load(tacotron_compiled, backend="cpu", options=options)
    chunks = list(voice.stream(TEXT))
    assert len(chunks[0]) <= chunk + voice.vocoder.lookahead and all(len(c) <= chunk for c in chunks[1:])
    mel = np.concatenate(chunks)
    assert mel.shape == reference.shape
    assert np.abs(mel - reference).max() <= STREAMING.atol


def test_parity_command_passes_on_every_backend(tacotron_compiled, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("Attention, one frame at a time.\n")  # 23 phonemes: the 32 bucket
    assert main(["parity", str(tacotron_compiled), "--texts", str(texts)]) == 0
    out = capsys.readouterr().out
    assert f"all {5 * len(TEST_BACKENDS)} checks passed" in out
    for backend in TEST_BACKENDS:
        assert f"{backend:12s} decoder_step" in out and f"{backend:12s} mel, streamed" in out
