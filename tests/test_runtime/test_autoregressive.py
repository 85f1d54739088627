"""The autoregressive decoder block on the tiny Tacotron-like addon: stop, cap, state, binding, chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ttsstack
from ttsstack.addon import parse_spec
from ttsstack.compiler import compile_addon
from ttsstack.runtime import RuntimeOptions, Voice
from ttsstack.runtime.blocks.autoregressive import AutoregressiveDecoder, DecoderCapWarning
from ttsstack.runtime.blocks.base import StackError
from ttsstack.runtime.builder import plan_stack
from ttsstack.tolerances import STREAMING

from ..tiny_tacotron import build_tiny_tacotron, tiny_tacotron_spec

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "Hello there, world."
FRAMES_PER_TOKEN = 3


def _stack(decoder: dict | None = None) -> list[dict]:
    decoder = {"type": "AutoregressiveDecoder", **(decoder or {})}
    return [{"type": "StreamablePipeline", "sequence_block": {"type": "Encoders"},
             "streamable_block": {"type": "StreamableStack", "stack": [decoder, {"type": "Postnet"}]}}]


def _tokens(voice: Voice, text: str) -> int:
    return sum(t.shape[1] for t in voice.frontend.pieces(text, 10_000))


@pytest.fixture(scope="module")
def voice(tiny_tacotron_compiled) -> Voice:
    return ttsstack.load(tiny_tacotron_compiled, backend="cpu")


def test_stops_when_the_stop_token_fires(voice):
    for text in ("Hi.", TEXT):
        assert len(voice.synthesize(text)) == FRAMES_PER_TOKEN * _tokens(voice, text)


def test_cpu_matches_eager(voice, tiny_tacotron_compiled):
    eager = ttsstack.load(tiny_tacotron_compiled, backend="eager")
    np.testing.assert_array_equal(voice.synthesize(TEXT), eager.synthesize(TEXT))


@pytest.mark.parametrize("chunk", [1, 7, 100_000])
def test_chunked_output_equals_whole(voice, tiny_tacotron_compiled, chunk):
    whole = voice.synthesize(TEXT)
    options = RuntimeOptions(chunk_frames=chunk, first_chunk_frames=chunk)
    streamed = ttsstack.load(tiny_tacotron_compiled, backend="cpu", options=options)
    chunks = list(streamed.stream(TEXT))
    assert len(chunks[0]) <= chunk + streamed.vocoder.lookahead and all(len(c) <= chunk for c in chunks[1:])
    np.testing.assert_allclose(np.concatenate(chunks), whole, rtol=0, atol=STREAMING.atol)


def test_frames_stream_as_they_are_made(tiny_tacotron_compiled, monkeypatch):
    voice = ttsstack.load(tiny_tacotron_compiled, backend="cpu", options=RuntimeOptions(chunk_frames=8, first_chunk_frames=4))
    block = next(b for _, b in voice.tree() if isinstance(b, AutoregressiveDecoder))
    calls = []
    original = block.runner

    def counting(inputs):
        calls.append(1)
        return original(inputs)

    monkeypatch.setattr(block, "runner", counting)
    stream = voice.stream(TEXT)
    next(stream)
    # the first AR chunk holds the postnet's context (2) and the vocoder's lookahead (2) past the first 4 frames
    assert len(calls) == 4 + 2 + voice.vocoder.lookahead < FRAMES_PER_TOKEN * _tokens(voice, TEXT)


@pytest.mark.parametrize("first", [8, 16])
def test_first_audio_needs_only_the_first_chunk_and_the_lookaheads(tiny_tacotron_compiled, monkeypatch, first):
    # the schedule alone: no mel thread running ahead of the vocoder while the first audio is counted
    options = RuntimeOptions(chunk_frames=64, first_chunk_frames=first, vocoder_thread=False)
    voice = ttsstack.load(tiny_tacotron_compiled, backend="cpu", options=options)
    block = next(b for _, b in voice.tree() if isinstance(b, AutoregressiveDecoder))
    steps = []
    original = block.runner
    monkeypatch.setattr(block, "runner", lambda inputs: steps.append(1) or original(inputs))
    audio = next(voice.stream_audio(TEXT))
    # first audio after `first` steps plus the postnet's context and Griffin-Lim's lookahead: 4 frames in all
    assert block.downstream == 2 + voice.vocoder.lookahead == 4
    assert len(steps) == first + 4
    assert len(audio) == min(first, voice.vocoder.griffin_lim.first_block_frames) * voice.spec.audio.hop_length


def test_memory_is_bound_once_and_states_carried_by_name(voice, monkeypatch):
    block = next(b for _, b in voice.tree() if isinstance(b, AutoregressiveDecoder))
    bound, seen = [], []
    original = block.bind_step

    def binding(prepared):
        bound.append(prepared)
        step = original(prepared)

        def recording(states):
            seen.append(dict(states))
            return step(states)

        return recording

    monkeypatch.setattr(block, "bind_step", binding)
    voice.synthesize("Abc.")
    assert len(bound) == 1 and set(bound[0]) == {"memory", "memory_mask"}  # prepared and bound once per utterance
    assert all(set(s) == set(block.spec.states) for s in seen)  # each step passes only the states
    assert torch.equal(seen[0]["step"], torch.zeros(1, 1))
    assert [s["step"].item() for s in seen] == list(range(len(seen)))  # new_step fed back as step
    assert seen[0]["attention"].shape == (1, 4)  # a state's named dim sized like the memory


def test_never_stopping_decoder_is_cut_at_the_cap_with_a_warning(tmp_path):
    source = build_tiny_tacotron(tmp_path / "addon", frames_per_token=None, stack=_stack({"max_decoder_steps": 25}))
    compile_addon(source, tmp_path / "compiled", [], progress=False)
    voice = ttsstack.load(tmp_path / "compiled", backend="eager", warmup=False)  # warm-up would hit the cap too
    with pytest.warns(DecoderCapWarning, match=r"AutoregressiveDecoder\): the stop token did not fire within max_decoder_steps=25"):
        mel = voice.synthesize("Abc.")
    assert len(mel) == 25


def test_decoder_must_come_first_in_its_stack():
    stack = _stack()
    stack[0]["streamable_block"]["stack"].append({"type": "AutoregressiveDecoder", "frames": "more_frames"})
    with pytest.raises(StackError, match=r"stack\[2\] \(AutoregressiveDecoder\): makes its own stream.*producing 'mel'"):
        plan_stack(parse_spec(tiny_tacotron_spec(stack=stack)))


def test_unknown_frame_output_names_the_entry():
    with pytest.raises(StackError, match=r"stack\[0\]\.frame: network 'decoder_step' has no output 'mel_frame'; it has frame, stop"):
        plan_stack(parse_spec(tiny_tacotron_spec(stack=_stack({"frame": "mel_frame"}))))


def test_state_dim_no_data_input_fixes_fails_at_load():
    spec = tiny_tacotron_spec()
    step = spec["networks"]["decoder_step"]
    step["inputs"]["attention"]["shape"] = [1, "T_frames"]
    step["outputs"]["new_attention"]["shape"] = [1, "T_frames"]
    with pytest.raises(StackError, match=r"state 'attention' of network 'decoder_step' has dim 'T_frames'"):
        plan_stack(parse_spec(spec))


def test_threshold_outside_unit_interval_is_a_config_error():
    with pytest.raises(StackError, match=r"stack\[0\]\.threshold"):
        plan_stack(parse_spec(tiny_tacotron_spec(stack=_stack({"threshold": 1.5}))))
