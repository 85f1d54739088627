"""A tiny deterministic addon for tests: the demo's structure with 8 channels and 8 mel bins.

The text encoder and decoder take a validity mask (like the demo's networks)
so that static-shape backends can pad them exactly; the duration network is
pointwise (context 0) and needs none.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import ttsstack

SYMBOLS = "_ abcdefghijklmnopqrstuvwxyz.,!?"
CHANNELS = 8
N_MELS = 8


class TinyTextEncoder(nn.Module):
    """Embedding then one conv (radius 1); padded steps are zeroed before the conv."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(len(SYMBOLS), CHANNELS)
        self.conv = nn.Conv1d(CHANNELS, CHANNELS, 3, padding=1)

    def forward(self, tokens, mask):
        x = self.embedding(tokens) * mask.unsqueeze(-1)
        return torch.tanh(self.conv(x.transpose(1, 2))).transpose(1, 2)


class TinyDurations(nn.Module):
    """2..5 frames per token."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(CHANNELS, 1)

    def forward(self, encoded):
        return 2.0 + 3.0 * torch.sigmoid(self.proj(encoded).squeeze(-1))


class TinyDecoder(nn.Module):
    """Two convs (radius 2) to mel bins; padded steps are zeroed before each conv."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(CHANNELS, CHANNELS, 3, padding=1)
        self.conv2 = nn.Conv1d(CHANNELS, N_MELS, 3, padding=1)

    def forward(self, frames, mask):
        keep = mask.unsqueeze(1)
        x = torch.relu(self.conv1(frames.transpose(1, 2) * keep)) * keep
        return self.conv2(x).transpose(1, 2)


def tiny_spec(**overrides) -> dict:
    """The tiny addon's ``addon.yaml`` content (top-level keys replaced by ``overrides``)."""
    spec = {
        "format": 1,
        "name": "tiny",
        "audio": {"sample_rate": 8000, "hop_length": 64, "win_length": 256, "n_fft": 256, "n_mels": N_MELS,
                  "fmin": 0, "fmax": 4000},
        "frontend": {"type": "characters", "symbols": SYMBOLS, "pad": "_"},
        "networks": {
            "text_encoder": {"role": "encoder", "file": "networks/text_encoder.pt2", "context": 1,
                             "mask": "text_mask",
                             "inputs": {"tokens": {"shape": [1, "T_text"], "dtype": "int64"},
                                        "text_mask": {"shape": [1, "T_text"]}},
                             "outputs": {"encoded": {"shape": [1, "T_text", CHANNELS]}}},
            "duration_encoder": {"role": "encoder", "file": "networks/duration_encoder.pt2", "context": 0,
                                 "inputs": {"encoded": {"shape": [1, "T_text", CHANNELS]}},
                                 "outputs": {"durations": {"shape": [1, "T_text"]}}},
            "decoder": {"role": "decoder", "file": "networks/decoder.pt2", "context": 2,
                        "mask": "frames_mask",
                        "inputs": {"frames": {"shape": [1, "T_frames", CHANNELS]}, "frames_mask": {"shape": [1, "T_frames"]}},
                        "outputs": {"mel": {"shape": [1, "T_frames", N_MELS]}}},
        },
        "dims": {"T_text": {"max": 256, "buckets": [16, 32]}, "T_frames": {"max": 4096, "buckets": [32, 64]}},
        "stack": [{"type": "StreamablePipeline", "sequence_block": {"type": "Encoders"},
                   "streamable_block": {"type": "StreamableStack",
                                        "stack": [{"type": "Upsampler"}, {"type": "Decoder"}]}}],
        "vocoder": {"type": "GriffinLim", "n_iter": 4},
    }
    spec.update(overrides)
    return spec


def tiny_modules() -> dict[str, nn.Module]:
    """Seeded tiny networks."""
    torch.manual_seed(0)
    return {"text_encoder": TinyTextEncoder(), "duration_encoder": TinyDurations(), "decoder": TinyDecoder()}


def tiny_examples() -> dict[str, dict[str, torch.Tensor]]:
    """One example input per network, for export."""
    return {
        "text_encoder": {"tokens": torch.randint(0, len(SYMBOLS), (1, 9)), "text_mask": torch.ones(1, 9)},
        "duration_encoder": {"encoded": torch.randn(1, 9, CHANNELS)},
        "decoder": {"frames": torch.randn(1, 30, CHANNELS), "frames_mask": torch.ones(1, 30)},
    }


def build_tiny_addon(folder: Path, **overrides) -> Path:
    """Export the tiny networks into an addon folder."""
    ttsstack.write_addon(folder, tiny_spec(**overrides), tiny_modules(), tiny_examples())
    return folder


class TinyGlobalEncoder(nn.Module):
    """Embedding plus the mean over the real tokens: every output depends on the whole piece (unbounded).

    With ``lengths`` the mean covers only the first ``lengths`` tokens, so a
    padded run equals the unpadded one; without it, padding changes every output.
    """

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(len(SYMBOLS), CHANNELS)

    def forward(self, tokens, lengths=None):
        x = self.embedding(tokens)
        if lengths is None:
            return torch.tanh(x + x.mean(1, keepdim=True))
        valid = (torch.arange(tokens.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1).to(x.dtype)
        mean = (x * valid).sum(1, keepdim=True) / lengths.to(x.dtype).view(1, 1, 1)
        return torch.tanh(x + mean)


def build_global_addon(folder: Path, lengths: bool = True) -> Path:
    """The tiny addon with an unbounded text encoder, declaring a ``lengths`` input or not."""
    spec = tiny_spec(name="tiny-global")
    encoder = {"role": "encoder", "file": "networks/text_encoder.pt2", "context": "unbounded",
               "inputs": {"tokens": {"shape": [1, "T_text"], "dtype": "int64"}},
               "outputs": {"encoded": {"shape": [1, "T_text", CHANNELS]}}}
    examples = tiny_examples()
    examples["text_encoder"] = {"tokens": torch.randint(0, len(SYMBOLS), (1, 9))}
    if lengths:
        encoder["lengths"] = "text_lengths"
        encoder["inputs"]["text_lengths"] = {"shape": [1], "dtype": "int64"}
        examples["text_encoder"]["text_lengths"] = torch.tensor([9])
    spec["networks"]["text_encoder"] = encoder
    modules = tiny_modules()
    modules["text_encoder"] = TinyGlobalEncoder()
    ttsstack.write_addon(folder, spec, modules, examples)
    return folder
