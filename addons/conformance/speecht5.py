"""Build a ttsstack addon from Hugging Face ``SpeechT5ForTextToSpeech`` and ``SpeechT5HifiGan`` (seeded random weights).

Usage: python addons/conformance/speecht5.py [--out DIR] [--seed N] [--tiny]

A conformance addon: the networks are the library's own modules behind thin
wrappers (no re-implemented math), split along the model's real structure so
the runtime can stream it:

- ``encoder`` (role ``encoder``): tokens and their mask -> the encoder's hidden
  states (``SpeechT5EncoderWithTextPrenet``; unbounded, the mask makes padding exact);
- ``decoder_step`` (role ``decoder_step``): one step of ``generate_speech``'s
  loop: the speech-decoder prenet on the last frame of the previous step plus
  the speaker embedding, every decoder layer with its self-attention key/value
  cache (a ``cache`` state: past slots in, this step's keys/values out, a
  ``position`` input and a ``cache_mask`` over the slots), then ``feat_out``
  (``reduction_factor`` frames) and ``prob_out`` (their stop logits);
- ``postnet`` (role ``postnet``): the speech-decoder postnet's convolutions,
  bounded context, run on overlapping windows;
- ``hifigan`` (role ``vocoder``): ``SpeechT5HifiGan``, mel to waveform, its
  convolutions masked (:class:`~ttsstack.masking.MaskedConvolutions`) so
  static backends can pad; its context is measured (:func:`vocoder_context`).

The speaker embedding is an input of the addon (``speaker:`` in ``addon.yaml``,
with one seeded default voice). Published weights are not used: the structure
is what is tested (``tests/test_speecht5.py`` checks the addon against the
library's ``generate_speech``).

SpeechT5's decoder prenet keeps its dropout on at inference (a fresh random
mask every step, as Tacotron 2 does); ttsstack's networks are deterministic,
so the addon, and the reference it is compared with, run it off
(:func:`deterministic_prenet`).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

try:
    from transformers import SpeechT5Config, SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5HifiGanConfig
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache
except ImportError:  # pragma: no cover - the message is the point
    sys.exit('this script needs Hugging Face transformers: pip install -e ".[transformers]"')

import ttsstack
from ttsstack.masking import MaskedConvolutions

SYMBOLS = "_ abcdefghijklmnopqrstuvwxyz.,;:!?'-"
STOP_THRESHOLD = 0.5  # generate_speech's defaults
MIN_LENGTH_RATIO = 0.0
MAX_LENGTH_RATIO = 20.0


def tiny_config(**overrides) -> SpeechT5Config:
    """The same classes at test size: one or two layers, widths of 16-32."""
    values = dict(
        vocab_size=len(SYMBOLS), hidden_size=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_layers=2, decoder_attention_heads=2, decoder_ffn_dim=32, num_mel_bins=16,
        speech_decoder_prenet_units=16, speaker_embedding_dim=16, speech_decoder_postnet_layers=2,
        speech_decoder_postnet_units=16, reduction_factor=2, max_speech_positions=256, max_text_positions=128,
        encoder_max_relative_position=16, pad_token_id=0,
    )
    values.update(overrides)
    return SpeechT5Config(**values)


def tiny_vocoder_config(n_mels: int = 16) -> SpeechT5HifiGanConfig:
    """``SpeechT5HifiGan`` at test size: two upsampling stages (8 samples per frame), one resblock kernel."""
    return SpeechT5HifiGanConfig(
        model_in_dim=n_mels, sampling_rate=8000, upsample_initial_channel=16, upsample_rates=[4, 2],
        upsample_kernel_sizes=[8, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
    )


def full_config() -> SpeechT5Config:
    """SpeechT5's published architecture (microsoft/speecht5_tts) with this addon's character vocabulary."""
    return SpeechT5Config(vocab_size=len(SYMBOLS), pad_token_id=0)


def seeded_model(config: SpeechT5Config, seed: int = 0) -> SpeechT5ForTextToSpeech:
    """The model with seeded random weights, in eval mode, its prenet dropout off."""
    torch.manual_seed(seed)
    model = SpeechT5ForTextToSpeech(config).eval()
    deterministic_prenet(model)
    return model


def seeded_vocoder(config: SpeechT5HifiGanConfig, seed: int = 0) -> SpeechT5HifiGan:
    """The vocoder with seeded random weights, in eval mode."""
    torch.manual_seed(seed + 2)
    return SpeechT5HifiGan(config).eval()


def samples_per_frame(vocoder: SpeechT5HifiGan) -> int:
    """The vocoder's hop: the product of its upsampling rates."""
    return math.prod(vocoder.config.upsample_rates)


