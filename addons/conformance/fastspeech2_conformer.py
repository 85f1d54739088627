"""Build Hugging Face ``transformers``' FastSpeech2-Conformer with its HiFi-GAN into a ttsstack addon.

Usage: python addons/conformance/fastspeech2_conformer.py --out DIR [--tiny] [--seed N]

A conformance addon: a public implementation's structure, not its weights
(the published ones are not reachable here), so the weights are seeded random.
The model is split along its real structure, each network a thin wrapper that
calls the library's own submodules:

- ``encoder`` (role ``encoder``, ``context: unbounded``): the conformer
  encoder, then the variance adaptor: duration, pitch and energy predictors,
  the pitch and energy embeddings added to the encoding. Outputs ``encoded``
  and the integer ``durations``.
- the length regulator is the runtime's ``Upsampler``.
- ``decoder`` (role ``decoder``, ``context: unbounded``): the conformer decoder
  and the postnet, frames to log-mel.
- ``vocoder`` (role ``vocoder``): ``FastSpeech2ConformerHifiGan``, whose
  bounded receptive radius in frames is measured and declared as its ``context``.

Static-shape backends pad pieces to buckets, so every network takes a mask:
the library's own attention masks are fed from it, and each convolution reads
zeros on padded steps (:func:`ttsstack.masking.masked_convolutions`; the
library leaves its conformer convolutions unmasked). The duration predictor's
output bias is set so that random weights speak 2 to 5 frames per token, as a
trained model does (untrained, it rounds every duration to 0). The library's
masks make rows independent, so ``--batch`` exports every network with a
batch axis (``batch: true``: concurrent streams run as one batch, see
``RuntimeOptions.batch``); the library reshapes with the batch size, which a
TorchScript trace keeps as a constant, so the ``cpu`` backend then compiles
them by AOTInductor (about 50 s each instead of a second).

Needs the ``transformers`` extra: ``pip install -e ".[transformers]"``.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch
from torch import nn

import ttsstack
from ttsstack.masking import MaskedConvolutions, masked_convolutions

EXTRA = 'pip install -e ".[transformers]"'
SYMBOLS = "_ abcdefghijklmnopqrstuvwxyz.,;:!?'-"
FRAMES_PER_TOKEN = 3.0
"""Typical frames per token the duration predictor's bias is set for."""


def require_transformers():
    """The ``transformers`` module, or an ``ImportError`` naming the extra that installs it."""
    try:
        import transformers
    except ImportError:
        raise ImportError(f"the FastSpeech2-Conformer conformance addon needs transformers: {EXTRA}") from None
    return transformers


def tiny_configs():
    """Small configs of the same classes, for tests: one layer each, width 32, a 2x2 HiFi-GAN (4 samples per frame).

    The HiFi-GAN's weights are drawn wide enough (0.2) for a waveform of about 0.4 RMS.
    """
    transformers = require_transformers()
    config = transformers.FastSpeech2ConformerConfig(
        hidden_size=32, vocab_size=len(SYMBOLS), num_mel_bins=16,
        encoder_layers=1, decoder_layers=1, encoder_linear_units=32, decoder_linear_units=32,
        encoder_kernel_size=3, decoder_kernel_size=5,
        speech_decoder_postnet_layers=2, speech_decoder_postnet_units=16,
        duration_predictor_channels=16, pitch_predictor_channels=16, energy_predictor_channels=16,
        pitch_predictor_layers=2,
    )
    hifigan = transformers.FastSpeech2ConformerHifiGanConfig(
        model_in_dim=16, upsample_initial_channel=16, upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], initializer_range=0.2,
    )
    return config, hifigan


def full_configs():
    """The library's default configs (what ``espnet/fastspeech2_conformer`` and its HiFi-GAN use), vocabulary of ``SYMBOLS``.

    The HiFi-GAN's random weights are drawn wider than the library's default
    (0.04 instead of 0.01), so that its waveform has a speech-like level
    (around 0.15 RMS, not 1e-4) and waveform comparisons mean something.
    """
    transformers = require_transformers()
    hifigan = transformers.FastSpeech2ConformerHifiGanConfig(initializer_range=0.04)
    return transformers.FastSpeech2ConformerConfig(vocab_size=len(SYMBOLS)), hifigan


