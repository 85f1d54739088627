"""A small Tacotron 2-style acoustic model: attention-based and autoregressive.

Three networks, shaped for one-frame-at-a-time decoding:

- ``Encoder``: token ids ``[1, T_text]`` (+ true length and mask) -> ``memory``
  ``[1, T_text, M]`` and ``processed_memory`` ``[1, T_text, A]`` (the
  attention's projection of the memory, computed once per utterance instead
  of once per frame). Character embedding, three convolutions, a BiLSTM.
- ``DecoderStep``: one decoder step. Previous frame, the recurrent and
  attention state, the memory and its mask -> the next frame, a stop logit and
  the new state. Prenet, attention LSTM cell, location-sensitive attention,
  decoder LSTM cell, frame projection and stop-token projection.
- ``Postnet``: frames ``[1, T_frames, n_mels]`` and their validity mask ->
  refined frames (residual convolutions; receptive radius
  ``layers * (kernel_size // 2)``).

Padding: static-shape backends pad the tokens to a bucket. The encoder masks
its convolutions past the true length and runs the BiLSTM on the true length
(its backward direction starts at the last real token), and the attention
masks padded memory steps, so padded and unpadded runs give the same frames.
Frame windows are padded to a ``T_frames`` bucket the same way: the postnet
zeroes every layer's input past the true length, which is what a convolution
sees beyond the end of an unpadded window.

Prenet dropout: the reference Tacotron 2 keeps the prenet's dropout on at
inference as a source of variation. Here it is on in training only (plain eval
mode at synthesis): synthesis is deterministic, so streamed and
whole-utterance output, and every backend, can be compared exactly.

Reduction factor: one decoder step makes ``REDUCTION`` frames (``frame``
``[B, REDUCTION, n_mels]``) and feeds the last of them back, so an utterance
takes ``REDUCTION`` times fewer sequential steps, in training and at synthesis.

The weights are trained on espeak-ng's speech (``training/``): the tokens are
espeak-ng phonemes and the attention learns espeak-ng's phoneme timings.
"""

from __future__ import annotations

import torch
from torch import nn

from ttsstack.recurrent import run_recurrent

EMBED = 64
ENCODER_KERNEL = 5
ENCODER_LAYERS = 3
MEMORY = 64  # BiLSTM output: 2 x 32
PRENET = 64
ATTENTION_RNN = 128
DECODER_RNN = 128
ATTENTION = 64
LOCATION_FILTERS = 8
LOCATION_KERNEL = 15
POSTNET = 64
POSTNET_KERNEL = 5
POSTNET_LAYERS = 5
PRENET_DROPOUT = 0.5
REDUCTION = 3


