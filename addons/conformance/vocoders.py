"""Build the FastSpeech2-Conformer addon with a public vocoder other than its HiFi-GAN: UnivNet or Vocos.

Usage: python addons/conformance/vocoders.py --out DIR --vocoder univnet|vocos [--tiny] [--seed N] [--vocoder-buckets 64,128,256|none]

A conformance addon like ``fastspeech2_conformer.py`` (whose functions build
the acoustic side: the same ``encoder`` and ``decoder`` networks, the runtime's
``Upsampler`` between them), with its ``vocoder`` network swapped for:

- ``univnet``: Hugging Face ``transformers``' ``UnivNetModel`` (location-variable
  convolutions whose kernels a kernel predictor makes from the mel). It takes a
  standard normal noise sequence ``[1, T_frames, model_in_channels]`` besides
  the mel: declared as a ``noise:`` input, which the runtime fills per frame
  from a seed, so a streamed waveform equals a whole run's.
- ``vocos``: the ``vocos`` package's mel variant (``VocosBackbone`` of ConvNeXt
  blocks and ``ISTFTHead`` with ``padding="same"``, as in its published
  ``charactr/vocos-mel-24khz`` config): the head predicts an STFT and inverts
  it with ``torch.fft.irfft`` and an overlap-add (``fold``).

Weights are seeded random (model hubs are unreachable here); the acoustic
model's mel channels and hop are set to the vocoder's (100 mels, 256 samples
per frame at 24 kHz at full size). Each vocoder's receptive radius in frames
is measured (:func:`receptive_radius`) and declared as its ``context``.

Every convolution of the vocoders reads zeros on padded frames
(:func:`ttsstack.masking.masked_convolutions`); what else reads across frames
(UnivNet's reflect padding and location-variable convolutions, Vocos's
overlap-add) is masked here too, so static backends can pad a window to a
bucket. The vocoder's frames have a dim of their own (``T_vocoder``, small
buckets) so that those windows are not padded to the decoder's sentence-sized
``T_frames`` buckets (``--vocoder-buckets none`` shares them).

Needs ``transformers`` (``pip install -e ".[transformers]"``) and, for Vocos,
``pip install --no-deps vocos``: the package's ``__init__`` imports torchaudio and
encodec, so its model modules are loaded on their own (:func:`vocos_modules`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fastspeech2_conformer as fs2  # noqa: E402  (the acoustic side)

import ttsstack  # noqa: E402
from ttsstack.masking import masked_convolutions  # noqa: E402

VOCODERS = ("univnet", "vocos")
NOISE = "noise"
VOCODER_DIM = "T_vocoder"
VOCODER_BUCKETS = {"tiny": [32, 64, 128], "full": [64, 128, 256]}
"""The vocoder dim's buckets (``--vocoder-buckets``): windows of the chunk schedule (8 to 256 frames) plus context."""


# ---------------------------------------------------------------- configs

def univnet_config(tiny: bool):
    """UnivNet's config: the library's default (100 mels, hop 8*8*4 = 256, 24 kHz), or a 2x2 test size (16 mels, hop 4).

    Random weights are drawn wider than the library's 0.01 so the waveform has
    a level waveform comparisons can see.
    """
    transformers = fs2.require_transformers()
    if not tiny:
        return transformers.UnivNetConfig(initializer_range=0.05)
    return transformers.UnivNetConfig(
        model_in_channels=8, model_hidden_channels=8, num_mel_bins=16, resblock_stride_sizes=[2, 2],
        resblock_kernel_sizes=[3, 3], resblock_dilation_sizes=[[1, 3], [1, 3]], kernel_predictor_num_blocks=1,
        kernel_predictor_hidden_channels=8, initializer_range=0.2,  # the library sizes its resblocks by model_in_channels
    )


def vocos_config(tiny: bool) -> dict:
    """Vocos's published mel config (``charactr/vocos-mel-24khz``), or a test size with the same structure."""
    if tiny:
        return {"n_mels": 16, "dim": 32, "intermediate_dim": 64, "num_layers": 2, "n_fft": 16, "hop_length": 4}
    return {"n_mels": 100, "dim": 512, "intermediate_dim": 1536, "num_layers": 8, "n_fft": 1024, "hop_length": 256}


# ---------------------------------------------------------------- vocos without its package __init__

