"""The demo voice's neural vocoder: a small Vocos-style network, log-mel frames in, waveform out.

Mel ``[B, T, n_mels]`` -> Conv1d embedding -> ConvNeXt blocks (depthwise
convolution over time, LayerNorm over channels, pointwise MLP) -> a linear head
giving each frame's log-magnitude and phase of an ``n_fft``-point STFT -> the
inverse STFT, written as one ``conv_transpose1d`` whose fixed weights are the
inverse real DFT times the synthesis window, divided by the overlap-added
squared window. Every layer exports with ``torch.export`` and runs on every
backend (ONNX has no ``istft``; this has only convolutions and elementwise ops).

Frame ``t`` is centred on sample ``t * hop`` (the addon's centred STFT), so
``T`` frames give exactly ``T * hop`` samples, samples ``[t * hop, (t + 1) *
hop)`` made for frame ``t``: what the runtime's windowed streaming crops by.

The ``mask`` ``[B, T]`` (1: real frame) zeroes padded frames before every
convolution and the overlap-add, and the window envelope is the mask's own
overlap-add, so a window padded to a static bucket equals the unpadded run on
its real frames. The receptive radius (:meth:`VocosDemo.context`) is finite:
``kernel // 2`` frames per convolution plus ``n_fft / (2 * hop)`` for the
overlap-add, which the addon declares as the network's ``context``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

MAX_LOG_MAGNITUDE = math.log(100.0)
"""Largest log-magnitude the head may give (Vocos clips the magnitude at 100)."""
ENVELOPE_FLOOR = 1e-8
"""Smallest window envelope divided by (only padded samples, cropped away, come near it)."""


class ConvNeXtBlock(nn.Module):
    """Depthwise Conv1d over time, LayerNorm, pointwise MLP (GELU), layer scale, residual."""

    def __init__(self, dim: int, hidden: int, kernel: int, layer_scale: float):
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.expand = nn.Linear(dim, hidden)
        self.project = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, T]``, ``mask`` ``[B, 1, T]``: the block's output, same shape."""
        y = self.depthwise(x * mask).transpose(1, 2)
        y = self.project(F.gelu(self.expand(self.norm(y)))) * self.scale
        return x + y.transpose(1, 2)


class InverseSTFT(nn.Module):
    """Centred inverse STFT of ``[B, 2 * n_freqs, T]`` (real parts, then imaginary) to ``T * hop`` samples.

    The inverse real DFT and the periodic Hann window are one fixed
    ``conv_transpose1d`` kernel (frames overlap-added at stride ``hop``); the
    result is divided by the overlap-added squared window of the real frames
    (``mask``), as ``torch.istft`` does, and cropped to samples ``[0, T * hop)``
    of the centred signal.
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        n_freqs = n_fft // 2 + 1
        window = torch.hann_window(n_fft, dtype=torch.float64)
        k = torch.arange(n_freqs, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        weight = torch.full((n_freqs, 1), 2.0 / n_fft, dtype=torch.float64)
        weight[0] = weight[-1] = 1.0 / n_fft  # DC and Nyquist appear once in the full spectrum
        angle = 2 * math.pi * k * n / n_fft
        basis = torch.cat([weight * torch.cos(angle), -weight * torch.sin(angle)]) * window
        self.register_buffer("basis", basis.unsqueeze(1).float(), persistent=False)
        self.register_buffer("window_squared", (window * window).view(1, 1, -1).float(), persistent=False)

    def forward(self, spectrum: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``spectrum`` ``[B, 2 * n_freqs, T]``, ``mask`` ``[B, 1, T]``: waveform ``[B, T * hop]``."""
        signal = F.conv_transpose1d(spectrum * mask, self.basis, stride=self.hop)
        envelope = F.conv_transpose1d(mask, self.window_squared, stride=self.hop)
        audio = (signal / envelope.clamp(min=ENVELOPE_FLOOR))[:, 0]
        # (T - 1) * hop + n_fft samples: drop n_fft / 2 before sample 0 and the rest after T * hop, as constants
        # (no size computed from T), so a TorchScript trace holds for every length
        start, end = self.n_fft // 2, self.n_fft - self.hop - self.n_fft // 2
        return audio[:, start:-end] if end else audio[:, start:]


class VocosDemo(nn.Module):
    """Log-mel ``[B, T, n_mels]`` and mask ``[B, T]`` to waveform ``[B, T * hop]`` in [-1, 1].

    ``dim`` channels through ``blocks`` ConvNeXt blocks (MLP width ``hidden``,
    depthwise ``kernel``), then a linear head to log-magnitude and phase of
    ``n_fft // 2 + 1`` bins and :class:`InverseSTFT`.
    """

    def __init__(self, n_mels: int = 80, n_fft: int = 1024, hop: int = 256, dim: int = 128, hidden: int = 384,
                 blocks: int = 4, kernel: int = 7):
        super().__init__()
        self.config = {"n_mels": n_mels, "n_fft": n_fft, "hop": hop, "dim": dim, "hidden": hidden,
                       "blocks": blocks, "kernel": kernel}
        self.kernel, self.blocks_count = kernel, blocks
        self.n_freqs = n_fft // 2 + 1
        self.embed = nn.Conv1d(n_mels, dim, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, hidden, kernel, 1.0 / blocks) for _ in range(blocks))
        self.final_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 2 * self.n_freqs)
        self.istft = InverseSTFT(n_fft, hop)

    def context(self) -> int:
        """The receptive radius in frames: each convolution's ``kernel // 2`` plus the overlap-add's reach."""
        overlap = math.ceil(self.istft.n_fft / (2 * self.istft.hop))
        return (1 + self.blocks_count) * (self.kernel // 2) + overlap

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The waveform of ``mel`` ``[B, T, n_mels]``, its padded frames (``mask`` 0) kept out."""
        mask = mask.unsqueeze(1)
        x = self.embed(mel.transpose(1, 2) * mask)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x, mask)
        log_magnitude, phase = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2).chunk(2, dim=1)
        magnitude = torch.exp(log_magnitude.clamp(max=MAX_LOG_MAGNITUDE))
        spectrum = torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1)
        return self.istft(spectrum, mask).clamp(-1.0, 1.0)


def load_trained(weights: Path) -> VocosDemo:
    """The trained vocoder in eval mode, built with the settings its weights' metadata stores (``config``)."""
    with safe_open(str(weights), framework="pt") as f:
        config = json.loads((f.metadata() or {})["config"])
    model = VocosDemo(**config)
    model.load_state_dict(load_file(str(weights)))
    return model.eval()
