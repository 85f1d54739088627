"""Build Kokoro-82M (the ``kokoro`` package: StyleTTS2-style, iSTFTNet decoder) into a ttsstack addon, seeded weights.

Usage: python addons/conformance/kokoro.py --out DIR [--tiny] [--seed N] [--complex]

A conformance addon: the public implementation's structure (``kokoro``'s
``KModel`` built from Kokoro-82M's published ``config.json`` values), not its
weights (the hub is not reachable here), so the weights are seeded random.
Install the library without letting pip touch torch or transformers:
``pip install --no-deps kokoro loguru attrs``. Its ``__init__`` imports the
``misaki`` G2P pipeline, so this script loads ``kokoro.model`` (and
``modules``, ``istftnet``, ``custom_stft``) under a stub package instead.

The model is split along ``KModel.forward_with_tokens``, each network a thin
wrapper that calls the library's own submodules:

- ``encoder`` (role ``encoder``, unbounded: ALBERT and LSTMs): the PL-BERT,
  ``bert_encoder``, the prosody predictor's ``DurationEncoder`` and duration
  LSTM and projection (durations ``round(sum(sigmoid) / speed)``, at least 1,
  as the library), and the ``TextEncoder``. Outputs ``encoded``: the
  duration encoder's output ``d`` (hidden + style channels) and the text
  encoder's output ``t_en`` per token, and the integer ``durations``.
- the alignment matrix ``pred_aln_trg`` (``d @ aln``, ``t_en @ aln``) is the
  runtime's ``Upsampler`` (``speed: null``: the network applies it, before rounding).
- ``prosody`` (role ``decoder``, unbounded: a bidirectional LSTM and
  instance norms over the frames): ``ProsodyPredictor.F0Ntrain`` on the
  frames, giving F0 and energy at twice the frame rate. Outputs ``features``
  per frame: ``asr`` (the text encoder's frames), the frame's two F0 and two
  energy values, and the acoustic half of the style (so the vocoder, which
  takes one frame input, gets it).
- ``vocoder`` (role ``vocoder``, unbounded: instance norms over time and the
  SineGen's phase, a cumulative sum from the utterance's start): the
  library's ``Decoder`` (AdaIN residual blocks, then the iSTFTNet
  ``Generator`` with its harmonic-plus-noise source). Its random draws are
  ``noise:`` inputs: ``source_noise`` (SineGen's ``randn_like``, 600 x 9
  values per frame) and ``phase_noise`` (its initial harmonic phases, drawn
  uniform by the library: the first frame's 9 normals through the normal CDF).

Static backends pad pieces, so ``prosody`` and ``vocoder`` take a mask:
every convolution reads zeros and every ``AdaIN1d`` takes its instance-norm
statistics over real steps only (:func:`masked_layers`), the generator's STFT
sees its end as at a true end (:func:`stft_padding`); the LSTMs run with true
lengths (:func:`lstms_with_lengths`). Unpadded, every network equals the
library's modules (the vocoder within 2e-6).

Numerics: the waveform is chaotic in F0 at float32. The SineGen's phase
reaches ~1e4 radians within a sentence and the generator takes the STFT
phase of its source by ``atan2``, so a change of F0 by one float32 ulp
(1e-7 relative) moves samples by up to 0.27 (RMS 0.19), and fp32 against
fp64 differs by 0.24. No backend that reorders arithmetic meets the 1e-3
waveform tolerance of ``ttsstack parity`` on voiced speech, while the frame
networks pass, so the vocoder declares ``compare: spectrum``: parity compares
its waveform by log-mel spectrum instead (``ttsstack.tolerances.SPECTRUM``).

The voice's style vector ``ref_s`` (256 values: acoustic half, prosody half)
is the addon's ``speaker`` input. (Kokoro's voice files hold one such row per
phoneme count and pick ``pack[len(ps) - 1]``; here one row is the voice.)

``disable_complex`` (the default here) builds the library's conv-based
``CustomSTFT``, which exports to ONNX; ``--complex`` keeps ``torch.stft``/
``torch.istft`` (complex tensors) to see what the backends make of them.
Random weights need two biases set to behave like speech: the duration
projection for about 3 frames per token (untrained, 50 sigmoids sum to ~25),
and the F0 projection for about 150 Hz (so the harmonic source is voiced).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import sys
import types
from pathlib import Path
from typing import Iterator
from unittest import mock

import torch
from torch import nn

import ttsstack
from ttsstack.recurrent import run_recurrent

SYMBOLS = "$ abcdefghijklmnopqrstuvwxyz.,;:!?'-"
"""The frontend's table; id 0 (``$``) is Kokoro's boundary token, added before and after each piece."""
FRAMES_PER_TOKEN = 3.0
F0_HZ = 150.0
SAMPLES_PER_FRAME = 600
"""24 kHz samples per token frame: F0 at twice the frame rate, upsampled 10 x 6, iSTFT hop 5."""
HARMONICS = 9
STYLE = 256

FULL_CONFIG = {
    "istftnet": {"upsample_kernel_sizes": [20, 12], "upsample_rates": [10, 6], "gen_istft_hop_size": 5,
                 "gen_istft_n_fft": 20, "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                 "resblock_kernel_sizes": [3, 7, 11], "upsample_initial_channel": 512},
    "dim_in": 64, "dropout": 0.2, "hidden_dim": 512, "max_conv_dim": 512, "max_dur": 50, "multispeaker": True,
    "n_layer": 3, "n_mels": 80, "n_token": 178, "style_dim": 128, "text_encoder_kernel_size": 5,
    "plbert": {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 2048,
               "max_position_embeddings": 512, "num_hidden_layers": 12, "dropout": 0.1},
}
"""hexgrad/Kokoro-82M's config.json without its vocab (the frontend here is ``SYMBOLS``)."""


