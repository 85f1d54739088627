"""The bundled tacotron2-demo addon: stop token, backend parity over 250 steps, exact streaming, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ttsstack
from ttsstack.addon import parse_spec
from ttsstack.runtime import RuntimeOptions, Voice
from ttsstack.runtime.blocks.autoregressive import AutoregressiveDecoder, DecoderCapWarning
from ttsstack.runtime.blocks.encoders import NetworkBlock
from ttsstack.runtime.network import with_length_inputs
from ttsstack.tolerances import STREAMING, TORCHSCRIPT

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "The quick brown fox jumps over the lazy dog."
FORCED_STEPS = 250
BUCKET = 64


def _with_decoder(voice: Voice, variants: dict | None = None, **decoder) -> Voice:
    """The same loaded networks with the AutoregressiveDecoder entry's config changed (and block variants)."""
    data = voice.spec.to_dict()
    stack = data["stack"][0]["streamable_block"]["stack"]
    stack[0] = {**stack[0], **decoder}
    return Voice(parse_spec(data), voice.runners, variants, voice.options, voice.backend)


def _forced(voice: Voice, variants: dict | None = None) -> np.ndarray:
    """Mel of TEXT decoded for exactly FORCED_STEPS steps (the stop token can never fire)."""
    with pytest.warns(DecoderCapWarning):
        return _with_decoder(voice, variants, threshold=1.0, max_decoder_steps=FORCED_STEPS).synthesize(TEXT)


@pytest.fixture(scope="module")
def cpu(tacotron_compiled) -> Voice:
    return ttsstack.load(tacotron_compiled, backend="cpu")


@pytest.fixture(scope="module")
def forced_cpu(cpu) -> np.ndarray:
    return _forced(cpu)


def test_stop_token_ends_the_utterance_well_before_the_cap(cpu):
    cap = cpu.spec.stack[0]["streamable_block"]["stack"][0]["max_decoder_steps"]
    short, long = cpu.synthesize("Hello world."), cpu.synthesize(TEXT)
    for text, mel in (("Hello world.", short), (TEXT, long)):
        assert 3 <= len(mel) / len(text) <= 8  # speech-like frames per symbol
        assert len(mel) < cap / 4


def test_cpu_matches_eager_for_250_steps(tacotron_compiled, forced_cpu):
    eager = _forced(ttsstack.load(tacotron_compiled, backend="eager"))
    assert eager.shape == forced_cpu.shape == (FORCED_STEPS, 80)
    error = np.abs(forced_cpu - eager).max()
    assert TORCHSCRIPT.passes(error, np.abs(eager).max()), error


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
    chunks = list(ttsstack.load(tacotron_compiled, backend="cpu", options=options).stream(TEXT))
    assert all(len(c) <= chunk for c in chunks)
    mel = np.concatenate(chunks)
    assert mel.shape == reference.shape
    assert np.abs(mel - reference).max() <= STREAMING.atol


class PaddedEncoder(NetworkBlock):
    """What a static backend's encoder does: tokens padded to a bucket, lengths/mask filled, output cropped."""

    def call(self, inputs):
        tokens = inputs["tokens"]
        length = tokens.shape[1]
        padded = torch.nn.functional.pad(tokens, (0, BUCKET - length), value=0)
        out = self.runner(with_length_inputs(self.spec, {"tokens": padded}, BUCKET, length))
        return {name: value[:, :length] for name, value in out.items()}


class PaddedDecoder(AutoregressiveDecoder):
    """What a static backend's decoder does: memory padded to the bucket once, the attention masks the padding."""

    def prepare(self, tensors):
        length = tensors["memory"].shape[1]
        inputs = {n: torch.nn.functional.pad(tensors[n], (0, 0, 0, BUCKET - length), value=3.0) for n in self.data_inputs}
        return with_length_inputs(self.spec, inputs, BUCKET, length)


def test_padding_to_a_bucket_gives_the_same_frames_for_250_steps(cpu, forced_cpu):
    padded = _forced(cpu, {"Network": PaddedEncoder, "AutoregressiveDecoder": PaddedDecoder})
    error = np.abs(padded - forced_cpu).max()
    assert TORCHSCRIPT.passes(error, np.abs(forced_cpu).max()), error
