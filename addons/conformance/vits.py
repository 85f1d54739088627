"""Build a ttsstack addon from Hugging Face ``VitsModel`` (MMS-TTS, piper's architecture), seeded random weights.

Usage: python addons/conformance/vits.py [--out DIR] [--seed N] [--tiny]

A conformance addon: the networks are the library's own modules behind thin
wrappers (no re-implemented math), split along VITS's real structure so the
runtime streams it from latent frames to waveform:

- ``text_encoder`` (role ``encoder``, unbounded: attention with relative
  positions; a ``text_mask`` input so static backends can pad): the text
  encoder's prior (means and log-scales, concatenated into ``prior``) and the
  stochastic duration predictor's reverse pass, whose noise is an input
  (``duration_noise``, filled by the runtime: ``noise:`` in ``addon.yaml``),
  giving VITS's durations ``ceil(exp(logw) * mask * length_scale)`` with
  ``length_scale = 1 / (speaking_rate * speed)``;
- the runtime's ``Upsampler`` repeats ``prior`` by the durations into frames,
  which is VITS's alignment path (``generate_path``, then ``attn @ m_p``);
- ``waveform`` (role ``vocoder``, bounded context): the prior sample
  ``z_p = m_p + noise * exp(logs_p) * noise_scale`` (``frame_noise`` filled by
  the runtime per frame), the flow in reverse and the HiFi-GAN decoder; its
  receptive radius in frames (:func:`receptive_radius`) is its ``context``,
  so it streams on overlapping windows exactly. Every convolution's input is
  masked so a padded window equals an unpadded one.

The runtime fills noise inputs with a standard normal draw that depends only
on the seed, the input's name and the step's index, so streamed audio equals
whole-utterance audio. Published weights are not used: the structure is what
is tested (``tests/test_vits.py`` checks the addon against ``VitsModel.forward``
fed the same noise).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, Union
from unittest import mock

import torch
from torch import nn

try:
    from transformers import VitsConfig, VitsModel
    from transformers.models.vits.modeling_vits import VitsAttention
except ImportError:  # pragma: no cover - the message is the point
    sys.exit('this script needs Hugging Face transformers: pip install -e ".[transformers]"')

import ttsstack
from ttsstack.masking import MaskedConvolutions

SYMBOLS = "_ abcdefghijklmnopqrstuvwxyz.,;:!?'-"
DURATION_NOISE = "duration_noise"
FRAME_NOISE = "frame_noise"


def tiny_config(**overrides) -> VitsConfig:
    """The same classes at test size: a layer or two, widths of 16-32, hop 16."""
    values = dict(
        vocab_size=len(SYMBOLS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, window_size=4,
        ffn_dim=32, flow_size=8, spectrogram_bins=16, upsample_initial_channel=32, upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        depth_separable_num_layers=2, duration_predictor_num_flows=2, duration_predictor_filter_channels=16,
        prior_encoder_num_flows=2, prior_encoder_num_wavenet_layers=2, posterior_encoder_num_wavenet_layers=1,
        sampling_rate=8000,
    )
    values.update(overrides)
    return VitsConfig(**values)


def full_config() -> VitsConfig:
    """MMS-TTS's published architecture (facebook/mms-tts-*) with this addon's character vocabulary."""
    return VitsConfig(vocab_size=len(SYMBOLS))


def seeded_model(config: VitsConfig, seed: int = 0) -> VitsModel:
    """The model with seeded random weights, in eval mode.

    The duration flows' elementwise affine layer (the identity at
    initialisation, as when training starts) maps the random weights'
    log-durations, spread over several units, to about 2 to 8 frames per
    token: a scale of 1/4 and a shift (both its own parameters).
    """
    torch.manual_seed(seed)
    model = VitsModel(config).eval()
    with torch.no_grad():
        model.duration_predictor.flows[0].log_scale.fill_(math.log(4.0))
        model.duration_predictor.flows[0].translate.fill_(-2.0)
    return model


Draw = Union[torch.Tensor, Callable[[tuple[int, ...]], torch.Tensor]]


@contextlib.contextmanager
def randn_returns(*draws: Draw) -> Iterator[None]:
    """``torch.randn``/``torch.randn_like`` hand out ``draws`` in order: tensors, or functions of the shape asked for.

    How the library's own sampling code is given noise from outside:
    ``VitsStochasticDurationPredictor`` and ``VitsModel.forward`` draw with
    ``torch.randn``/``torch.randn_like`` and nothing else. A draw of another
    shape than the one asked for, or one draw too many, is an error.
    """
    pending = list(draws)

    def take(shape) -> torch.Tensor:
        shape = tuple(shape)
        if not pending:
            raise RuntimeError(f"the library drew noise of shape {shape} beyond the {len(draws)} given")
        draw = pending.pop(0)
        draw = draw if isinstance(draw, torch.Tensor) else draw(shape)
        if tuple(draw.shape) != shape:
            raise RuntimeError(f"the library drew noise of shape {shape}, the next given is {tuple(draw.shape)}")
        return draw

    def randn(*size, **_kwargs):
        return take(size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size)

    with mock.patch.object(torch, "randn", randn), mock.patch.object(torch, "randn_like", lambda t, **_: take(t.shape)):
        yield


def _relative_embeddings(attention: VitsAttention, relative_embeddings: torch.Tensor, length) -> torch.Tensor:
    """``VitsAttention._get_relative_embeddings`` without its branch on the length.

    The library pads the ``2 * window + 1`` table by ``max(length - window - 1, 0)``
    each side and slices ``2 * length - 1`` entries around the middle; padding
    by ``length`` always and slicing the same entries gives the same tensor for
    every length, which ``torch.export`` can keep symbolic.
    """
    padded = nn.functional.pad(relative_embeddings, [0, 0, length, length, 0, 0])
    return padded[:, attention.window_size + 1 : attention.window_size + 2 * length]


def _relative_to_absolute(attention: VitsAttention, relative: torch.Tensor) -> torch.Tensor:
    """``VitsAttention._relative_position_to_absolute_position`` as one gather.

    Entry ``(i, j)`` is the relative logit of offset ``j - i`` (column
    ``j - i + length - 1``); the library reaches it by padding and viewing a
    flat buffer as ``[length + 1, 2 * length - 1]``, a divisibility
    ``torch.export`` cannot prove for a symbolic length.
    """
    length = relative.shape[1]
    steps = torch.arange(length, device=relative.device)
    offsets = steps.unsqueeze(0) - steps.unsqueeze(1) + (length - 1)
    return relative.gather(2, offsets.unsqueeze(0).expand(relative.shape[0], -1, -1))


@contextlib.contextmanager
def exportable_attention() -> Iterator[None]:
    """``VitsAttention``'s two length-dependent reshapes in forms ``torch.export`` keeps symbolic (same values)."""
    with mock.patch.object(VitsAttention, "_get_relative_embeddings", _relative_embeddings), \
            mock.patch.object(VitsAttention, "_relative_position_to_absolute_position", _relative_to_absolute):
        yield


