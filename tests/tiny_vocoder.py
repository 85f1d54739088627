"""A tiny HiFi-GAN-like vocoder network added to the compiled tiny addon: 8 mel bins in, 8 samples per frame out.

Transposed convolutions upsample by 4 and 2 with convolutions and a residual
around them, widths 8 to 16; its receptive radius is :data:`CONTEXT` frames
(measured by :func:`receptive_radius`). It is exported wrapped in
:class:`~ttsstack.masking.MaskedConvolutions`, so static backends can pad it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.nn import functional as F

import ttsstack
from ttsstack.addon import ADDON_FILE
from ttsstack.compiler import compile_addon
from ttsstack.masking import MaskedConvolutions

from .tiny_addon import N_MELS, tiny_spec

SAMPLES_PER_FRAME = 8
CONTEXT = 4


class TinyHifiGan(nn.Module):
    """conv_pre, two (leaky ReLU, ConvTranspose1d, residual Conv1d) stages, conv_post, tanh: HiFi-GAN's shape."""

    def __init__(self):
        super().__init__()
        self.conv_pre = nn.Conv1d(N_MELS, 16, 5, padding=2)
        self.ups = nn.ModuleList([nn.ConvTranspose1d(16, 12, 8, stride=4, padding=2), nn.ConvTranspose1d(12, 8, 4, stride=2, padding=1)])
        self.resblocks = nn.ModuleList([nn.Conv1d(12, 12, 3, padding=1), nn.Conv1d(8, 8, 3, padding=2, dilation=2)])
        self.conv_post = nn.Conv1d(8, 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel.transpose(1, 2))
        for up, res in zip(self.ups, self.resblocks):
            x = up(F.leaky_relu(x, 0.1))
            x = x + res(F.leaky_relu(x, 0.1))
        return torch.tanh(self.conv_post(F.leaky_relu(x))).squeeze(1)


def vocoder_entry(context: int | str = CONTEXT, mask: bool = True) -> dict:
    """The vocoder network's ``addon.yaml`` entry (with or without its mask input)."""
    entry = {"role": "vocoder", "file": "networks/vocoder.pt2", "context": context,
             "inputs": {"mel": {"shape": [1, "T_frames", N_MELS]}},
             "outputs": {"audio": {"shape": [1, "T_samples"]}}}
    if mask:
        entry["mask"] = "mel_mask"
        entry["inputs"]["mel_mask"] = {"shape": [1, "T_frames"]}
    return entry


def vocoder_spec() -> dict:
    """The tiny addon's spec with the vocoder network, 8 samples per frame, and no ``vocoder:`` entry (so: Network)."""
    spec = tiny_spec(name="tiny-vocoder", format=2)
    spec.pop("vocoder")
    spec["audio"] = {**spec["audio"], "hop_length": SAMPLES_PER_FRAME, "win_length": 32, "n_fft": 32}
    spec["networks"]["vocoder"] = vocoder_entry()
    spec["dims"]["T_samples"] = {"max": spec["dims"]["T_frames"]["max"] * SAMPLES_PER_FRAME}
    return spec


def tiny_hifigan() -> nn.Module:
    """The seeded vocoder network, as exported (mask first after the mel)."""
    torch.manual_seed(1)
    return MaskedConvolutions(TinyHifiGan())


def export_vocoder(folder: Path, spec: dict) -> None:
    """Export the vocoder network alone into ``folder/networks/vocoder.pt2`` (the spec's own entry for it)."""
    only = {**spec, "networks": {"vocoder": spec["networks"]["vocoder"]}}
    masked = "mask" in only["networks"]["vocoder"]
    example = {"mel": torch.randn(1, 30, N_MELS)} | ({"mel_mask": torch.ones(1, 30)} if masked else {})
    module = tiny_hifigan() if masked else tiny_hifigan().module
    with tempfile.TemporaryDirectory() as tmp:
        ttsstack.write_addon(Path(tmp) / "addon", only, {"vocoder": module}, {"vocoder": example})
        (folder / "networks").mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "addon" / "networks" / "vocoder.pt2").replace(folder / "networks" / "vocoder.pt2")


def add_tiny_vocoder(compiled: Path, backends: list[str]) -> Path:
    """Add the vocoder network to a copy of the compiled tiny addon at ``compiled`` and compile it for ``backends``.

    The tiny networks' artifacts are reused (their keys are unchanged); only the vocoder is compiled.
    """
    spec = vocoder_spec()
    export_vocoder(compiled, spec)
    (compiled / ADDON_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    compile_addon(compiled, compiled, backends, progress=False)
    return compiled


def receptive_radius(module, frames: int = 40, n_mels: int = N_MELS, samples_per_frame: int = SAMPLES_PER_FRAME) -> int:
    """The farthest frame, in frames, whose change moves a sample of ``module(mel)``: the network's true ``context``."""
    gen = torch.Generator().manual_seed(0)
    mel = torch.randn(1, frames, n_mels, generator=gen)
    with torch.no_grad():
        base = module(mel)
        radius = 0
        for j in range(frames):
            moved = mel.clone()
            moved[0, j] += 1.0
            changed = (module(moved) - base).abs().reshape(-1) > 0
            samples = changed.nonzero().reshape(-1)
            if samples.numel():
                owners = samples // samples_per_frame
                radius = max(radius, int((owners - j).abs().max()))
    return radius