def vocos_modules() -> SimpleNamespace:
    """``vocos.models``, ``vocos.heads``, ``vocos.modules`` and ``vocos.spectral_ops``, loaded without ``vocos/__init__``.

    The package's ``__init__`` imports its pretrained loader (torchaudio,
    encodec, huggingface_hub). A bare package module stands in for it, and the
    names the heads import from torchaudio (used only by the IMDCT heads) and
    scipy (used only by MDCT) are stubbed when those are not installed.
    """
    if _VOCOS:
        return _VOCOS[0]
    if "vocos" not in sys.modules:
        spec = importlib.util.find_spec("vocos")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the Vocos vocoder needs the vocos package: pip install --no-deps vocos")
        package = types.ModuleType("vocos")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["vocos"] = package
    stubs = []
    for missing, names in (("torchaudio.functional.functional", ("_hz_to_mel", "_mel_to_hz")), ("scipy", ())):
        try:
            importlib.import_module(missing)
        except ImportError:
            parts = missing.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name not in sys.modules:
                    sys.modules[name] = types.ModuleType(name)
                    stubs.append(name)
                if i > 1:
                    setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], sys.modules[name])
            for attr in names:
                setattr(sys.modules[missing], attr, _unavailable(f"{missing}.{attr}"))
    loaded = {}
    try:
        for name in ("modules", "spectral_ops", "models", "heads"):
            loaded[name] = importlib.import_module(f"vocos.{name}")
    finally:  # the modules keep the names they imported; others (transformers) must not find the stubs
        for name in stubs:
            del sys.modules[name]
    _VOCOS.append(SimpleNamespace(**loaded))
    return _VOCOS[0]


_VOCOS: list[SimpleNamespace] = []


def _unavailable(name: str):
    def call(*_args, **_kwargs):
        raise ImportError(f"{name} is stubbed (not installed); only the IMDCT heads use it")
    return call


# ---------------------------------------------------------------- models

def seeded_univnet(config, seed: int):
    """``UnivNetModel`` with seeded random weights, in eval mode."""
    transformers = fs2.require_transformers()
    torch.manual_seed(seed + 1)
    return transformers.UnivNetModel(config).eval()


class Vocos(nn.Module):
    """The mel Vocos: ``VocosBackbone`` then ``ISTFTHead`` (as ``vocos.Vocos.decode``), frames ``[B, C, T]`` to ``[B, T * hop]``."""

    def __init__(self, config: dict):
        super().__init__()
        v = vocos_modules()
        self.backbone = v.models.VocosBackbone(input_channels=config["n_mels"], dim=config["dim"],
                                               intermediate_dim=config["intermediate_dim"], num_layers=config["num_layers"])
        self.head = v.heads.ISTFTHead(dim=config["dim"], n_fft=config["n_fft"], hop_length=config["hop_length"], padding="same")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(features))


def seeded_vocos(config: dict, seed: int) -> Vocos:
    """:class:`Vocos` with seeded random weights (the library's own init), in eval mode."""
    torch.manual_seed(seed + 1)
    return Vocos(config).eval()


# ---------------------------------------------------------------- networks (the vocoder role)

