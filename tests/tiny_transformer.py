"""A tiny addon whose decoder is what ``torch.jit.trace`` cannot hold: attention, sliced tables, shape arithmetic, a flow.

The decoder mixes the pieces real acoustic models are made of: an absolute
position table sliced to the input length, ``nn.MultiheadAttention`` with a
key padding mask, attention on heads split by a reshape computed from the
input's sizes with a relative-position bias indexed by ``i - j`` (as VITS
writes it), a masked depthwise convolution (a conformer's conv module) and an
affine coupling layer run in reverse (a normalizing flow). Every size is
computed from the input, so a trace bakes its example length in; the
``frames_mask`` input makes padded runs equal unpadded ones (static backends).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import ttsstack

from .tiny_addon import CHANNELS, N_MELS, tiny_examples, tiny_modules, tiny_spec

HEADS = 2
MAX_FRAMES = 512


class TinyTransformerDecoder(nn.Module):
    """Attention, relative positions, a conformer conv and a reverse coupling flow over frames."""

    def __init__(self):
        super().__init__()
        self.positions = nn.Parameter(0.1 * torch.randn(1, MAX_FRAMES, CHANNELS))
        self.attention = nn.MultiheadAttention(CHANNELS, HEADS, batch_first=True)
        self.qkv = nn.Linear(CHANNELS, 3 * CHANNELS)
        self.relative = nn.Embedding(2 * MAX_FRAMES - 1, HEADS)
        self.depthwise = nn.Conv1d(CHANNELS, CHANNELS, 5, padding=2, groups=CHANNELS)
        self.coupling = nn.Linear(CHANNELS // 2, CHANNELS)
        self.out = nn.Linear(CHANNELS, N_MELS)

    def forward(self, frames, mask):
        batch, length, channels = frames.shape
        keep = mask.unsqueeze(-1)
        x = (frames + self.positions[:, :length]) * keep
        x = x + self.attention(x, x, x, key_padding_mask=mask < 0.5, need_weights=False)[0]
        q, k, v = self.qkv(x).view(batch, length, 3, HEADS, channels // HEADS).permute(2, 0, 3, 1, 4)
        steps = torch.arange(length)
        bias = self.relative(steps.view(-1, 1) - steps.view(1, -1) + MAX_FRAMES - 1).permute(2, 0, 1).unsqueeze(0)
        bias = bias.masked_fill(mask.view(batch, 1, 1, length) < 0.5, float("-inf"))
        scores = q @ k.transpose(-1, -2) / (channels // HEADS) ** 0.5 + bias
        heads = torch.softmax(scores, dim=-1) @ v
        x = x + heads.transpose(1, 2).reshape(batch, length, channels)
        x = x + self.depthwise((x * keep).transpose(1, 2)).transpose(1, 2)
        first, second = x.chunk(2, dim=-1)
        log_scale, shift = self.coupling(first).chunk(2, dim=-1)
        x = torch.cat([first, (second - shift) * torch.exp(-torch.tanh(log_scale))], dim=-1)
        return self.out(x * keep)


def build_transformer_addon(folder: Path) -> Path:
    """The tiny addon with :class:`TinyTransformerDecoder` (context unbounded, masked) as its decoder."""
    spec = tiny_spec(name="tiny-transformer")
    spec["networks"]["decoder"]["context"] = "unbounded"
    spec["dims"]["T_frames"] = {"max": MAX_FRAMES, "buckets": [32, 64]}
    modules = tiny_modules()
    modules["decoder"] = TinyTransformerDecoder()
    ttsstack.write_addon(folder, spec, modules, tiny_examples())
    return folder
