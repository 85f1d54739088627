"""A small FastPitch-like acoustic model with a bounded receptive field.

Three networks, each a stack of 1-D convolutions so that every output step
depends only on a fixed window of input steps (which is what makes exact
streaming possible):

- ``TextEncoder``: token ids ``[1, T_text]`` -> ``encoded`` ``[1, T_text, C]``
- ``DurationEncoder``: ``encoded`` -> ``durations`` ``[1, T_text]`` in frames,
  squashed into 0..32 frames per symbol (espeak-ng phonemes last 0 to 31 frames)
- ``Decoder``: upsampled ``frames`` ``[1, T_frames, C]`` -> ``mel`` ``[1, T_frames, n_mels]``

The receptive radius of each network is ``layers * (kernel_size // 2)``; the
addon declares it as the network's ``context``. Each network also takes an
optional validity ``mask`` ``[B, T]`` (1 for real steps, 0 for padding) and
zeroes padded steps before every convolution, so a padded run gives exactly
the unpadded run's outputs on the real steps (what static-shape backends
need); without a mask every step is real.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS = 192
MIN_FRAMES_PER_SYMBOL = 0.0
MAX_FRAMES_PER_SYMBOL = 32.0


class ConvBlock(nn.Module):
    """Residual conv -> ReLU -> LayerNorm over channels, on ``[1, T, C]`` tensors."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.norm(x + y)


class ConvStack(nn.Module):
    """``layers`` residual conv blocks; receptive radius ``layers * (kernel_size // 2)``."""

    def __init__(self, channels: int, kernel_size: int, layers: int):
        super().__init__()
        self.blocks = nn.Sequential(*[ConvBlock(channels, kernel_size) for _ in range(layers)])
        self.radius = layers * (kernel_size // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return self.blocks(x)
        keep = mask.unsqueeze(-1).to(x.dtype)
        x = x * keep
        for block in self.blocks:
            x = block(x) * keep
        return x


class TextEncoder(nn.Module):
    """Token ids -> per-token hidden vectors."""

    def __init__(self, n_symbols: int, channels: int = CHANNELS):
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, channels)
        self.convs = ConvStack(channels, kernel_size=5, layers=3)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.convs(self.embedding(tokens), mask)


class DurationEncoder(nn.Module):
    """Per-token hidden vectors -> frames per token, in [MIN, MAX] frames."""

    def __init__(self, channels: int = CHANNELS):
        super().__init__()
        self.convs = ConvStack(channels, kernel_size=3, layers=2)
        self.proj = nn.Linear(channels, 1)

    def forward(self, encoded: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.proj(self.convs(encoded, mask)).squeeze(-1)
        span = MAX_FRAMES_PER_SYMBOL - MIN_FRAMES_PER_SYMBOL
        return MIN_FRAMES_PER_SYMBOL + span * torch.sigmoid(logits)


class Decoder(nn.Module):
    """Upsampled per-frame vectors -> log-mel frames."""

    def __init__(self, n_mels: int, channels: int = CHANNELS):
        super().__init__()
        self.convs = ConvStack(channels, kernel_size=5, layers=4)
        self.proj = nn.Linear(channels, n_mels)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self.convs(frames, mask))


class FastPitchDemo(nn.Module):
    """The three networks together, for training and for building the addon."""

    def __init__(self, n_symbols: int, n_mels: int = 80, channels: int = CHANNELS):
        super().__init__()
        self.text_encoder = TextEncoder(n_symbols, channels)
        self.duration_encoder = DurationEncoder(channels)
        self.decoder = Decoder(n_mels, channels)

    def forward(self, tokens: torch.Tensor, durations: torch.Tensor | None = None):
        """Whole-utterance synthesis; ``durations`` (frames per token) overrides the prediction."""
        encoded = self.text_encoder(tokens)
        predicted = self.duration_encoder(encoded)
        repeats = (predicted if durations is None else durations).round().clamp(min=0).long()[0]
        frames = torch.repeat_interleave(encoded, repeats, dim=1)
        return self.decoder(frames), predicted