def tiny_config() -> dict:
    """Smaller where the library allows: a 2-layer 64-wide PL-BERT, one duration-encoder layer, one resblock kernel.

    ``hidden_dim`` (512), the decoder's 1024-channel blocks and the generator's
    512 channels are fixed by the library's code, so the vocoder stays full width.
    """
    config = copy.deepcopy(FULL_CONFIG)
    config["plbert"].update(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_hidden_layers=2)
    config.update(n_layer=1, text_encoder_kernel_size=3)
    config["istftnet"].update(resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]])
    return config


def kokoro_modules():
    """``kokoro.model`` loaded from the installed package without running its ``__init__`` (which needs misaki).

    This script is itself named ``kokoro.py``, so the package is looked up on
    ``sys.path`` without this script's folder, imported under a stub
    ``kokoro`` package (its ``istftnet`` imports ``kokoro.custom_stft``
    absolutely), and whatever ``kokoro`` was before is put back.
    """
    import importlib.machinery

    loaded = sys.modules.get("kokoro.model")
    if loaded is not None:
        return loaded
    here = Path(__file__).resolve().parent
    path = [p for p in sys.path if Path(p or ".").resolve() != here]
    spec = importlib.machinery.PathFinder.find_spec("kokoro", path)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the Kokoro conformance addon needs the kokoro package: pip install --no-deps kokoro loguru attrs")
    package = types.ModuleType("kokoro")
    package.__path__ = list(spec.submodule_search_locations)
    previous = sys.modules.get("kokoro")
    sys.modules["kokoro"] = package
    try:
        return importlib.import_module("kokoro.model")
    finally:
        if previous is not None:
            sys.modules["kokoro"] = previous


def seeded_model(config: dict, seed: int = 0, disable_complex: bool = True, folder: Path | None = None):
    """``KModel`` of ``config`` with seeded random weights, in eval mode (no download: an empty state dict is given)."""
    kmodel = kokoro_modules()
    empty = Path(folder or ".") / ".empty_state.pth"
    torch.save({}, empty)
    torch.manual_seed(seed)
    try:
        model = kmodel.KModel(repo_id="hexgrad/Kokoro-82M", config={**config, "vocab": {c: i for i, c in enumerate(SYMBOLS)}},
                              model=str(empty), disable_complex=disable_complex).eval()
    finally:
        empty.unlink()
    with torch.no_grad():
        # sigmoid(b) * max_dur = frames per token
        model.predictor.duration_proj.linear_layer.bias.fill_(math.log(FRAMES_PER_TOKEN / (config["max_dur"] - FRAMES_PER_TOKEN)))
        model.predictor.F0_proj.bias.fill_(F0_HZ)
    return model


def seeded_voice(seed: int = 0) -> torch.Tensor:
    """A style vector ``[1, 256]`` of the scale of Kokoro's voices (acoustic half, prosody half)."""
    return torch.randn(1, STYLE, generator=torch.Generator().manual_seed(seed + 1)) * 0.2


# -- LSTMs with true lengths -------------------------------------------------------------------------------------