@contextlib.contextmanager
def masked_univnet(univnet: nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """Within the block, UnivNet reads zeros on padded frames everywhere it reads across frames.

    Every ``Conv1d``/``ConvTranspose1d`` through :func:`masked_convolutions`; the
    location-variable convolution's input is masked too (it reads a kernel's
    half-width past each frame), and the reflect padding of ``conv_pre`` and
    ``conv_post`` reflects at the real end (:func:`reflect_at_length`).
    """
    transformers = fs2.require_transformers()
    block = transformers.models.univnet.modeling_univnet.UnivNetLvcResidualBlock
    original = block.location_variable_convolution

    def masked(self, hidden_states, kernel, bias, dilation=1, hop_size=256):
        rate = hidden_states.shape[-1] // mask.shape[-1]
        steps = mask.to(hidden_states.dtype).unsqueeze(-1).expand(-1, -1, rate).reshape(mask.shape[0], 1, -1)
        return original(self, hidden_states * steps, kernel, bias, dilation=dilation, hop_size=hop_size)

    block.location_variable_convolution = masked
    try:
        with masked_convolutions(univnet, mask), reflect_at_length(univnet, mask):
            yield
    finally:
        block.location_variable_convolution = original


def reflect_indices(length: torch.Tensor, pad: int, steps: int) -> torch.Tensor:
    """Indices ``[steps + 2 * pad]`` of PyTorch's reflect padding of a sequence whose real length is ``length``.

    Equal to ``F.pad(x[..., :length], (pad, pad), "reflect")`` where that is
    defined (``length > pad``), then continued past the real end (steps a
    static backend padded are read as the reflection of real ones); a
    sequence shorter than the pad reflects periodically, one step repeats.
    """
    period = torch.clamp(2 * (length - 1), min=1)
    j = torch.arange(-pad, steps + pad, device=length.device).abs() % period
    return torch.minimum(j, period - j)


@contextlib.contextmanager
def reflect_at_length(module: nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """Within the block, each reflect-padded ``Conv1d`` of ``module`` reflects at the real end its ``mask`` gives.

    PyTorch's reflect padding needs more steps than the pad (so a program
    exported with it refuses short windows) and reflects at the end of the
    tensor, which on a static backend is the bucket's padding, not the real
    end. The padding is done here by a gather instead (hooks registered after
    the masking ones, so they pad the masked input), at ``mask.sum() * rate``.
    """
    convolutions = [m for m in module.modules() if isinstance(m, nn.Conv1d) and m.padding_mode == "reflect"]
    saved = [(conv.padding, conv.padding_mode) for conv in convolutions]

    def pad_by_reflection(conv: nn.Module, args: tuple):
        x = args[0]
        rate = x.shape[-1] // mask.shape[-1]
        length = mask.sum(-1).to(torch.int64)[0] * rate
        index = reflect_indices(length, conv.reflect_pad, x.shape[-1])
        return (x.index_select(-1, index), *args[1:])

    hooks = []
    for conv in convolutions:
        conv.reflect_pad = conv.padding[0]
        conv.padding, conv.padding_mode = (0,), "zeros"
        hooks.append(conv.register_forward_pre_hook(pad_by_reflection))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for conv, (padding, mode) in zip(convolutions, saved):
            conv.padding, conv.padding_mode = padding, mode
            del conv.reflect_pad


class UnivNetNetwork(nn.Module):
    """The ``vocoder`` network: mel ``[1, T, n_mels]``, its mask and the noise ``[1, T, model_in_channels]`` to ``[1, T * hop]``."""

    def __init__(self, univnet: nn.Module):
        super().__init__()
        self.univnet = univnet

    def forward(self, mel: torch.Tensor, mel_mask: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        with masked_univnet(self.univnet, mel_mask):
            return self.univnet(mel, noise_sequence=noise, return_dict=False)[0]


class VocosNetwork(nn.Module):
    """The ``vocoder`` network: mel ``[1, T, n_mels]`` and its mask to ``[1, T * hop]``: the library's Vocos, convolutions masked."""

    def __init__(self, vocos: Vocos):
        super().__init__()
        self.vocos = vocos

    def forward(self, mel: torch.Tensor, mel_mask: torch.Tensor) -> torch.Tensor:
        with masked_convolutions(self.vocos, mel_mask), masked_istft(mel_mask):
            return self.vocos(mel.transpose(1, 2))


@contextlib.contextmanager
def masked_istft(mask: torch.Tensor) -> Iterator[None]:
    """Within the block, Vocos's ``ISTFT`` (``padding="same"``) overlap-adds only the frames ``mask`` ``[B, T]`` marks real.

    The library's forward, step for step (``irfft``, window, ``fold``, divide by
    the folded squared window), with two changes: padded frames add nothing to
    the signal or to the window envelope, so the real samples of a window
    padded to a bucket equal an unpadded run's; and the library's
    ``assert (window_envelope > 1e-11).all()`` (a data-dependent check that
    ``torch.export`` cannot trace) becomes a division that leaves samples with
    no real frame under them (padding only) at zero instead of failing.
    """
    istft = vocos_modules().spectral_ops.ISTFT
    original = istft.forward

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if self.padding != "same":
            return original(self, spec)
        pad = (self.win_length - self.hop_length) // 2
        frames = spec.shape[-1]
        real = mask.to(self.window.dtype).unsqueeze(1)                      # [B, 1, T]
        ifft = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward")
        ifft = ifft * self.window[None, :, None] * real
        output_size = (frames - 1) * self.hop_length + self.win_length
        fold = dict(output_size=(1, output_size), kernel_size=(1, self.win_length), stride=(1, self.hop_length))
        y = nn.functional.fold(ifft, **fold)[:, 0, 0, pad:-pad]
        window_sq = self.window.square()[None, :, None] * real
        envelope = nn.functional.fold(window_sq, **fold)[:, 0, 0, pad:-pad]
        return y / torch.where(envelope > 1e-11, envelope, torch.ones_like(envelope))

    istft.forward = forward
    try:
        yield
    finally:
        istft.forward = original


# ---------------------------------------------------------------- receptive radius

@torch.no_grad()
def receptive_radius(network: nn.Module, inputs: dict[str, torch.Tensor], rate: int, frames: int = 192) -> int:
    """The farthest frame (of any frame-rate input) whose change moves an output sample, measured.

    Every float input along its frame axis (axis 1, ``[1, T, C]``) gets one
    frame in the middle changed (+1), on random inputs, and the output samples
    that moved are mapped back to frames (``rate`` samples each). Outside the
    receptive field the arithmetic is identical, so exactly nothing moves there.
    """
    middle, radius = frames // 2, 0
    base = network(**inputs)
    for name, value in inputs.items():
        if name.endswith("mask"):
            continue
        moved = dict(inputs)
        moved[name] = value.clone()
        moved[name][:, middle] += 1.0
        changed = ((network(**moved) - base).abs() > 0).reshape(-1).nonzero().reshape(-1)
        if len(changed):
            radius = max(radius, int((changed // rate - middle).abs().max()))
    if radius >= middle - 1:
        raise ValueError(f"the vocoder's receptive radius reaches {radius} frames, beyond the probe's {middle}")
    return radius


# ---------------------------------------------------------------- the addon

def vocoder_parts(vocoder: str, tiny: bool, seed: int):
    """``(library model, network module, n_mels, hop, sample_rate, extra inputs spec, example builder)`` of a vocoder."""
    if vocoder == "univnet":
        config = univnet_config(tiny)
        model = seeded_univnet(config, seed)
        hop = math.prod(config.resblock_stride_sizes)
        inputs = {NOISE: {"shape": [1, "T_frames", config.model_in_channels]}}

        def examples(frames: int) -> dict[str, torch.Tensor]:
            return {"mel": torch.randn(1, frames, config.num_mel_bins), "mel_mask": torch.ones(1, frames),
                    NOISE: torch.randn(1, frames, config.model_in_channels)}

        return model, UnivNetNetwork(model), config.num_mel_bins, hop, 24000, inputs, examples
    if vocoder == "vocos":
        config = vocos_config(tiny)
        model = seeded_vocos(config, seed)

        def examples(frames: int) -> dict[str, torch.Tensor]:
            return {"mel": torch.randn(1, frames, config["n_mels"]), "mel_mask": torch.ones(1, frames)}

        return model, VocosNetwork(model), config["n_mels"], config["hop_length"], 24000, {}, examples
    raise ValueError(f"unknown vocoder {vocoder!r}; one of {', '.join(VOCODERS)}")


def addon_spec(config, vocoder: str, hop: int, sample_rate: int, context: int, dims: dict, extra_inputs: dict,
               tiny: bool, vocoder_buckets: list[int] | None = None) -> dict:
    """``fastspeech2_conformer.addon_spec`` with the vocoder network's entry, audio and name changed.

    With ``vocoder_buckets`` the vocoder's frame axis is a dim of its own
    (``T_vocoder``) with those buckets: a static backend pads each streamed
    window (a chunk and twice the context) to a bucket, and the decoder's
    ``T_frames`` buckets (256 and up: a whole sentence) would pad the first,
    small windows several times over.
    """
    spec = fs2.addon_spec(config, SimpleNamespace(upsample_rates=[hop]), context, dims)
    spec["name"] = f"fastspeech2-conformer-{vocoder}"
    n_fft = 1024 if not tiny else spec["audio"]["n_fft"]
    spec["audio"].update({"sample_rate": sample_rate, "hop_length": hop, "n_fft": n_fft, "win_length": n_fft,
                          "fmax": sample_rate // 2})
    entry = spec["networks"]["vocoder"]
    entry["inputs"].update(extra_inputs)
    if vocoder_buckets:  # the vocoder's frames on a dim of their own: its windows are small, the decoder's pieces large
        for tensor in entry["inputs"].values():
            tensor["shape"] = [VOCODER_DIM if d == "T_frames" else d for d in tensor["shape"]]
        spec["dims"][VOCODER_DIM] = {"max": dims["T_frames"]["max"], "buckets": vocoder_buckets}
    if NOISE in extra_inputs:
        entry["noise"] = {NOISE: {"scale": 1.0, "seed": 0}}
    return spec


def seeded_acoustic_model(n_mels: int, tiny: bool, seed: int):
    """``fastspeech2_conformer``'s config and seeded ``FastSpeech2ConformerModel``, with ``n_mels`` mel channels (the vocoder's)."""
    config, hifigan_config = fs2.tiny_configs() if tiny else fs2.full_configs()
    config.num_mel_bins = n_mels
    model, _ = fs2.seeded_models(config, hifigan_config, seed)
    return config, model


def build_addon(folder: Path, vocoder: str, tiny: bool = False, seed: int = 0, dims: dict | None = None,
                vocoder_buckets: list[int] | None = None):
    """Write the addon; return ``(acoustic model, vocoder library model, vocoder network module)``.

    ``vocoder_buckets``: see :func:`addon_spec` (None: the vocoder shares ``T_frames``).
    """
    library, network, n_mels, hop, sample_rate, extra_inputs, examples = vocoder_parts(vocoder, tiny, seed)
    config, model = seeded_acoustic_model(n_mels, tiny, seed)
    if dims is None:
        dims = {"T_text": {"max": 256, "buckets": [64]}, "T_frames": {"max": 1024, "buckets": [512]}} if tiny else fs2.DIMS
    context = receptive_radius(network, examples(192), hop)
    spec = addon_spec(config, vocoder, hop, sample_rate, context, dims, extra_inputs, tiny, vocoder_buckets)
    modules = {"encoder": fs2.EncoderNetwork(model), "decoder": fs2.DecoderNetwork(model), "vocoder": network}
    inputs = {
        "encoder": {"tokens": torch.randint(1, len(fs2.SYMBOLS), (1, 11)), "text_mask": torch.ones(1, 11)},
        "decoder": {"frames": torch.randn(1, 37, config.hidden_size), "frames_mask": torch.ones(1, 37)},
        "vocoder": examples(37),
    }
    ttsstack.write_addon(folder, spec, modules, inputs)
    return model, library, network


@torch.no_grad()
def library_forward(model: nn.Module, vocoder: str, library: nn.Module, tokens: torch.Tensor,
                    noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The libraries' own inference on ``tokens`` ``[1, T]``: log-mel ``[T_frames, n_mels]`` and waveform ``[T_samples]``.

    UnivNet takes ``noise`` ``[1, T_frames, model_in_channels]`` (the runtime's
    draw: :func:`ttsstack.runtime.noise.noise_steps`); Vocos the mel channels first.
    """
    mel = model(tokens, return_dict=True).spectrogram
    if vocoder == "univnet":
        return mel[0], library(mel, noise_sequence=noise, return_dict=False)[0][0]
    return mel[0], library(mel.transpose(1, 2))[0]


def main() -> None:
    """Parse arguments and build the addon."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the addon folder to write (replaced)")
    parser.add_argument("--vocoder", choices=VOCODERS, required=True, help="the vocoder network to carry")
    parser.add_argument("--tiny", action="store_true", help="small test configs instead of the published sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocoder-buckets", default="default",
                        help="buckets of the vocoder's own frame dim T_vocoder, a comma list, or 'none' to share the "
                             "decoder's T_frames (default: 32,64,128 with --tiny, else 64,128,256)")
    args = parser.parse_args()
    if args.vocoder_buckets == "default":
        buckets = VOCODER_BUCKETS["tiny" if args.tiny else "full"]
    elif args.vocoder_buckets == "none":
        buckets = None
    else:
        buckets = [int(b) for b in args.vocoder_buckets.split(",")]
    try:
        build_addon(args.out, args.vocoder, args.tiny, args.seed, vocoder_buckets=buckets)
    except ImportError as exc:
        sys.exit(str(exc))
    print(f"wrote {args.out}: compile with `ttsstack compile {args.out} -o COMPILED --backend cpu,onnx`")


if __name__ == "__main__":
    main()