class VitsTextNetwork(nn.Module):
    """Tokens to the prior ``[1, T_text, 2 * flow_size]`` and the durations ``[1, T_text]`` (role ``encoder``).

    ``VitsTextEncoder`` (two reshapes of its relative-position attention in
    export-friendly forms: :func:`exportable_attention`) then ``VitsStochasticDurationPredictor`` in reverse
    (its ``torch.randn`` draw is ``duration_noise``, standard normal, scaled by
    the model's ``noise_scale_duration`` as the library does), as in
    ``VitsModel.forward``. ``speed`` multiplies the model's speaking rate.
    """

    def __init__(self, model: VitsModel):
        super().__init__()
        self.model = model

    def forward(self, tokens, text_mask, speed, duration_noise):
        padding = text_mask.unsqueeze(-1)
        with exportable_attention():
            encoded = self.model.text_encoder(
                input_ids=tokens, padding_mask=padding, attention_mask=text_mask.to(torch.long), return_dict=True
            )
        mask = padding.transpose(1, 2)
        with randn_returns(duration_noise):
            log_duration = self.model.duration_predictor(
                encoded.last_hidden_state.transpose(1, 2), mask, None, reverse=True,
                noise_scale=self.model.noise_scale_duration,
            )
        length_scale = 1.0 / (self.model.speaking_rate * speed)
        durations = torch.ceil(torch.exp(log_duration) * mask * length_scale)
        prior = torch.cat([encoded.prior_means, encoded.prior_log_variances], dim=2)
        return prior, durations.squeeze(1)


