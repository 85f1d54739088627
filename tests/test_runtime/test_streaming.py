"""Exact streaming: streamed mel equals the whole-utterance reference at every chunk size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ttsstack
from ttsstack.addon import load_addon
from ttsstack.runtime import RuntimeOptions
from ttsstack.runtime.network import with_length_inputs
from ttsstack.tolerances import STREAMING

TEXT = "Hello world, streaming speech."


def whole_utterance_reference(addon_dir, text: str) -> np.ndarray:
    """What a team without a framework computes: each program once on the whole sentence (masks all ones)."""
    addon = load_addon(addon_dir)
    voice = ttsstack.load(addon_dir, backend="eager")
    (tokens,) = list(voice.frontend.pieces(text, 10_000))
    programs = {n: addon.load_program(n).module() for n in addon.spec.networks}

    def run(name: str, data: torch.Tensor) -> torch.Tensor:
        spec = addon.spec.networks[name]
        inputs = with_length_inputs(spec, {next(iter(spec.data_inputs)): data}, data.shape[1], data.shape[1])
        return programs[name](*(inputs[n] for n in spec.inputs))

    with torch.inference_mode():
        encoded = run("text_encoder", tokens)
        durations = run("duration_encoder", encoded)
        frames = torch.repeat_interleave(encoded, durations[0].round().clamp(min=0).long(), dim=1)
        return run("decoder", frames)[0].numpy()


@pytest.fixture(scope="module")
def demo_reference(demo_compiled):
    return whole_utterance_reference(demo_compiled, TEXT)


@pytest.mark.parametrize("chunk", [1, 13, 64, 100_000])
def test_demo_streamed_equals_whole_utterance(demo_compiled, demo_reference, chunk):
    voice = ttsstack.load(demo_compiled, backend="cpu", options=RuntimeOptions(chunk_frames=chunk, first_chunk_frames=chunk))
    chunks = list(voice.stream(TEXT))
    # the first chunk also holds the vocoder's lookahead, so Griffin-Lim can start on it
    assert len(chunks[0]) <= chunk + voice.vocoder.lookahead and all(len(c) <= chunk for c in chunks[1:])
    mel = np.concatenate(chunks)
    assert mel.shape == demo_reference.shape
    assert np.abs(mel - demo_reference).max() <= STREAMING.atol


def test_demo_durations_are_speech_like(demo_compiled):
    voice = ttsstack.load(demo_compiled, backend="cpu")
    mel = voice.synthesize(TEXT)
    frames_per_symbol = len(mel) / len(TEXT)
    assert 2 <= frames_per_symbol <= 15


def test_first_chunk_arrives_before_the_utterance_is_decoded(demo_compiled, monkeypatch):
    voice = ttsstack.load(demo_compiled, backend="cpu", options=RuntimeOptions(chunk_frames=32, first_chunk_frames=16))
    decoder = []
    block = voice.tree()[-1][1]
    original = block.runner

    def counting(inputs):
        decoder.append(inputs["frames"].shape[1])
        return original(inputs)

    monkeypatch.setattr(block, "runner", counting)
    stream = voice.stream("A fairly long sentence that takes many decoder chunks to finish.")
    first = next(stream)
    assert len(first) == 16 + voice.vocoder.lookahead
    assert len(decoder) == 1  # one decoder window ran, not the whole utterance
    rest = list(stream)
    assert len(decoder) == 1 + len(rest)


def test_first_chunk_latency_makes_only_the_first_audio(demo_compiled, monkeypatch):
    # without the mel thread, which may make a chunk or two ahead of the vocoder (test_prefetch.py)
    options = RuntimeOptions(chunk_frames=32, first_chunk_frames=16, vocoder_thread=False)
    voice = ttsstack.load(demo_compiled, backend="cpu", options=options)
    decoder = []
    block = voice.tree()[-1][1]
    original = block.runner
    monkeypatch.setattr(block, "runner", lambda inputs: decoder.append(1) or original(inputs))
    text = "A fairly long sentence that takes many decoder chunks to finish. And a second one."
    first_mel, first_audio = voice.first_chunk_latency(text)
    # the first chunk holds the vocoder's lookahead past Griffin-Lim's first block: one decoder window, then it stops
    assert len(decoder) == 1
    assert 0 < first_mel <= first_audio
    whole = voice.synthesize_timed(text)
    assert len(decoder) > 6 and whole.first_audio_s <= whole.total_s


def test_sentences_stream_in_order(tiny_compiled):
    voice = ttsstack.load(tiny_compiled, backend="cpu")
    both = voice.synthesize("Abc. Defg!")
    first, second = voice.synthesize("Abc."), voice.synthesize("Defg!")
    np.testing.assert_allclose(both, np.concatenate([first, second]), atol=STREAMING.atol)


def test_decoder_windows_never_exceed_the_frame_dim_max(tmp_path):
    """A chunk size above T_frames max is capped so every window stays within what the program accepts."""
    from ..tiny_addon import build_tiny_addon, tiny_spec

    dims = tiny_spec()["dims"]
    dims["T_frames"] = {"max": 40}
    src = build_tiny_addon(tmp_path / "small", dims=dims)
    voice = ttsstack.load(src, backend="eager", options=RuntimeOptions(chunk_frames=10_000, first_chunk_frames=10_000))
    chunks = list(voice.stream("a fairly long sentence for forty frames"))
    assert max(len(c) for c in chunks) == 40 - 2 * 2
    reference = ttsstack.load(src, backend="eager", options=RuntimeOptions(chunk_frames=8, first_chunk_frames=8))
    np.testing.assert_allclose(np.concatenate(chunks), reference.synthesize("a fairly long sentence for forty frames"), atol=STREAMING.atol)


def test_chunks_double_from_the_first_up_to_the_rest():
    from itertools import islice

    from ttsstack.runtime.blocks.windows import chunk_sizes

    assert list(islice(chunk_sizes(32, 256), 6)) == [32, 64, 128, 256, 256, 256]
    assert list(islice(chunk_sizes(32, 100), 4)) == [32, 64, 100, 100]
    assert list(islice(chunk_sizes(64, 16), 3)) == [64, 16, 16]


def test_a_later_sentence_goes_on_with_the_schedule():
    """A piece after ``prior`` frames starts at that many (within first..rest), not small again."""
    from itertools import islice

    from ttsstack.runtime.blocks.windows import chunk_sizes

    assert list(islice(chunk_sizes(8, 256, lead=3, prior=0), 3)) == [11, 16, 32]
    assert list(islice(chunk_sizes(8, 256, lead=3, prior=40), 3)) == [43, 80, 160]
    assert list(islice(chunk_sizes(8, 256, prior=5), 2)) == [8, 16]
    assert list(islice(chunk_sizes(8, 256, prior=1000), 2)) == [256, 256]


def test_second_sentence_chunks_are_not_restarted_small(demo_compiled, monkeypatch):
    """The decoder's windows of a second sentence start at the frames already streamed; the mel is unchanged."""
    options = RuntimeOptions(chunk_frames=64, first_chunk_frames=4, vocoder_thread=False)
    voice = ttsstack.load(demo_compiled, backend="cpu", options=options)
    block = voice.tree()[-1][1]
    original = block.runner
    windows: list[int] = []
    monkeypatch.setattr(block, "runner", lambda inputs: windows.append(inputs["frames"].shape[1]) or original(inputs))
    first_sentence = "A fairly long sentence that takes many decoder chunks to finish."
    alone = len(voice.synthesize(first_sentence))
    calls_alone = len(windows)
    text = first_sentence + " And a second one, a little longer than a few frames."
    mel = voice.synthesize(text)
    second = windows[2 * calls_alone:]
    context = block.spec.context
    assert min(second[:-1]) > min(64, alone)  # its first window holds min(prior, 64) frames plus context
    assert second[0] == min(64, alone) + voice.vocoder.lookahead + context
    piecewise = np.concatenate([voice.synthesize(first_sentence), voice.synthesize("And a second one, a little longer than a few frames.")])
    np.testing.assert_allclose(mel, piecewise, atol=STREAMING.atol)
