"""A dim's ``min``: programs that need a few steps (reflect padding) export, and shorter calls are padded or refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttsstack.addon import AddonError, DimSpec, NetworkSpec, parse_spec
from ttsstack.backends.base import ModuleRunner
from ttsstack.runtime.short_calls import ShortCallError, ShortCallPadding, short_call_runners

from ..tiny_addon import tiny_spec

MIN = 4
"""A reflect-padded kernel of 7 pads 3 steps each side: it needs at least 4."""


class ReflectVocoder(nn.Module):
    """UnivNet's and Vocos's opening layer: a reflect-padded convolution, its input masked, then 2 samples per frame."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 2, 7, padding=3, padding_mode="reflect")

    def forward(self, mel: torch.Tensor, mel_mask: torch.Tensor) -> torch.Tensor:
        x = self.conv((mel * mel_mask.unsqueeze(-1)).transpose(1, 2))
        return x.transpose(1, 2).reshape(1, -1)


def _spec(mask: bool = True) -> NetworkSpec:
    inputs = {"mel": {"shape": [1, "T_frames", 3]}} | ({"mel_mask": {"shape": [1, "T_frames"]}} if mask else {})
    return NetworkSpec.model_validate({
        "role": "vocoder", "file": "networks/vocoder.pt2", "context": 3, **({"mask": "mel_mask"} if mask else {}),
        "inputs": inputs, "outputs": {"audio": {"shape": [1, "T_samples"]}},
    })


@pytest.fixture(scope="module")
def program():
    torch.manual_seed(0)
    module = ReflectVocoder().eval()
    frames = torch.export.Dim("T_frames", min=MIN, max=256)
    return module, torch.export.export(module, (torch.randn(1, 9, 3), torch.ones(1, 9)), dynamic_shapes=({1: frames}, {1: frames}))


def test_a_dim_min_is_checked_and_written_only_where_set():
    assert DimSpec(max=64, min=MIN).clamp(2) == MIN and DimSpec(max=64).clamp(100) == 64
    with pytest.raises(ValueError, match="min: 80 exceeds max 64"):
        DimSpec(max=64, min=80)
    with pytest.raises(ValueError, match="smallest bucket 2 is below min 4"):
        DimSpec(max=64, min=MIN, buckets=[2, 64])
    spec = tiny_spec()
    spec["dims"]["T_frames"]["min"] = MIN
    written = parse_spec(spec).to_dict()["dims"]
    assert written["T_frames"]["min"] == MIN and "min" not in written["T_text"]
    spec["dims"]["T_frames"]["min"] = 0
    with pytest.raises(AddonError, match="dims.T_frames.min"):
        parse_spec(spec)


def test_the_program_itself_refuses_fewer_steps_than_its_min(program):
    _, exported = program
    with pytest.raises(Exception, match="T_frames|mel"):
        exported.module()(torch.randn(1, 2, 3), torch.ones(1, 2))


def test_a_short_call_is_padded_to_the_min_and_cropped(program):
    module, exported = program
    runner = short_call_runners({"vocoder": ModuleRunner(_spec(), exported.module())}, {"T_frames": DimSpec(max=256, min=MIN)})["vocoder"]
    assert isinstance(runner, ShortCallPadding)
    mel = torch.randn(1, 2, 3)
    got = runner({"mel": mel, "mel_mask": torch.ones(1, 2)})["audio"]
    padded = torch.cat([mel, torch.zeros(1, MIN - 2, 3)], dim=1)
    want = module(padded, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))[:, : 2 * 2]
    assert got.shape == (1, 4) and torch.allclose(got, want, atol=1e-6)
    long = torch.randn(1, 12, 3)
    assert torch.equal(runner({"mel": long, "mel_mask": torch.ones(1, 12)})["audio"], exported.module()(long, torch.ones(1, 12)))


def test_a_short_call_without_a_mask_is_refused_naming_the_dim():
    unmasked = ModuleRunner(_spec(mask=False), lambda mel: mel.reshape(1, -1))
    runner = short_call_runners({"vocoder": unmasked}, {"T_frames": DimSpec(max=256, min=MIN)})["vocoder"]
    with pytest.raises(ShortCallError, match="network 'vocoder': 2 steps along T_frames, fewer than its min 4.*no mask/lengths"):
        runner({"mel": torch.randn(1, 2, 3)})


def test_runners_of_dims_without_a_min_are_left_as_they_are(program):
    runner = ModuleRunner(_spec(), program[1].module())
    assert short_call_runners({"vocoder": runner}, {"T_frames": DimSpec(max=256)})["vocoder"] is runner