class _Packed:
    """What the patched ``pack_padded_sequence`` hands the LSTMs: the padded tensor and its true lengths."""

    def __init__(self, data: torch.Tensor, lengths: torch.Tensor):
        self.data, self.lengths = data, lengths


class _LengthsLSTM(nn.Module):
    """Stands in for one of the library's ``nn.LSTM``s: a packed call runs with its lengths, a plain call with ``lengths``."""

    def __init__(self, lstm: nn.LSTM, lengths: torch.Tensor):
        super().__init__()
        self.lstm, self.lengths = lstm, lengths

    def flatten_parameters(self):
        pass

    def forward(self, x, hx=None):
        if isinstance(x, _Packed):
            out, states = run_recurrent(self.lstm, x.data, x.lengths, hx)
            return _Packed(out, x.lengths), states
        return run_recurrent(self.lstm, x, self.lengths, hx)


@contextlib.contextmanager
def lstms_with_lengths(model: nn.Module, lengths: torch.Tensor) -> Iterator[None]:
    """Within the block the library's LSTMs honour true ``lengths`` ``[1]`` (packed or not), exportably.

    The library packs with ``pack_padded_sequence`` (which ``torch.export``
    cannot trace) and calls the duration and ``shared`` LSTMs on padded
    batches; here every call runs :func:`ttsstack.recurrent.run_recurrent`
    with the true length, so a piece padded to a bucket equals the unpadded one.
    Unpadded, the values are the library's.
    """
    swaps = []
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LSTM):
                swaps.append((parent, name, child))
    try:
        for parent, name, child in swaps:
            setattr(parent, name, _LengthsLSTM(child, lengths)) if not isinstance(parent, nn.ModuleList) \
                else parent.__setitem__(int(name), _LengthsLSTM(child, lengths))
        with mock.patch.object(nn.utils.rnn, "pack_padded_sequence", lambda x, lengths, **_: _Packed(x, lengths)), \
                mock.patch.object(nn.utils.rnn, "pad_packed_sequence", lambda p, **_: (p.data, p.lengths)):
            yield
    finally:
        for parent, name, child in swaps:
            setattr(parent, name, child) if not isinstance(parent, nn.ModuleList) else parent.__setitem__(int(name), child)


# -- padding: instance norms and convolutions over real steps -----------------------------------------------------

RATE = "_ttsstack_steps_per_frame"
"""Attribute set on each layer by :func:`record_rates`: ``(rate, extra)``."""


def record_rates(root: nn.Module, run, frames: int) -> None:
    """Set :data:`RATE` ``(rate, extra)`` on every convolution and ``AdaIN1d`` under ``root``: its input holds
    ``rate * frames + extra`` steps, seen on one dry run of ``run()`` on ``frames`` frames (kept on the
    layer itself: ``torch.export`` may call copies of the modules).

    The generator's last stage runs at 120 steps per frame plus one (its
    reflection pad, and the STFT's centred frames), which no division of
    sizes recovers under ``torch.export``, so each layer's rate is recorded as numbers.
    """
    istftnet = sys.modules["kokoro.istftnet"]

    def record(layer, args):
        steps = args[0].shape[-1]
        setattr(layer, RATE, (steps // frames, steps % frames))

    layers = [m for m in root.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d, istftnet.AdaIN1d))]
    hooks = [m.register_forward_pre_hook(record) for m in layers]
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()


def _steps_mask(mask: torch.Tensor, rate: int, extra: int, dtype) -> torch.Tensor:
    """``mask`` ``[1, T]`` at a layer's rate ``[1, 1, T * rate + extra]``; ``extra`` steps lead (a pad at the start)."""
    m = mask.to(dtype).unsqueeze(-1).expand(-1, -1, rate).reshape(mask.shape[0], 1, -1)
    return nn.functional.pad(m, (extra, 0), value=1.0) if extra else m


