"""Per-call speed: the Upsampler divides durations by the call's ``speed`` tensor; other stacks get the mel resampled."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ttsstack

from ..tiny_addon import SYMBOLS
from .test_stack import _load_with_stack, _stack

TEXT = "Speed changes durations, nothing else."


def _expected_frames(tiny_addon, text: str, speed: float) -> int:
    """Frames of ``text`` at ``speed``, computed outside ttsstack's runtime.

    The tokens follow the characters frontend's definition (each character's
    index in the symbols), the durations come from the source addon's own
    exported programs run in eager PyTorch, and each token gets its duration
    divided by ``speed`` rounded half up, in float64 numpy.
    """
    tokens = torch.tensor([[SYMBOLS.index(c) for c in text.lower() if c in SYMBOLS]])
    encoder = torch.export.load(tiny_addon / "networks" / "text_encoder.pt2").module()
    durations_net = torch.export.load(tiny_addon / "networks" / "duration_encoder.pt2").module()
    with torch.inference_mode():
        durations = durations_net(encoder(tokens, torch.ones(tokens.shape, dtype=torch.float32)))
    scaled = durations.double().numpy()[0] / speed
    assert np.all(np.abs(scaled - np.floor(scaled) - 0.5) > 1e-4), "a duration on a rounding tie: pick another speed"
    return int(np.floor(scaled + 0.5).sum())


@pytest.fixture(scope="module")
def voice(tiny_compiled):
    return ttsstack.load(tiny_compiled, backend="cpu")


@pytest.mark.parametrize("speed", [0.5, 1.7, 3.0])
def test_speed_scales_the_frame_count(voice, tiny_addon, speed):
    mel = voice.synthesize(TEXT, speed=speed)
    assert len(mel) == _expected_frames(tiny_addon, TEXT, speed)


def test_default_speed_is_the_trained_rate(voice, tiny_addon):
    assert len(voice.synthesize(TEXT)) == _expected_frames(tiny_addon, TEXT, 1.0)
    fast = voice.synthesize_audio(TEXT, speed=2.0)
    assert len(fast) == _expected_frames(tiny_addon, TEXT, 2.0) * voice.spec.audio.hop_length


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan, math.inf])
def test_bad_speed_is_a_clear_error(voice, speed):
    with pytest.raises(ValueError, match="speed must be a finite number > 0"):
        voice.synthesize(TEXT, speed=speed)


def test_a_stack_that_reads_no_speed_gets_its_mel_resampled(tiny_compiled_copy):
    """With no block reading ``speed`` (here the Upsampler is told not to; an attention decoder never does),
    the Voice resamples the mel along time: the same speech in ``ceil(N / speed)`` frames."""
    stack = _stack(streams=[{"type": "Upsampler", "speed": None}, {"type": "Decoder"}])
    ignoring = _load_with_stack(tiny_compiled_copy, stack)
    assert not ignoring.stack_reads_speed
    normal = ignoring.synthesize(TEXT)
    fast = ignoring.synthesize(TEXT, speed=2.0)
    assert len(fast) == math.ceil(len(normal) / 2)
    np.testing.assert_allclose(fast, normal[::2], rtol=1e-6)  # speed 2: every other frame exactly


def test_speed_changes_an_attention_addon(tiny_tacotron_compiled):
    voice = ttsstack.load(tiny_tacotron_compiled, backend="cpu", compile_if_needed=False)
    normal = voice.synthesize("Hello there.")
    slow = voice.synthesize("Hello there.", speed=0.5)
    assert len(slow) == 2 * len(normal)
    np.testing.assert_allclose(slow[::2], normal, rtol=1e-6)
    np.testing.assert_allclose(slow[1:-1:2], (normal[:-1] + normal[1:]) / 2, rtol=1e-5, atol=1e-6)
