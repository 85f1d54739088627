"""Build the fastpitch-demo addon folder from ``model.py`` and the trained weights.

Usage: python addons/fastpitch-demo/build_addon.py [--out DIR]
       python addons/fastpitch-demo/build_addon.py --random [--seed N] --out DIR

By default the weights trained on espeak-ng speech (``weights.safetensors``,
made by ``training/train.py``) and their phoneme table (``symbols.json``) give
an addon with the ``phonemes`` frontend, and the neural vocoder trained on
espeak-ng's audio (``vocoder.safetensors``, made by ``training/train_vocoder.py``)
is its ``vocoder`` network and default vocoder. ``--random`` builds seeded random
weights with the ``characters`` frontend instead (no espeak-ng needed). The
addon is what ships: ``addon.yaml`` plus one ``torch.export`` program per
network; no code from this folder is needed to run it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import FastPitchDemo  # noqa: E402
from vocoder import VocosDemo, load_trained  # noqa: E402

import ttsstack  # noqa: E402

SYMBOLS = "_ abcdefghijklmnopqrstuvwxyz.,;:!?'-"
N_MELS = 80
HOP = 256
VOCODER_MAX_FRAMES = 4096
"""Longest vocoder window (47 s): its ``T_samples`` reach the format's largest dim; streams are windowed."""


def vocoder_entry(context: int) -> dict:
    """The ``vocoder`` network's ``addon.yaml`` entry: mel and mask in, ``hop`` samples per frame out."""
    return {
        "role": "vocoder", "file": "networks/vocoder.pt2", "context": context, "mask": "mel_mask", "batch": True,
        "inputs": {"mel": {"shape": [1, "T_mel", N_MELS], "dtype": "float32"},
                   "mel_mask": {"shape": [1, "T_mel"], "dtype": "float32"}},
        "outputs": {"audio": {"shape": [1, "T_samples"], "dtype": "float32"}},
    }


def addon_spec(channels: int, frontend: dict | None = None, vocoder_context: int | None = None) -> dict:
    """The ``addon.yaml`` content of the demo; with ``vocoder_context``, its vocoder network as default vocoder."""
    spec = {
        "format": 2,  # batch axes (and the vocoder network when there is one)
        "name": "fastpitch-demo",
        "audio": {"sample_rate": 22050, "hop_length": HOP, "win_length": 1024, "n_fft": 1024,
                  "n_mels": N_MELS, "fmin": 0, "fmax": 8000},
        "frontend": frontend or {"type": "characters", "symbols": SYMBOLS, "pad": "_"},
        "networks": {
            "text_encoder": {
                "role": "encoder", "file": "networks/text_encoder.pt2", "context": 6, "mask": "text_mask",
                "batch": True,
                "inputs": {"tokens": {"shape": [1, "T_text"], "dtype": "int64"},
                           "text_mask": {"shape": [1, "T_text"], "dtype": "float32"}},
                "outputs": {"encoded": {"shape": [1, "T_text", channels], "dtype": "float32"}},
            },
            "duration_encoder": {
                "role": "encoder", "file": "networks/duration_encoder.pt2", "context": 2, "mask": "text_mask",
                "batch": True,
                "inputs": {"encoded": {"shape": [1, "T_text", channels], "dtype": "float32"},
                           "text_mask": {"shape": [1, "T_text"], "dtype": "float32"}},
                "outputs": {"durations": {"shape": [1, "T_text"], "dtype": "float32"}},
            },
            "decoder": {
                "role": "decoder", "file": "networks/decoder.pt2", "context": 8, "mask": "frames_mask",
                "batch": True,
                "inputs": {"frames": {"shape": [1, "T_frames", channels], "dtype": "float32"},
                           "frames_mask": {"shape": [1, "T_frames"], "dtype": "float32"}},
                "outputs": {"mel": {"shape": [1, "T_frames", N_MELS], "dtype": "float32"}},
            },
        },
        "dims": {
            "T_text": {"max": 2048, "buckets": [32, 64, 128, 256]},
            "T_frames": {"max": 16384, "buckets": [64, 128, 256]},
        },
        "stack": [{
            "type": "StreamablePipeline",
            "sequence_block": {"type": "Encoders"},
            "streamable_block": {"type": "StreamableStack", "stack": [{"type": "Upsampler"}, {"type": "Decoder"}]},
        }],
    }
    if vocoder_context is not None:
        spec["networks"]["vocoder"] = vocoder_entry(vocoder_context)
        spec["dims"]["T_mel"] = {"max": VOCODER_MAX_FRAMES, "buckets": [64, 128, 256]}
        spec["dims"]["T_samples"] = {"max": VOCODER_MAX_FRAMES * HOP}
        spec["vocoder"] = {"type": "Network", "network": "vocoder"}
    return spec


def phoneme_frontend(table: Path) -> dict:
    """The ``frontend`` entry for a ``symbols.json`` phoneme table written by training."""
    data = json.loads(table.read_text())
    return {"type": "phonemes", "symbols": data["symbols"], "pad": data["pad"],
            "voice": data["espeak"]["voice"], "espeak_version": data["espeak"]["version"]}


def main() -> None:
    """Parse arguments, load trained (or make random) weights, export the networks, write the addon."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=HERE / "weights.safetensors")
    parser.add_argument("--symbols", type=Path, default=HERE / "symbols.json")
    parser.add_argument("--vocoder", type=Path, default=HERE / "vocoder.safetensors",
                        help="trained vocoder weights (training/train_vocoder.py)")
    parser.add_argument("--griffin-lim", action="store_true", help="no vocoder network: Griffin-Lim, as before")
    parser.add_argument("--out", type=Path, default=HERE / "addon")
    parser.add_argument("--random", action="store_true", help="seeded random weights, characters frontend")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    if args.random:
        frontend = {"type": "characters", "symbols": SYMBOLS, "pad": "_"}
        n_symbols = len(SYMBOLS)
        model = FastPitchDemo(n_symbols=n_symbols, n_mels=N_MELS).eval()
    else:
        frontend = phoneme_frontend(args.symbols)
        n_symbols = len(frontend["symbols"])
        model = FastPitchDemo(n_symbols=n_symbols, n_mels=N_MELS).eval()
        model.load_state_dict(load_file(str(args.weights)))
    channels = model.decoder.proj.in_features
    examples = {
        "text_encoder": {"tokens": torch.randint(0, n_symbols, (1, 17)), "text_mask": torch.ones(1, 17)},
        "duration_encoder": {"encoded": torch.randn(1, 17, channels), "text_mask": torch.ones(1, 17)},
        "decoder": {"frames": torch.randn(1, 45, channels), "frames_mask": torch.ones(1, 45)},
    }
    modules = {"text_encoder": model.text_encoder, "duration_encoder": model.duration_encoder, "decoder": model.decoder}
    vocoder_context = None
    if not args.griffin_lim:
        vocoder = VocosDemo(n_mels=N_MELS, hop=HOP).eval() if args.random else load_trained(args.vocoder)
        vocoder_context = vocoder.context()
        modules["vocoder"] = vocoder
        examples["vocoder"] = {"mel": torch.randn(1, 45, N_MELS), "mel_mask": torch.ones(1, 45)}
    ttsstack.write_addon(args.out, addon_spec(channels, frontend, vocoder_context), modules, examples)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
