"""A tiny Tacotron-like addon for tests: BiLSTM encoder, one-step attention decoder, conv postnet.

The decoder's stop logit is exact by construction: a ``step`` state counts the
calls and the stop token fires on the call that makes frame number
``frames_per_token * text length``, so tests know how many frames to expect.
``frames_per_token=None`` makes a decoder whose stop token never fires. Every network is
``batch: true`` (rows of different text lengths, masked), so the suite compiles batched programs, and
static backends compile each length bucket at batch 1 and 2.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import ttsstack
from ttsstack.recurrent import run_recurrent

SYMBOLS = "_ abcdefghijklmnopqrstuvwxyz.,!?"
EMBED = 6
MEMORY = 8  # 2 directions x 4
HIDDEN = 8
N_MELS = 8
NEVER = 1e6  # frames per token of a decoder that never stops


class TinyEncoder(nn.Module):
    """Embedding, one conv masked past the true length, a BiLSTM honouring it (so padding changes nothing)."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(len(SYMBOLS), EMBED, padding_idx=0)
        self.conv = nn.Conv1d(EMBED, EMBED, 3, padding=1)
        self.lstm = nn.LSTM(EMBED, MEMORY // 2, batch_first=True, bidirectional=True)

    def forward(self, tokens, text_lengths, text_mask):
        x = torch.relu(self.conv(self.embedding(tokens).transpose(1, 2))).transpose(1, 2) * text_mask.unsqueeze(-1)
        return run_recurrent(self.lstm, x, text_lengths)[0]


class TinyDecoderStep(nn.Module):
    """Location-aware attention over the memory, an LSTM cell, a frame and an exact stop logit."""

    def __init__(self, frames_per_token: float):
        super().__init__()
        self.prenet = nn.Linear(N_MELS, HIDDEN)
        self.query = nn.Linear(HIDDEN, MEMORY)
        self.location = nn.Parameter(torch.tensor(0.5))
        self.cell = nn.LSTMCell(HIDDEN + MEMORY, HIDDEN)
        self.frame = nn.Linear(HIDDEN + MEMORY, N_MELS)
        self.register_buffer("frames_per_token", torch.tensor(frames_per_token))

    def forward(self, previous_frame, hidden, cell, attention, step, memory, memory_mask):
        energies = (memory @ self.query(hidden).unsqueeze(-1)).squeeze(-1) + self.location * attention
        attention = torch.softmax(energies.masked_fill(~memory_mask, -1e9), dim=-1)
        context = (attention.unsqueeze(1) @ memory).squeeze(1)
        prenet = torch.relu(self.prenet(previous_frame[:, 0]))
        hidden, cell = self.cell(torch.cat([prenet, context], dim=-1), (hidden, cell))
        frame = self.frame(torch.cat([hidden, context], dim=-1)).unsqueeze(1)
        step = step + 1
        stop = (step - self.frames_per_token * memory_mask.sum(dim=-1, keepdim=True) + 0.5) * 10.0
        return frame, stop, hidden, cell, attention, step


class TinyPostnet(nn.Module):
    """Residual conv (radius 2), reading padded frames as zeros."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(N_MELS, N_MELS, 5, padding=2)

    def forward(self, frames, frames_mask):
        x = frames.transpose(1, 2) * frames_mask.unsqueeze(1)
        return frames + torch.tanh(self.conv(x)).transpose(1, 2)


def _vec(*shape, dtype="float32") -> dict:
    return {"shape": list(shape), "dtype": dtype}


def tiny_tacotron_spec(**overrides) -> dict:
    """The tiny Tacotron addon's ``addon.yaml`` content (top-level keys replaced by ``overrides``)."""
    spec = {
        "format": 2,
        "name": "tiny-tacotron",
        "audio": {"sample_rate": 8000, "hop_length": 64, "win_length": 256, "n_fft": 256, "n_mels": N_MELS,
                  "fmin": 0, "fmax": 4000},
        "frontend": {"type": "characters", "symbols": SYMBOLS, "pad": "_"},
        "networks": {
            "encoder": {
                "role": "encoder", "file": "networks/encoder.pt2", "lengths": "text_lengths", "mask": "text_mask", "batch": True,
                "inputs": {"tokens": _vec(1, "T_text", dtype="int64"), "text_lengths": _vec(1, dtype="int64"),
                           "text_mask": _vec(1, "T_text", dtype="bool")},
                "outputs": {"memory": _vec(1, "T_text", MEMORY)},
            },
            "decoder_step": {
                "role": "decoder_step", "file": "networks/decoder_step.pt2", "mask": "memory_mask", "batch": True,
                "inputs": {
                    "previous_frame": _vec(1, 1, N_MELS), "hidden": _vec(1, HIDDEN), "cell": _vec(1, HIDDEN),
                    "attention": _vec(1, "T_text"), "step": _vec(1, 1),
                    "memory": _vec(1, "T_text", MEMORY), "memory_mask": _vec(1, "T_text", dtype="bool"),
                },
                "outputs": {
                    "frame": _vec(1, 1, N_MELS), "stop": _vec(1, 1), "new_hidden": _vec(1, HIDDEN),
                    "new_cell": _vec(1, HIDDEN), "new_attention": _vec(1, "T_text"), "new_step": _vec(1, 1),
                },
                "states": {
                    "previous_frame": {"output": "frame"}, "hidden": {"output": "new_hidden"},
                    "cell": {"output": "new_cell"}, "attention": {"output": "new_attention"},
                    "step": {"output": "new_step"},
                },
            },
            "postnet": {
                "role": "postnet", "file": "networks/postnet.pt2", "context": 2, "mask": "frames_mask", "batch": True,
                "inputs": {"frames": _vec(1, "T_frames", N_MELS), "frames_mask": _vec(1, "T_frames")},
                "outputs": {"mel": _vec(1, "T_frames", N_MELS)},
            },
        },
        "dims": {"T_text": {"max": 64, "buckets": [8, 16]}, "T_frames": {"max": 4096, "buckets": [32, 64]}},
        "batch": {"max": 8, "buckets": [1, 2]},
        "stack": [{"type": "StreamablePipeline", "sequence_block": {"type": "Encoders"},
                   "streamable_block": {"type": "StreamableStack",
                                        "stack": [{"type": "AutoregressiveDecoder", "max_decoder_steps": 400},
                                                  {"type": "Postnet"}]}}],
        "vocoder": {"type": "GriffinLim", "n_iter": 4},
    }
    spec.update(overrides)
    return spec


def tiny_tacotron_modules(frames_per_token: float | None) -> dict[str, nn.Module]:
    """Seeded tiny networks."""
    torch.manual_seed(0)
    step = TinyDecoderStep(NEVER if frames_per_token is None else frames_per_token)
    return {"encoder": TinyEncoder(), "decoder_step": step, "postnet": TinyPostnet()}


def tiny_tacotron_examples() -> dict[str, dict[str, torch.Tensor]]:
    """One example input per network, for export."""
    return {
        "encoder": {"tokens": torch.randint(1, len(SYMBOLS), (1, 9)), "text_lengths": torch.tensor([9]),
                    "text_mask": torch.ones(1, 9, dtype=torch.bool)},
        "decoder_step": {
            "previous_frame": torch.randn(1, 1, N_MELS), "hidden": torch.randn(1, HIDDEN), "cell": torch.randn(1, HIDDEN),
            "attention": torch.rand(1, 9), "step": torch.zeros(1, 1), "memory": torch.randn(1, 9, MEMORY),
            "memory_mask": torch.ones(1, 9, dtype=torch.bool),
        },
        "postnet": {"frames": torch.randn(1, 30, N_MELS), "frames_mask": torch.ones(1, 30)},
    }


def build_tiny_tacotron(folder: Path, frames_per_token: float | None = 3.0, **overrides) -> Path:
    """Export the tiny Tacotron networks into an addon folder."""
    ttsstack.write_addon(folder, tiny_tacotron_spec(**overrides), tiny_tacotron_modules(frames_per_token),
                         tiny_tacotron_examples())
    return folder