def seeded_models(config, hifigan_config, seed: int = 0):
    """The library's ``FastSpeech2ConformerModel`` and ``FastSpeech2ConformerHifiGan`` with seeded random weights, in eval mode."""
    transformers = require_transformers()
    torch.manual_seed(seed)
    model = transformers.FastSpeech2ConformerModel(config).eval()
    hifigan = transformers.FastSpeech2ConformerHifiGan(hifigan_config).eval()
    with torch.no_grad():
        model.duration_predictor.linear.bias.fill_(math.log(FRAMES_PER_TOKEN + model.duration_predictor.log_domain_offset))
    return model, hifigan


def one_more_step(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and its mask with one masked step appended along the time axis (1).

    The library's relative-position shift needs at least two steps (a single
    one takes another path through its reshapes); the masked step changes no
    real output, so a one-step piece runs like any other.
    """
    pad = (0, 1) if x.dim() == 2 else (0, 0, 0, 1)
    return nn.functional.pad(x, pad), nn.functional.pad(mask, (0, 1))


class EncoderNetwork(nn.Module):
    """Tokens to the variance-adapted encoding and durations: the encoder half of ``FastSpeech2ConformerModel.forward``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, text_mask: torch.Tensor):
        model, steps = self.model, tokens.shape[1]
        tokens, text_mask = one_more_step(tokens, text_mask)
        padding = ~text_mask.bool()
        with masked_convolutions(model, text_mask):
            hidden = model.encoder(tokens, text_mask.unsqueeze(-2))[0]
            pitch = model.pitch_predictor(hidden, padding.unsqueeze(-1))
            energy = model.energy_predictor(hidden, padding.unsqueeze(-1))
            durations = model.duration_predictor(hidden).masked_fill(padding, 0)
            hidden = hidden + model.energy_embed(energy) + model.pitch_embed(pitch)
        return hidden[:, :steps], durations[:, :steps]


class DecoderNetwork(nn.Module):
    """Regulated frames to log-mel: the conformer decoder and the postnet of ``FastSpeech2ConformerModel``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, frames_mask: torch.Tensor):
        steps = frames.shape[1]
        frames, frames_mask = one_more_step(frames, frames_mask)
        with masked_convolutions(self.model, frames_mask):
            hidden = self.model.decoder(frames, frames_mask.unsqueeze(-2))[0]
            return self.model.speech_decoder_postnet(hidden)[1][:, :steps]


def samples_per_frame(hifigan_config) -> int:
    """Waveform samples per mel frame: the product of the HiFi-GAN's upsample rates."""
    return math.prod(hifigan_config.upsample_rates)