class VitsSynthesis(nn.Module):
    """Prior frames ``[1, T_frames, 2 * flow_size]`` and ``frame_noise`` to the waveform ``[1, T_frames * hop]``.

    ``VitsModel.forward`` from the expanded prior on: ``z_p = m_p + noise *
    exp(logs_p) * noise_scale`` (``frame_noise`` in place of the library's
    ``randn_like`` draw, in its order of operations), the flow in reverse,
    then the HiFi-GAN decoder.
    """

    def __init__(self, model: VitsModel):
        super().__init__()
        self.model = model
        self.flow_size = model.config.flow_size

    def forward(self, frames, frame_noise):
        means, log_variances = frames.transpose(1, 2).split(self.flow_size, dim=1)
        latents = means + frame_noise * torch.exp(log_variances) * self.model.noise_scale
        whole = torch.ones_like(frames[:, :, :1]).transpose(1, 2)
        latents = self.model.flow(latents, whole, None, reverse=True)
        return self.model.decoder(latents * whole, None).squeeze(1)


class VitsWaveformNetwork(nn.Module):
    """The ``waveform`` network (role ``vocoder``): :class:`VitsSynthesis` with every convolution's input masked.

    ``frames_mask`` (1: real frame) zeroes padded frames before each
    convolution (:class:`~ttsstack.masking.MaskedConvolutions`), so a window
    padded to a bucket gives the real frames' samples of an unpadded run.
    """

    def __init__(self, model: VitsModel):
        super().__init__()
        self.masked = MaskedConvolutions(VitsSynthesis(model))

    def forward(self, frames, frames_mask, frame_noise):
        return self.masked(frames, frames_mask, frame_noise)


def receptive_radius(config: VitsConfig) -> int:
    """The waveform network's receptive radius in frames: the flow's WaveNets plus HiFi-GAN's convolutions.

    Each layer's radius in its own steps, divided by its steps per frame,
    summed and rounded up: an upper bound (transposed convolutions counted by
    their whole kernel), tight to a frame or two.
    """
    wavenet = sum((config.wavenet_kernel_size - 1) // 2 * config.wavenet_dilation_rate**i
                  for i in range(config.prior_encoder_num_wavenet_layers))
    frames = config.prior_encoder_num_flows * wavenet + 3.0  # flows, then HiFi-GAN's conv_pre (kernel 7)
    rate = 1
    for upsample, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes):
        frames += math.ceil(kernel / upsample) / rate
        rate *= upsample
        frames += max(
            sum(d * (k - 1) // 2 + (k - 1) // 2 for d in dilations)
            for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)
        ) / rate
    frames += 3 / rate  # conv_post (kernel 7)
    return math.ceil(frames)