def vocoder_context(vocoder: SpeechT5HifiGan, frames: int = 64) -> int:
    """The vocoder's receptive radius in frames, measured: how far a sample moves when one frame changes.

    The network is translation invariant along frames, so one frame in the
    middle of a window longer than twice the radius shows it.
    """
    mel = torch.randn(1, frames, vocoder.config.model_in_dim, generator=torch.Generator().manual_seed(0))
    moved = mel.clone()
    moved[0, frames // 2] += 1.0
    with torch.no_grad():
        changed = (vocoder(moved) - vocoder(mel)).abs()[0] > 0
    owners = changed.nonzero().flatten() // samples_per_frame(vocoder)
    radius = int((owners - frames // 2).abs().max())
    if radius >= frames // 2 - 1:
        return vocoder_context(vocoder, 4 * frames)
    return radius


def deterministic_prenet(model: SpeechT5ForTextToSpeech) -> None:
    """Turn off the decoder prenet's always-on dropout (see the module docstring) on this instance."""
    model.speecht5.decoder.prenet._consistent_dropout = lambda inputs_embeds, p: inputs_embeds


class Encoder(nn.Module):
    """Tokens ``[1, T_text]`` and mask -> encoder hidden states ``[1, T_text, hidden]``."""

    def __init__(self, model: SpeechT5ForTextToSpeech):
        super().__init__()
        self.encoder = model.speecht5.encoder

    def forward(self, tokens, text_mask):
        return self.encoder(input_values=tokens, attention_mask=text_mask, return_dict=True).last_hidden_state


class _PositionAt(nn.Module):
    """Stands in for the prenet's ``encode_positions`` in a one-frame step: the table row at ``position``.

    ``generate_speech`` runs the prenet on the whole output sequence and keeps
    its last row, whose position is the step index; a step network sees only
    that row, so it adds the scaled table row at the step's position instead
    of rows ``0..T-1`` (the same ``emb + alpha * pe`` of the library's module).
    """

    def __init__(self, encoding: nn.Module):
        super().__init__()
        self.encoding = encoding
        self.position: torch.Tensor | None = None

    def forward(self, emb):
        row = self.encoding.pe.index_select(1, self.position)
        return self.encoding.dropout(emb + self.encoding.alpha * row)


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A ``[1, T]`` 1/0 mask as the ``[1, 1, 1, T]`` additive mask SpeechT5's attention takes."""
    return (1.0 - mask.to(dtype))[:, None, None, :] * torch.finfo(dtype).min


class DecoderStep(nn.Module):
    """One iteration of ``generate_speech``'s loop, with the self-attention cache as explicit tensors.

    ``past_keys``/``past_values`` ``[layers, 1, heads, T_cache, head_dim]``
    hold earlier steps' keys and values in slots marked 1 by ``cache_mask``;
    the library's ``DynamicCache`` appends this step's, the attention reads
    them all, and the step returns only the new slot (``step_keys``/``step_values``,
    ``T_cache`` = 1) for the runtime to write at ``position``.
    """

    def __init__(self, model: SpeechT5ForTextToSpeech):
        super().__init__()
        decoder = model.speecht5.decoder
        self.prenet = copy.deepcopy(decoder.prenet)
        self.positions = _PositionAt(self.prenet.encode_positions)
        self.prenet.encode_positions = self.positions
        self.layers = decoder.wrapped_decoder.layers
        self.feat_out = model.speech_decoder_postnet.feat_out
        self.prob_out = model.speech_decoder_postnet.prob_out
        self.reduction_factor = model.config.reduction_factor
        self.n_mels = model.config.num_mel_bins

    def forward(self, previous_frame, past_keys, past_values, position, cache_mask, encoder_hidden, text_mask,
                speaker_embeddings):
        self.positions.position = position
        hidden = self.prenet(previous_frame, speaker_embeddings)
        cache = EncoderDecoderCache(
            DynamicCache(ddp_cache_data=list(zip(past_keys.unbind(0), past_values.unbind(0)))), DynamicCache()
        )
        self_mask = _additive_mask(torch.cat([cache_mask, cache_mask.new_ones(1, 1)], dim=1), hidden.dtype)
        cross_mask = _additive_mask(text_mask, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, self_mask, encoder_hidden, encoder_attention_mask=cross_mask, cache=cache,
                           use_cache=True)[0]
        layers = cache.self_attention_cache.layers
        step_keys = torch.stack([layer.keys[:, :, -1:] for layer in layers])
        step_values = torch.stack([layer.values[:, :, -1:] for layer in layers])
        last = hidden[:, 0]
        frames = self.feat_out(last).view(1, self.reduction_factor, self.n_mels)
        stop = self.prob_out(last)
        return frames, stop, frames[:, -1:], step_keys, step_values


class Postnet(nn.Module):
    """The speech-decoder postnet's residual conv stack, padded frames read as zeros by every layer."""

    def __init__(self, model: SpeechT5ForTextToSpeech):
        super().__init__()
        self.layers = model.speech_decoder_postnet.layers

    def forward(self, frames, frames_mask):
        keep = frames_mask.unsqueeze(1)
        x = frames.transpose(1, 2)
        for layer in self.layers:
            x = layer(x * keep)
        return frames + x.transpose(1, 2)


def _tensor(shape: list, dtype: str = "float32") -> dict:
    return {"shape": shape, "dtype": dtype}


def _cache_shape(config: SpeechT5Config, slots) -> list:
    heads = config.decoder_attention_heads
    return [config.decoder_layers, 1, heads, slots, config.hidden_size // heads]


def addon_spec(
    config: SpeechT5Config, vocoder: SpeechT5HifiGan, speaker: list[float], dims: dict | None = None,
    decoder: dict | None = None,
) -> dict:
    """The ``addon.yaml`` content; ``dims`` and ``decoder`` (AutoregressiveDecoder fields) override defaults."""
    hop = samples_per_frame(vocoder)
    n_mels, hidden, r = config.num_mel_bins, config.hidden_size, config.reduction_factor
    context = config.speech_decoder_postnet_layers * (config.speech_decoder_postnet_kernel // 2)
    step_inputs = {
        "previous_frame": _tensor([1, 1, n_mels]),
        "past_keys": _tensor(_cache_shape(config, "T_cache")),
        "past_values": _tensor(_cache_shape(config, "T_cache")),
        "position": _tensor([1], "int64"),
        "cache_mask": _tensor([1, "T_cache"]),
        "encoder_hidden": _tensor([1, "T_text", hidden]),
        "text_mask": _tensor([1, "T_text"], "int64"),
        "speaker_embeddings": _tensor([1, config.speaker_embedding_dim]),
    }
    step_outputs = {
        "frame": _tensor([1, r, n_mels]),
        "stop": _tensor([1, r]),
        "last_frame": _tensor([1, 1, n_mels]),
        "step_keys": _tensor(_cache_shape(config, 1)),
        "step_values": _tensor(_cache_shape(config, 1)),
    }
    max_steps = min(1000, config.max_speech_positions)
    dims = dims or {
        "T_text": {"max": config.max_text_positions,
                   "buckets": [b for b in (32, 64, 128, 256) if b <= config.max_text_positions]},
        "T_frames": {"max": 16384, "buckets": [64, 128, 256]},
        "T_cache": {"max": max_steps},
    }
    return {
        "format": 2,
        "name": "speecht5-conformance",
        "audio": {"sample_rate": vocoder.config.sampling_rate, "hop_length": hop, "win_length": 4 * hop,
                  "n_fft": 4 * hop, "n_mels": n_mels, "fmin": 80, "fmax": vocoder.config.sampling_rate * 0.475},
        "frontend": {"type": "characters", "symbols": SYMBOLS, "pad": "_"},
        "speaker": {"input": "speaker_embeddings", "dim": config.speaker_embedding_dim, "voices": {"seeded": speaker}},
        "networks": {
            "encoder": {
                "role": "encoder", "file": "networks/encoder.pt2", "context": "unbounded", "mask": "text_mask",
                "inputs": {"tokens": _tensor([1, "T_text"], "int64"), "text_mask": _tensor([1, "T_text"], "int64")},
                "outputs": {"encoder_hidden": _tensor([1, "T_text", hidden])},
            },
            "decoder_step": {
                "role": "decoder_step", "file": "networks/decoder_step.pt2", "context": "unbounded",
                "mask": "text_mask", "position": "position", "cache_mask": "cache_mask",
                "inputs": step_inputs,
                "outputs": step_outputs,
                "states": {
                    "previous_frame": {"output": "last_frame"},
                    "past_keys": {"output": "step_keys", "cache": "T_cache"},
                    "past_values": {"output": "step_values", "cache": "T_cache"},
                },
            },
            "postnet": {
                "role": "postnet", "file": "networks/postnet.pt2", "context": context, "mask": "frames_mask",
                "inputs": {"frames": _tensor([1, "T_frames", n_mels]), "frames_mask": _tensor([1, "T_frames"])},
                "outputs": {"mel": _tensor([1, "T_frames", n_mels])},
            },
            "hifigan": {
                "role": "vocoder", "file": "networks/hifigan.pt2", "context": vocoder_context(vocoder), "mask": "mel_mask",
                "inputs": {"mel": _tensor([1, "T_frames", n_mels]), "mel_mask": _tensor([1, "T_frames"])},
                "outputs": {"audio": _tensor([1, "T_samples"])},
            },
        },
        "dims": {"T_samples": {"max": dims["T_frames"]["max"] * hop}, **dims},
        "stack": [{
            "type": "StreamablePipeline",
            "sequence_block": {"type": "Encoders"},
            "streamable_block": {"type": "StreamableStack", "stack": [
                {"type": "AutoregressiveDecoder", "stop_rule": "sigmoid_sum", "threshold": STOP_THRESHOLD,
                 "min_length_ratio": MIN_LENGTH_RATIO, "max_length_ratio": MAX_LENGTH_RATIO,
                 "max_decoder_steps": max_steps, **(decoder or {})},
                {"type": "Postnet"},
            ]},
        }],
        "vocoder": {"type": "Network", "network": "hifigan"},
    }


def examples(config: SpeechT5Config, text_length: int = 11, slots: int = 5, frames: int = 30) -> dict:
    """One example input per network, for export."""
    cache = _cache_shape(config, slots)
    mask = torch.ones(1, text_length, dtype=torch.int64)
    return {
        "encoder": {"tokens": torch.randint(1, len(SYMBOLS), (1, text_length)), "text_mask": mask},
        "decoder_step": {
            "previous_frame": torch.randn(1, 1, config.num_mel_bins), "past_keys": torch.randn(cache),
            "past_values": torch.randn(cache), "position": torch.tensor([slots - 1]), "cache_mask": torch.ones(1, slots),
            "encoder_hidden": torch.randn(1, text_length, config.hidden_size), "text_mask": mask,
            "speaker_embeddings": torch.randn(1, config.speaker_embedding_dim),
        },
        "postnet": {"frames": torch.randn(1, frames, config.num_mel_bins), "frames_mask": torch.ones(1, frames)},
        "hifigan": {"mel": torch.randn(1, frames, config.num_mel_bins), "mel_mask": torch.ones(1, frames)},
    }


def seeded_speaker(config: SpeechT5Config, seed: int = 0) -> list[float]:
    """A seeded random speaker embedding (SpeechT5 normalizes it, so any scale will do)."""
    values = torch.randn(config.speaker_embedding_dim, generator=torch.Generator().manual_seed(seed + 1))
    return values.tolist()


def build_addon(
    folder: Path, model: SpeechT5ForTextToSpeech, vocoder: SpeechT5HifiGan, speaker: list[float], **spec_overrides
) -> Path:
    """Export the networks and write the addon to ``folder``; ``spec_overrides`` go to :func:`addon_spec`."""
    spec = addon_spec(model.config, vocoder, speaker, **spec_overrides)
    modules = {"encoder": Encoder(model), "decoder_step": DecoderStep(model), "postnet": Postnet(model),
               "hifigan": MaskedConvolutions(vocoder)}
    with warnings.catch_warnings():  # the step's position is handed to its prenet as a module attribute
        warnings.filterwarnings("ignore", message=".*was assigned during export")
        ttsstack.write_addon(folder, spec, modules, examples(model.config))
    return folder


def main() -> None:
    """Parse arguments, build the seeded model, write the addon."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("speecht5-addon"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="the test-size config instead of SpeechT5's published one")
    args = parser.parse_args()
    config = tiny_config() if args.tiny else full_config()
    vocoder = seeded_vocoder(tiny_vocoder_config(config.num_mel_bins) if args.tiny else SpeechT5HifiGanConfig(), args.seed)
    build_addon(args.out, seeded_model(config, args.seed), vocoder, seeded_speaker(config, args.seed))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