def receptive_radius(hifigan: nn.Module, rate: int) -> int:
    """The vocoder's receptive radius in frames: the farthest frame whose change reaches a sample.

    Measured on a copy whose convolution weights are made positive (and the
    input normalisation the identity), so no change can cancel on the way:
    every sample in the true receptive field moves, and only those.
    """
    probe = copy.deepcopy(hifigan).eval()
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                module.weight.abs_()
        probe.mean.zero_()
        probe.scale.fill_(1.0)
        frames = 256
        mel = torch.zeros(1, frames, probe.config.model_in_dim)
        moved = mel.clone()
        moved[0, frames // 2] = 1.0
        changed = ((probe(moved) - probe(mel)).abs() > 0).reshape(-1).nonzero().reshape(-1)
    owners = changed // rate
    radius = int((owners - frames // 2).abs().max())
    if radius >= frames // 2 - 1:
        raise ValueError(f"the vocoder's receptive radius reaches {radius} frames, beyond the probe's {frames // 2}")
    return radius


def addon_spec(config, hifigan_config, context: int, dims: dict, batch: bool = False) -> dict:
    """The ``addon.yaml`` content for models of these configs; ``context`` is the vocoder's radius in frames;
    ``batch`` makes every network ``batch: true``."""
    hidden, n_mels, rate = config.hidden_size, config.num_mel_bins, samples_per_frame(hifigan_config)
    return {
        "format": 2,
        "name": "fastspeech2-conformer",
        "audio": {"sample_rate": 22050, "hop_length": rate, "win_length": 1024, "n_fft": 1024,
                  "n_mels": n_mels, "fmin": 0, "fmax": 8000},
        "frontend": {"type": "characters", "symbols": SYMBOLS, "pad": "_"},
        "networks": {
            "encoder": {"role": "encoder", "file": "networks/encoder.pt2", "context": "unbounded", "mask": "text_mask",
                        "batch": batch, "inputs": {"tokens": {"shape": [1, "T_text"], "dtype": "int64"},
                                   "text_mask": {"shape": [1, "T_text"]}},
                        "outputs": {"encoded": {"shape": [1, "T_text", hidden]},
                                    "durations": {"shape": [1, "T_text"], "dtype": "int64"}}},
            "decoder": {"role": "decoder", "file": "networks/decoder.pt2", "context": "unbounded", "mask": "frames_mask",
                        "batch": batch, "inputs": {"frames": {"shape": [1, "T_frames", hidden]},
                                   "frames_mask": {"shape": [1, "T_frames"]}},
                        "outputs": {"mel": {"shape": [1, "T_frames", n_mels]}}},
            "vocoder": {"role": "vocoder", "file": "networks/vocoder.pt2", "context": context, "mask": "mel_mask",
                        "batch": batch, "inputs": {"mel": {"shape": [1, "T_frames", n_mels]}, "mel_mask": {"shape": [1, "T_frames"]}},
                        "outputs": {"audio": {"shape": [1, "T_samples"]}}},
        },
        "dims": {**dims, "T_samples": {"max": dims["T_frames"]["max"] * rate}},
        "stack": [{"type": "StreamablePipeline", "sequence_block": {"type": "Encoders"},
                   "streamable_block": {"type": "StreamableStack", "stack": [{"type": "Upsampler"}, {"type": "Decoder"}]}}],
        "vocoder": {"type": "Network", "network": "vocoder"},
    }


DIMS = {"T_text": {"max": 512, "buckets": [64, 128, 256, 512]}, "T_frames": {"max": 2048, "buckets": [256, 512, 1024, 2048]}}
"""Full-size dims: the relative position table of the library's conformer holds 2,500 steps."""


def build_addon(folder: Path, config, hifigan_config, dims: dict = DIMS, seed: int = 0, batch: bool = False):
    """Write the addon to ``folder``; return the seeded library models it was exported from (``model, hifigan``).

    With ``batch`` every network is exported with a batch axis (``batch: true``).
    """
    model, hifigan = seeded_models(config, hifigan_config, seed)
    rate = samples_per_frame(hifigan_config)
    spec = addon_spec(config, hifigan_config, receptive_radius(hifigan, rate), dims, batch)
    modules = {"encoder": EncoderNetwork(model), "decoder": DecoderNetwork(model), "vocoder": MaskedConvolutions(hifigan)}
    examples = {
        "encoder": {"tokens": torch.randint(1, len(SYMBOLS), (1, 11)), "text_mask": torch.ones(1, 11)},
        "decoder": {"frames": torch.randn(1, 37, config.hidden_size), "frames_mask": torch.ones(1, 37)},
        "vocoder": {"mel": torch.randn(1, 37, config.num_mel_bins), "mel_mask": torch.ones(1, 37)},
    }
    ttsstack.write_addon(folder, spec, modules, examples)
    return model, hifigan


@torch.no_grad()
def library_forward(model: nn.Module, hifigan: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The library's own inference on ``tokens`` ``[1, T]``: its log-mel ``[T_frames, n_mels]`` and waveform ``[T_samples]``."""
    mel = model(tokens, return_dict=True).spectrogram
    return mel[0], hifigan(mel)[0]


def main() -> None:
    """Parse arguments and build the addon."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the addon folder to write (replaced)")
    parser.add_argument("--tiny", action="store_true", help="the tests' small configs instead of the library's defaults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", action="store_true", help="export every network with a batch axis (batch: true)")
    args = parser.parse_args()
    try:
        config, hifigan_config = tiny_configs() if args.tiny else full_configs()
    except ImportError as exc:
        sys.exit(str(exc))
    dims = {"T_text": {"max": 256, "buckets": [64]}, "T_frames": {"max": 1024, "buckets": [512]}} if args.tiny else DIMS
    build_addon(args.out, config, hifigan_config, dims, args.seed, args.batch)
    print(f"wrote {args.out}: compile with `ttsstack compile {args.out} -o COMPILED --backend all`")


if __name__ == "__main__":
    main()
