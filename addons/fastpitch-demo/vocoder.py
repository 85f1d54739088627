"""The demo voice's neural vocoder: a small Vocos-style network, log-mel frames in, waveform out.

Mel ``[B, T, n_mels]`` -> Conv1d embedding -> ConvNeXt blocks (depthwise
convolution over time, LayerNorm over channels, pointwise MLP) -> a linear head
giving each frame's log-magnitude and phase of an ``n_fft``-point STFT -> the
inverse STFT: the inverse real DFT as two real matrix products (Cooley-Tukey),
times the synthesis window, overlap-added and divided by the overlap-added
squared window. Every layer exports with ``torch.export`` and runs on every
backend (ONNX has no ``istft`` and Neuron no complex dtype; this has only
convolutions, matrix products and elementwise ops).

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


def _split(n: int) -> tuple[int, int]:
    """``n`` as ``n1 * n2`` with ``n1`` its largest divisor at most ``sqrt(n)``: the two stages of the DFT."""
    n1 = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return n1, n // n1


class InverseSTFT(nn.Module):
    """Centred inverse STFT of ``[B, 2 * n_freqs, T]`` (real parts, then imaginary) to ``T * hop`` samples.

    Each frame's inverse real DFT runs as two real matrix products
    (Cooley-Tukey with ``n_fft = n1 * n2``: ``n1``-point DFTs, twiddles,
    ``n2``-point DFTs keeping the real part), about 5x fewer multiply-adds
    than one dense ``n_freqs x n_fft`` product at 1,024 points, in real
    arithmetic only (Neuron has no complex dtype; ONNX Runtime's ``DFT``
    would need one). The frames, times the periodic Hann window, are
    overlap-added at stride ``hop`` (``n_fft`` a multiple of ``hop``: one
    padded sum per hop of a frame), divided by the overlap-added squared
    window of the real frames (``mask``), as ``torch.istft`` does, and cropped
    to samples ``[0, T * hop)`` of the centred signal.
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        if n_fft % hop:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop ({hop}) for the overlap-add")
        self.n_fft, self.hop = n_fft, hop
        n1, n2 = self.n1, self.n2 = _split(n_fft)
        window = torch.hann_window(n_fft, dtype=torch.float64)

        def dft(size: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            return 2 * math.pi * rows[:, None] * cols[None, :] / size

        stage1 = dft(n1, torch.arange(n1, dtype=torch.float64), torch.arange(n1, dtype=torch.float64))
        cos1, sin1 = torch.cos(stage1), torch.sin(stage1)
        # [re | im] @ stage1_matrix = [re | im] of sum_k1 X[k1] exp(2 pi i k1 n1 / N1)
        self.register_buffer("stage1", torch.cat([torch.cat([cos1, sin1], 1), torch.cat([-sin1, cos1], 1)]).float(),
                             persistent=False)
        twiddle = dft(n_fft, torch.arange(n2, dtype=torch.float64), torch.arange(n1, dtype=torch.float64))  # [k2, n1]
        self.register_buffer("twiddle_cos", torch.cos(twiddle).float(), persistent=False)
        self.register_buffer("twiddle_sin", torch.sin(twiddle).float(), persistent=False)
        stage2 = dft(n2, torch.arange(n2, dtype=torch.float64), torch.arange(n2, dtype=torch.float64))
        # [re | im] @ stage2_matrix = the real part of sum_k2 Z[k2] exp(2 pi i k2 n2 / N2), scaled by 1 / n_fft
        self.register_buffer("stage2", (torch.cat([torch.cos(stage2), -torch.sin(stage2)]) / n_fft).float(),
                             persistent=False)
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("window_squared", (window * window).float(), persistent=False)

    def frames(self, spectrum: torch.Tensor) -> torch.Tensor:
        """``[B, 2 * n_freqs, T]`` half spectra to ``[B, T, n_fft]`` real frames (the inverse real DFT)."""
        n_freqs, n1, n2 = self.n_fft // 2 + 1, self.n1, self.n2
        half = spectrum.transpose(1, 2)  # [B, T, 2 * n_freqs]
        re, im = half[..., :n_freqs], half[..., n_freqs:]
        # the full spectrum by Hermitian symmetry: X[n_fft - k] = conj(X[k])
        re = torch.cat([re, re[..., 1:n_freqs - 1].flip(-1)], -1)
        im = torch.cat([im, -im[..., 1:n_freqs - 1].flip(-1)], -1)
        batch, steps = re.shape[0], re.shape[1]
        # k = n2 * k1 + k2: [B, T, k1, k2] -> [B, T, k2, k1]
        re = re.reshape(batch, steps, n1, n2).transpose(2, 3)
        im = im.reshape(batch, steps, n1, n2).transpose(2, 3)
        y = torch.cat([re, im], -1) @ self.stage1  # [B, T, k2, 2 * n1]: real, imaginary over n1
        y_re, y_im = y[..., :n1], y[..., n1:]
        z_re = y_re * self.twiddle_cos - y_im * self.twiddle_sin
        z_im = y_re * self.twiddle_sin + y_im * self.twiddle_cos
        z = torch.cat([z_re, z_im], 2).transpose(2, 3)  # [B, T, n1, 2 * n2]
        x = z @ self.stage2  # [B, T, n1, n2]: sample n1 + n1_count * n2
        return x.transpose(2, 3).reshape(batch, steps, self.n_fft)

    def overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, n_fft]`` frames to ``[B, (T - 1) * hop + n_fft]`` samples, frame ``t`` at ``t * hop``."""
        parts = self.n_fft // self.hop
        summed = sum(F.pad(frames[..., k * self.hop:(k + 1) * self.hop], (0, 0, k, parts - 1 - k)) for k in range(parts))
        return summed.reshape(frames.shape[0], -1)

    def forward(self, spectrum: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``spectrum`` ``[B, 2 * n_freqs, T]``, ``mask`` ``[B, 1, T]``: waveform ``[B, T * hop]``."""
        frame_mask = mask.transpose(1, 2)  # [B, T, 1]
        signal = self.overlap_add(self.frames(spectrum) * frame_mask * self.window)
        envelope = self.overlap_add(frame_mask * self.window_squared)
        audio = signal / envelope.clamp(min=ENVELOPE_FLOOR)
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