class Encoder(nn.Module):
    """Tokens -> memory (conv stack + BiLSTM) and its attention projection."""

    def __init__(self, n_symbols: int):
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, EMBED, padding_idx=0)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(EMBED, EMBED, ENCODER_KERNEL, padding=ENCODER_KERNEL // 2), nn.BatchNorm1d(EMBED))
            for _ in range(ENCODER_LAYERS)
        )
        self.lstm = nn.LSTM(EMBED, MEMORY // 2, batch_first=True, bidirectional=True)
        self.memory_layer = nn.Linear(MEMORY, ATTENTION, bias=False)

    def forward(self, tokens, text_lengths, text_mask):
        keep = text_mask.unsqueeze(1)  # [1, 1, T]: zero what lies past the true length after every conv
        x = self.embedding(tokens).transpose(1, 2)
        for conv in self.convs:
            x = torch.relu(conv(x)) * keep
        memory, _ = run_recurrent(self.lstm, x.transpose(1, 2), text_lengths)
        return memory, self.memory_layer(memory)


class Prenet(nn.Module):
    """Two bias-free ReLU layers on the previous frame (dropout in training only, see module docstring)."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_mels, PRENET, bias=False), nn.ReLU(), nn.Dropout(PRENET_DROPOUT),
            nn.Linear(PRENET, PRENET, bias=False), nn.ReLU(), nn.Dropout(PRENET_DROPOUT),
        )

    def forward(self, frame):
        return self.layers(frame)


class LocationSensitiveAttention(nn.Module):
    """Additive attention whose energies also see the previous and cumulative attention weights."""

    def __init__(self):
        super().__init__()
        self.query_layer = nn.Linear(ATTENTION_RNN, ATTENTION, bias=False)
        self.location_conv = nn.Conv1d(2, LOCATION_FILTERS, LOCATION_KERNEL, padding=LOCATION_KERNEL // 2, bias=False)
        self.location_dense = nn.Linear(LOCATION_FILTERS, ATTENTION, bias=False)
        self.v = nn.Linear(ATTENTION, 1, bias=False)

    def forward(self, query, memory, processed_memory, weights_cat, mask):
        location = self.location_dense(self.location_conv(weights_cat).transpose(1, 2))
        energies = self.v(torch.tanh(self.query_layer(query).unsqueeze(1) + location + processed_memory)).squeeze(-1)
        weights = torch.softmax(energies.masked_fill(~mask, -1e9), dim=-1)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
        return context, weights


class DecoderStep(nn.Module):
    """One autoregressive step; every piece of state is an explicit input and output."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.prenet = Prenet(n_mels)
        self.attention_rnn = nn.LSTMCell(PRENET + MEMORY, ATTENTION_RNN)
        self.attention = LocationSensitiveAttention()
        self.decoder_rnn = nn.LSTMCell(ATTENTION_RNN + MEMORY, DECODER_RNN)
        self.n_mels = n_mels
        self.frame_projection = nn.Linear(DECODER_RNN + MEMORY, REDUCTION * n_mels)
        self.stop_projection = nn.Linear(DECODER_RNN + MEMORY, 1)

    def forward(
        self, previous_frame, attention_hidden, attention_cell, decoder_hidden, decoder_cell,
        attention_weights, attention_weights_cum, attention_context, memory, processed_memory, memory_mask,
    ):
        x = torch.cat([self.prenet(previous_frame[:, -1]), attention_context], dim=-1)
        attention_hidden, attention_cell = self.attention_rnn(x, (attention_hidden, attention_cell))
        weights_cat = torch.stack([attention_weights, attention_weights_cum], dim=1)
        attention_context, attention_weights = self.attention(
            attention_hidden, memory, processed_memory, weights_cat, memory_mask
        )
        attention_weights_cum = attention_weights_cum + attention_weights
        x = torch.cat([attention_hidden, attention_context], dim=-1)
        decoder_hidden, decoder_cell = self.decoder_rnn(x, (decoder_hidden, decoder_cell))
        out = torch.cat([decoder_hidden, attention_context], dim=-1)
        frame = self.frame_projection(out).reshape(-1, REDUCTION, self.n_mels)
        stop = self.stop_projection(out)
        return (frame, stop, attention_hidden, attention_cell, decoder_hidden, decoder_cell,
                attention_weights, attention_weights_cum, attention_context)


class Postnet(nn.Module):
    """Residual 1-D conv stack refining the decoder's frames."""

    def __init__(self, n_mels: int):
        super().__init__()
        channels = [n_mels] + [POSTNET] * (POSTNET_LAYERS - 1) + [n_mels]
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, POSTNET_KERNEL, padding=POSTNET_KERNEL // 2), nn.BatchNorm1d(b))
            for a, b in zip(channels, channels[1:])
        )
        self.radius = POSTNET_LAYERS * (POSTNET_KERNEL // 2)

    def forward(self, frames, frames_mask):
        keep = frames_mask.unsqueeze(1)  # [1, 1, T]: padded frames read as zeros by every layer
        x = frames.transpose(1, 2) * keep
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = torch.tanh(x) * keep
        return frames + x.transpose(1, 2)


class Tacotron2Demo(nn.Module):
    """The three networks together, for training and for building the addon."""

    def __init__(self, n_symbols: int, n_mels: int = 80):
        super().__init__()
        self.encoder = Encoder(n_symbols)
        self.decoder_step = DecoderStep(n_mels)
        self.postnet = Postnet(n_mels)

