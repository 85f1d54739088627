"""Per-call speed: the Upsampler divides durations by the call's ``speed`` tensor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ttsstack

from .test_stack import _load_with_stack, _stack

TEXT = "Speed changes durations, nothing else."


def _expected_frames(voice, text: str, speed: float) -> int:
    """Frames of ``text`` at ``speed``: the encoders' durations divided by speed, rounded, summed."""
    total = 0
    for tokens in voice.frontend.pieces(text, voice.max_tokens):
        with torch.inference_mode():
            durations = voice.root.sequence.run({"tokens": tokens})["durations"]
        total += int((durations / speed).round().clamp(min=0).sum())
    return total


@pytest.fixture(scope="module")
def voice(tiny_compiled):
    return ttsstack.load(tiny_compiled, backend="cpu")


@pytest.mark.parametrize("speed", [0.5, 1.0, 1.7, 3.0])
def test_speed_scales_the_frame_count(voice, speed):
    mel = voice.synthesize(TEXT, speed=speed)
    assert len(mel) == _expected_frames(voice, TEXT, speed)


def test_default_speed_is_the_trained_rate(voice):
    np.testing.assert_array_equal(voice.synthesize(TEXT, speed=1.0), voice.synthesize(TEXT))
    fast = voice.synthesize_audio(TEXT, speed=2.0)
    assert len(fast) == _expected_frames(voice, TEXT, 2.0) * voice.spec.audio.hop_length


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan, math.inf])
def test_bad_speed_is_a_clear_error(voice, speed):
    with pytest.raises(ValueError, match="speed must be a finite number > 0"):
        voice.synthesize(TEXT, speed=speed)


def test_upsampler_can_leave_speed_to_a_network(tiny_compiled_copy):
    stack = _stack(streams=[{"type": "Upsampler", "speed": None}, {"type": "Decoder"}])
    ignoring = _load_with_stack(tiny_compiled_copy, stack)
    np.testing.assert_array_equal(ignoring.synthesize(TEXT, speed=2.0), ignoring.synthesize(TEXT))