def addon_spec(config: VitsConfig, name: str, text_buckets: list[int], frame_buckets: list[int], max_frames: int) -> dict:
    """The ``addon.yaml`` content: the two networks, their noise inputs, Encoders then the Upsampler; the waveform vocoder."""
    prior = 2 * config.flow_size
    hop = math.prod(config.upsample_rates)
    return {
        "format": 2,
        "name": name,
        "audio": {"sample_rate": config.sampling_rate, "hop_length": hop, "win_length": 4 * hop, "n_fft": 4 * hop,
                  "n_mels": config.flow_size, "fmin": 0},
        "frontend": {"type": "characters", "symbols": SYMBOLS, "pad": "_"},
        "networks": {
            "text_encoder": {
                "role": "encoder", "file": "networks/text_encoder.pt2", "context": "unbounded", "mask": "text_mask",
                "noise": {DURATION_NOISE: {}},
                "inputs": {"tokens": {"shape": [1, "T_text"], "dtype": "int64"},
                           "text_mask": {"shape": [1, "T_text"]},
                           "speed": {"shape": [1]},
                           DURATION_NOISE: {"shape": [1, 2, "T_text"]}},
                "outputs": {"prior": {"shape": [1, "T_text", prior]}, "durations": {"shape": [1, "T_text"]}},
            },
            "waveform": {
                "role": "vocoder", "file": "networks/waveform.pt2", "context": receptive_radius(config),
                "mask": "frames_mask", "noise": {FRAME_NOISE: {}},
                "inputs": {"frames": {"shape": [1, "T_frames", prior]},
                           "frames_mask": {"shape": [1, "T_frames"]},
                           FRAME_NOISE: {"shape": [1, config.flow_size, "T_frames"]}},
                "outputs": {"audio": {"shape": [1, "T_samples"]}},
            },
        },
        "dims": {"T_text": {"max": 512, "buckets": text_buckets},
                 "T_frames": {"max": max_frames, "buckets": frame_buckets},
                 "T_samples": {"max": max_frames * hop}},
        "stack": [{"type": "StreamablePipeline", "sequence_block": {"type": "Encoders"},
                   "streamable_block": {"type": "Upsampler", "encoded": "prior", "speed": None}}],
        "vocoder": {"type": "Network"},
    }


def build_addon(folder: Path, config: VitsConfig, seed: int = 0, text_buckets: list[int] | None = None,
                frame_buckets: list[int] | None = None, max_frames: int = 16384) -> tuple[Path, VitsModel]:
    """Export the seeded model's two networks into an addon folder; return it and the model (the reference)."""
    model = seeded_model(config, seed)
    spec = addon_spec(config, "vits-conformance", text_buckets or [32, 64, 128, 256],
                      frame_buckets or [128, 256, 512], max_frames)
    prior = 2 * config.flow_size
    examples = {
        "text_encoder": {"tokens": torch.randint(1, len(SYMBOLS), (1, 9)), "text_mask": torch.ones(1, 9),
                         "speed": torch.ones(1), DURATION_NOISE: torch.randn(1, 2, 9)},
        "waveform": {"frames": torch.randn(1, 30, prior), "frames_mask": torch.ones(1, 30),
                     FRAME_NOISE: torch.randn(1, config.flow_size, 30)},
    }
    modules = {"text_encoder": VitsTextNetwork(model), "waveform": VitsWaveformNetwork(model)}
    # The spline's input checks (``torch_compilable_check``) would be exported as data-dependent
    # asserts, which ONNX cannot express; the library's own switch leaves them out, as in production.
    with mock.patch.dict(os.environ, {"TRANSFORMERS_DISABLE_TORCH_CHECK": "1"}):
        ttsstack.write_addon(folder, spec, modules, examples)
    return folder, model


def main(argv: list[str] | None = None) -> int:
    """Build the addon (MMS-TTS size, or ``--tiny``) into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/vits"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="the test-size configuration")
    args = parser.parse_args(argv)
    build_addon(args.out, tiny_config() if args.tiny else full_config(), args.seed)
    print(f"wrote {args.out}; compile it with: ttsstack compile {args.out} -o compiled/vits --backend all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