@contextlib.contextmanager
def masked_layers(root: nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """Within the block the layers of ``root`` that mix steps ignore padded ones (``mask`` ``[1, T]``, 1: real).

    Every convolution reads its input times the mask at its rate (zeros, as
    its own padding reads at a true end), and every ``AdaIN1d``, whose
    ``InstanceNorm1d`` takes its statistics over the whole time axis,
    normalises over the real steps only. On an unpadded piece the values are
    the library's (the norm's arithmetic in another order); on a padded one,
    the same.
    """
    istftnet = sys.modules["kokoro.istftnet"]

    def zero_padding(layer, args):
        rate, extra = getattr(layer, RATE)
        return (args[0] * _steps_mask(mask, rate, extra, args[0].dtype), *args[1:])

    def forward(self, x, s):
        m = _steps_mask(mask, *getattr(self, RATE), x.dtype)
        count = m.sum(-1, keepdim=True)
        mean = (x * m).sum(-1, keepdim=True) / count
        var = ((x - mean) * m).pow(2).sum(-1, keepdim=True) / count
        normed = (x - mean) * torch.rsqrt(var + self.norm.eps)
        if self.norm.affine:
            normed = normed * self.norm.weight.unsqueeze(-1) + self.norm.bias.unsqueeze(-1)
        h = self.fc(s)
        gamma, beta = torch.chunk(h.view(h.size(0), h.size(1), 1), chunks=2, dim=1)
        return (1 + gamma) * normed + beta

    convolutions = [m for m in root.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
    hooks = [conv.register_forward_pre_hook(zero_padding) for conv in convolutions]
    try:
        with mock.patch.object(istftnet.AdaIN1d, "forward", forward):
            yield
    finally:
        for hook in hooks:
            hook.remove()


@contextlib.contextmanager
def stft_padding(mask: torch.Tensor) -> Iterator[None]:
    """The generator's conv-based STFT as at a true end: samples past the real ones read as the last real
    sample (the library's replicate padding, ``CustomSTFT``), and spectrum frames past the real ones add
    nothing to the inverse's overlap-add. Samples run at ``SAMPLES_PER_FRAME``, frames at 120 plus one."""
    custom = sys.modules["kokoro.custom_stft"].CustomSTFT
    transform, inverse = custom.transform, custom.inverse

    def padded_transform(self, waveform):
        m = _steps_mask(mask, SAMPLES_PER_FRAME, 0, waveform.dtype).squeeze(1)
        last = m - torch.nn.functional.pad(m[:, 1:], (0, 1))  # 1 at the last real sample
        held = (waveform * last).sum(-1, keepdim=True)
        return transform(self, waveform * m + held * (1 - m))

    def padded_inverse(self, magnitude, phase, length=None):
        frames = _steps_mask(mask, SAMPLES_PER_FRAME // self.hop_length, 1, magnitude.dtype)
        return inverse(self, magnitude * frames, phase, length)

    with mock.patch.object(custom, "transform", padded_transform), mock.patch.object(custom, "inverse", padded_inverse):
        yield


# -- noise ----------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def draws_from(phase: torch.Tensor, source: torch.Tensor) -> Iterator[None]:
    """The generator's three random draws, from inputs: ``torch.rand`` (SineGen's initial harmonic phases)
    from ``phase`` ``[1, 9]`` normals through the normal CDF; the first ``randn_like`` (SineGen's additive noise,
    ``[1, samples, 9]``) is ``source``; the second (``SourceModuleHnNSF``'s noise branch, unused by the
    ``Generator``) zeros."""
    given = [source]

    def rand(*size, **_):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)
        if tuple(phase.shape) != shape:
            raise RuntimeError(f"the library drew rand{shape}, the phase noise is {tuple(phase.shape)}")
        return 0.5 * (1 + torch.erf(phase / math.sqrt(2)))

    def randn_like(t, **_):
        if given:
            draw = given.pop(0)
            return draw.reshape(t.shape)
        return torch.zeros_like(t)

    with mock.patch.object(torch, "rand", rand), mock.patch.object(torch, "randn_like", randn_like):
        yield


# -- networks -------------------------------------------------------------------------------------------------------

class EncoderNetwork(nn.Module):
    """Tokens (between boundary tokens) and the style to ``encoded`` ``[1, T, 640 + 512]`` and ``durations`` ``[1, T]``.

    Holds only the submodules it calls (an exported program keeps every
    parameter of its module, used or not).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.bert, self.bert_encoder, self.text_encoder = model.bert, model.bert_encoder, model.text_encoder
        self.duration_encoder = model.predictor.text_encoder
        self.lstm, self.duration_proj = model.predictor.lstm, model.predictor.duration_proj

    def forward(self, tokens, text_mask, speed, style):
        lengths = text_mask.sum(1).to(torch.int64)
        padding = text_mask == 0  # the library's text_mask: True on padding
        with lstms_with_lengths(self, lengths):
            bert = self.bert(tokens, attention_mask=text_mask.to(torch.int64))
            d_en = self.bert_encoder(bert).transpose(-1, -2)
            d = self.duration_encoder(d_en, style[:, 128:], lengths, padding)
            x, _ = self.lstm(d)
            duration = torch.sigmoid(self.duration_proj(x)).sum(dim=-1) / speed
            durations = torch.round(duration).clamp(min=1).long() * text_mask.to(torch.int64)
            t_en = self.text_encoder(tokens, lengths, padding)
        return torch.cat([d, t_en.transpose(1, 2)], dim=2), durations


class ProsodyNetwork(nn.Module):
    """Aligned frames ``[1, F, 1152]`` and the style to ``features`` ``[1, F, 512 + 2 + 2 + 128]``: ``F0Ntrain``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.predictor = model.predictor
        self.split = model.predictor.lstm.input_size  # d_hid + style_dim: the duration encoder's channels
        frames = 7
        record_rates(self.predictor, lambda: self.predictor.F0Ntrain(
            torch.zeros(1, self.split, frames), torch.zeros(1, self.split - model.predictor.text_encoder.d_model)), frames)

    def forward(self, frames, frames_mask, style):
        en = frames[:, :, : self.split].transpose(1, 2)
        asr = frames[:, :, self.split :]
        lengths = frames_mask.sum(1).to(torch.int64)
        with lstms_with_lengths(self, lengths), masked_layers(self.predictor, frames_mask):
            f0, n = self.predictor.F0Ntrain(en, style[:, 128:])
        steps = frames.shape[1]
        acoustic = style[:, :128].unsqueeze(1).expand(-1, steps, -1)
        return torch.cat([asr, f0.reshape(1, steps, 2), n.reshape(1, steps, 2), acoustic], dim=2)


class VocoderNetwork(nn.Module):
    """``features`` ``[1, F, 644]`` and the generator's noise to the 24 kHz waveform ``[1, 600 F]``: the library's ``Decoder``.

    ``features_mask`` (1: real frame) makes a piece padded to a bucket give
    the unpadded waveform: convolutions and instance norms over real steps
    (:func:`masked_layers`), the STFT's end as at a true end
    (:func:`stft_padding`). The SineGen needs nothing: padded frames carry F0
    0, so their phase increments are 0 and the phase's upsampling at the end
    reads the last real value, as the library's clamping does.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder
        frames = 7
        record_rates(self.decoder, lambda: self._run(
            torch.zeros(1, frames, 644), torch.zeros(1, frames, SAMPLES_PER_FRAME * HARMONICS),
            torch.zeros(1, frames, HARMONICS)), frames)

    def _run(self, features, source_noise, phase_noise):
        steps = features.shape[1]
        asr = features[:, :, :512].transpose(1, 2)
        f0 = features[:, :, 512:514].reshape(1, 2 * steps)
        n = features[:, :, 514:516].reshape(1, 2 * steps)
        s = features[:, 0, 516:]
        with draws_from(phase_noise[:, 0], source_noise.reshape(1, steps * SAMPLES_PER_FRAME, HARMONICS)):
            return self.decoder(asr, f0, n, s).reshape(1, -1)

    def forward(self, features, features_mask, source_noise, phase_noise):
        with masked_layers(self.decoder, features_mask), stft_padding(features_mask):
            return self._run(features, source_noise, phase_noise)


def addon_spec(voice: torch.Tensor, dims: dict) -> dict:
    """The ``addon.yaml`` content."""
    encoded, features = 640 + 512, 512 + 2 + 2 + 128
    return {
        "format": 2,
        "name": "kokoro-conformance",
        "audio": {"sample_rate": 24000, "hop_length": SAMPLES_PER_FRAME, "win_length": 2400, "n_fft": 2400,
                  "n_mels": 80, "fmin": 0, "fmax": 12000},
        "frontend": {"type": "characters", "symbols": SYMBOLS, "pad": "$", "bos": "$", "eos": "$"},
        "speaker": {"input": "style", "dim": STYLE, "voices": {"seeded": [round(v, 6) for v in voice[0].tolist()]}},
        "networks": {
            "encoder": {"role": "encoder", "file": "networks/encoder.pt2", "context": "unbounded", "mask": "text_mask",
                        "inputs": {"tokens": {"shape": [1, "T_text"], "dtype": "int64"},
                                   "text_mask": {"shape": [1, "T_text"]}, "speed": {"shape": [1]},
                                   "style": {"shape": [1, STYLE]}},
                        "outputs": {"encoded": {"shape": [1, "T_text", encoded]},
                                    "durations": {"shape": [1, "T_text"], "dtype": "int64"}}},
            "prosody": {"role": "decoder", "file": "networks/prosody.pt2", "context": "unbounded", "mask": "frames_mask",
                        "inputs": {"frames": {"shape": [1, "T_frames", encoded]}, "frames_mask": {"shape": [1, "T_frames"]},
                                   "style": {"shape": [1, STYLE]}},
                        "outputs": {"features": {"shape": [1, "T_frames", features]}}},
            "vocoder": {"role": "vocoder", "file": "networks/vocoder.pt2", "context": "unbounded", "mask": "features_mask",
                        "noise": {"source_noise": {}, "phase_noise": {}}, "compare": "spectrum",
                        "inputs": {"features": {"shape": [1, "T_frames", features]}, "features_mask": {"shape": [1, "T_frames"]},
                                   "source_noise": {"shape": [1, "T_frames", SAMPLES_PER_FRAME * HARMONICS]},
                                   "phase_noise": {"shape": [1, "T_frames", HARMONICS]}},
                        "outputs": {"audio": {"shape": [1, "T_samples"]}}},
        },
        "dims": {**dims, "T_samples": {"max": dims["T_frames"]["max"] * SAMPLES_PER_FRAME}},
        "stack": [{"type": "StreamablePipeline", "sequence_block": {"type": "Encoders"},
                   "streamable_block": {"type": "StreamableStack",
                                        "stack": [{"type": "Upsampler", "speed": None},
                                                  {"type": "Decoder", "mel": "features"}]}}],
        "vocoder": {"type": "Network", "network": "vocoder"},
    }


DIMS = {"T_text": {"max": 510, "buckets": [64, 128, 256, 510]}, "T_frames": {"max": 4096, "buckets": [256, 512, 1024]}}


def build_addon(folder: Path, config: dict, dims: dict = DIMS, seed: int = 0, disable_complex: bool = True):
    """Write the addon to ``folder``; return the seeded ``KModel`` and voice it was exported from."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    model = seeded_model(config, seed, disable_complex, folder.parent)
    voice = seeded_voice(seed)
    spec = addon_spec(voice, dims)
    t, f = 11, 31
    examples = {
        "encoder": {"tokens": torch.cat([torch.zeros(1, 1, dtype=torch.int64), torch.randint(1, len(SYMBOLS), (1, t - 2)),
                                         torch.zeros(1, 1, dtype=torch.int64)], 1),
                    "text_mask": torch.ones(1, t), "speed": torch.ones(1), "style": voice},
        "prosody": {"frames": torch.randn(1, f, 640 + 512), "frames_mask": torch.ones(1, f), "style": voice},
        "vocoder": {"features": torch.randn(1, f, 644), "features_mask": torch.ones(1, f), "source_noise": torch.randn(1, f, SAMPLES_PER_FRAME * HARMONICS),
                    "phase_noise": torch.randn(1, f, HARMONICS)},
    }
    modules = {"encoder": EncoderNetwork(model), "prosody": ProsodyNetwork(model), "vocoder": VocoderNetwork(model)}
    ttsstack.write_addon(folder, spec, modules, examples)
    return model, voice


@torch.no_grad()
def library_forward(model: nn.Module, tokens: torch.Tensor, voice: torch.Tensor, phase: torch.Tensor,
                    source: torch.Tensor, speed: float = 1.0):
    """``KModel.forward_with_tokens`` on ``tokens`` ``[1, T]`` (boundaries included), its draws given: audio, durations."""
    with draws_from(phase, source):
        return model.forward_with_tokens(tokens, voice, speed)


def main() -> None:
    """Parse arguments and build the addon."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the addon folder to write (replaced)")
    parser.add_argument("--tiny", action="store_true", help="smaller PL-BERT, duration encoder and resblocks (default: Kokoro-82M's config)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and voice (default 0)")
    parser.add_argument("--complex", action="store_true", help="keep torch.stft/istft (default: the library's disable_complex CustomSTFT)")
    args = parser.parse_args()
    config = tiny_config() if args.tiny else FULL_CONFIG
    dims = {"T_text": {"max": 510, "buckets": [64]}, "T_frames": {"max": 2048, "buckets": [256]}} if args.tiny else DIMS
    build_addon(args.out, config, dims, args.seed, not args.complex)
    print(f"wrote {args.out}: compile with `ttsstack compile {args.out} -o COMPILED --backend cpu,onnx`")


if __name__ == "__main__":
    main()
