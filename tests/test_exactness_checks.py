"""Compile checks that an addon's exactness declarations are true: ``context`` probed, ``mask`` tried with real padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ttsstack
from ttsstack.addon import NetworkSpec
from ttsstack.compiler import CompileError, compile_addon, read_manifest
from ttsstack.compiler.validate import measured_radius

from .tiny_addon import CHANNELS, N_MELS, tiny_examples, tiny_modules, tiny_spec


class MaskIgnoringDecoder(nn.Module):
    """The tiny decoder's convs without zeroing padded steps: declares a mask it does not use."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(CHANNELS, CHANNELS, 3, padding=1)
        self.conv2 = nn.Conv1d(CHANNELS, N_MELS, 3, padding=1)

    def forward(self, frames, mask):
        return self.conv2(torch.relu(self.conv1(frames.transpose(1, 2)))).transpose(1, 2)


def _build(folder, decoder_context=2, decoder=None):
    spec = tiny_spec()
    spec["networks"]["decoder"]["context"] = decoder_context
    modules = tiny_modules()
    if decoder is not None:
        modules["decoder"] = decoder
    ttsstack.write_addon(folder, spec, modules, tiny_examples())
    return folder


def test_a_context_declared_too_small_fails_the_compile_naming_the_network(tmp_path):
    source = _build(tmp_path / "addon", decoder_context=1)  # two radius-1 convs reach 2 frames
    with pytest.raises(CompileError) as failed:
        compile_addon(source, tmp_path / "out", ["cpu"], progress=False)
    message = str(failed.value)
    assert "decoder [cpu]: ContextTooSmall: network 'decoder' declares context 1, but its output reaches 2 steps" in message
    assert "declare context: 2 or more" in message
    assert set(failed.value.report.compiled) == {"text_encoder [cpu]", "duration_encoder [cpu]"}  # their contexts hold


def test_a_mask_the_network_ignores_fails_the_static_compile_naming_network_and_bucket(tmp_path):
    source = _build(tmp_path / "addon", decoder=MaskIgnoringDecoder())
    with pytest.raises(CompileError) as failed:
        compile_addon(source, tmp_path / "out", ["neuron"], buckets={"T_frames": [32]}, progress=False)
    message = str(failed.value)
    assert "decoder [neuron {'T_frames': 32}]: ValidationFailure: network 'decoder' on backend 'neuron'" in message
    assert "mel at {'T_frames': 21, 'padded to T_frames': 32}" in message
    assert {a.network for a in read_manifest(tmp_path / "out").artifacts} == {"text_encoder", "duration_encoder"}


def test_the_probe_measures_an_upsampling_network_in_input_frames():
    class Upsampler(nn.Module):
        """Frames to 4 samples each, then a radius-2 conv over samples: reaches 1 frame (2 samples) each side."""

        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose1d(2, 2, 4, stride=4)
            self.conv = nn.Conv1d(2, 1, 5, padding=2)

        def forward(self, frames):
            return self.conv(self.up(frames.transpose(1, 2))).squeeze(1)

    spec = NetworkSpec(role="vocoder", file="v.pt2", context=0,
                       inputs={"frames": {"shape": [1, "T_frames", 2]}}, outputs={"audio": {"shape": [1, "T_samples"]}})
    from ttsstack.addon import DimSpec

    dims = {"T_frames": DimSpec(max=64), "T_samples": DimSpec(max=256)}
    distance, where = measured_radius(spec, Upsampler().eval(), dims)
    assert distance == 1 and "moved output 'audio'" in where
