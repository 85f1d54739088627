"""Build the tacotron2-demo addon folder from ``model.py``, ``weights.safetensors`` and ``symbols.json``.

Usage: python addons/tacotron2-demo/build_addon.py [--weights FILE] [--symbols FILE] [--out DIR]

The weights and the phoneme table come from ``training/train.py`` (espeak-ng
phonemes: the addon has the ``phonemes`` frontend). The addon is what ships:
``addon.yaml`` plus one ``torch.export`` program per network; no code from this
folder is needed to run it. The encoder's BiLSTM is exported as a ttsstack
operator, so its ``T_text`` stays dynamic.
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

from model import (  # noqa: E402
    ATTENTION,
    ATTENTION_RNN,
    DECODER_RNN,
    MEMORY,
    REDUCTION,
    Tacotron2Demo,
)

import ttsstack  # noqa: E402

N_MELS = 80
MAX_DECODER_STEPS = 1500

# decoder_step state: input name -> (output name, shape); the frame fed back is a state like the others
STATES = {
    "previous_frame": ("frame", [1, REDUCTION, N_MELS]),
    "attention_hidden": ("next_attention_hidden", [1, ATTENTION_RNN]),
    "attention_cell": ("next_attention_cell", [1, ATTENTION_RNN]),
    "decoder_hidden": ("next_decoder_hidden", [1, DECODER_RNN]),
    "decoder_cell": ("next_decoder_cell", [1, DECODER_RNN]),
    "attention_weights": ("next_attention_weights", [1, "T_text"]),
    "attention_weights_cum": ("next_attention_weights_cum", [1, "T_text"]),
    "attention_context": ("next_attention_context", [1, MEMORY]),
}


def _tensor(shape: list, dtype: str = "float32") -> dict:
    return {"shape": shape, "dtype": dtype}


def phoneme_frontend(table: Path) -> dict:
    """The ``frontend`` entry for the ``symbols.json`` phoneme table written by training."""
    data = json.loads(table.read_text(encoding="utf-8"))
    return {"type": "phonemes", "symbols": data["symbols"], "pad": data["pad"],
            "voice": data["espeak"]["voice"], "espeak_version": data["espeak"]["version"]}


def addon_spec(frontend: dict) -> dict:
    """The ``addon.yaml`` content of the demo."""
    step_inputs = {name: _tensor(shape) for name, (_, shape) in STATES.items()}
    step_inputs.update({
        "memory": _tensor([1, "T_text", MEMORY]),
        "processed_memory": _tensor([1, "T_text", ATTENTION]),
        "memory_mask": _tensor([1, "T_text"], "bool"),
    })
    step_outputs = {"frame": _tensor([1, REDUCTION, N_MELS]), "stop": _tensor([1, 1])}
    step_outputs.update({out: _tensor(shape) for name, (out, shape) in STATES.items() if out != "frame"})
    return {
        "format": 2,  # batch axes
        "name": "tacotron2-demo",
        "audio": {"sample_rate": 22050, "hop_length": 256, "win_length": 1024, "n_fft": 1024,
                  "n_mels": N_MELS, "fmin": 0, "fmax": 8000},
        "frontend": frontend,
        "networks": {
            "encoder": {
                "role": "encoder", "file": "networks/encoder.pt2", "context": "unbounded",
                "lengths": "text_lengths", "mask": "text_mask", "batch": True,
                "inputs": {"tokens": _tensor([1, "T_text"], "int64"), "text_lengths": _tensor([1], "int64"),
                           "text_mask": _tensor([1, "T_text"], "bool")},
                "outputs": {"memory": _tensor([1, "T_text", MEMORY]),
                            "processed_memory": _tensor([1, "T_text", ATTENTION])},
            },
            "decoder_step": {
                "role": "decoder_step", "file": "networks/decoder_step.pt2", "context": "unbounded",
                "mask": "memory_mask", "batch": True,
                "inputs": step_inputs,
                "outputs": step_outputs,
                "states": {name: {"output": out, "init": 0.0} for name, (out, _) in STATES.items()},
            },
            "postnet": {
                "role": "postnet", "file": "networks/postnet.pt2", "context": 10, "mask": "frames_mask", "batch": True,
                "inputs": {"frames": _tensor([1, "T_frames", N_MELS]), "frames_mask": _tensor([1, "T_frames"])},
                "outputs": {"mel": _tensor([1, "T_frames", N_MELS])},
            },
        },
        "dims": {
            "T_text": {"max": 256, "buckets": [32, 64, 128, 256]},
            "T_frames": {"max": 16384, "buckets": [64, 128, 256]},
        },
        "stack": [{
            "type": "StreamablePipeline",
            "sequence_block": {"type": "Encoders"},
            "streamable_block": {"type": "StreamableStack", "stack": [
                {"type": "AutoregressiveDecoder", "threshold": 0.5, "max_decoder_steps": MAX_DECODER_STEPS},
                {"type": "Postnet"},
            ]},
        }],
    }


def examples(n_symbols: int, text_length: int = 17, frames: int = 45) -> dict[str, dict[str, torch.Tensor]]:
    """One example input per network, for export."""
    step = {name: torch.zeros([text_length if d == "T_text" else d for d in shape]) for name, (_, shape) in STATES.items()}
    step.update({
        "memory": torch.randn(1, text_length, MEMORY),
        "processed_memory": torch.randn(1, text_length, ATTENTION),
        "memory_mask": torch.ones(1, text_length, dtype=torch.bool),
    })
    return {
        "encoder": {"tokens": torch.randint(1, n_symbols, (1, text_length)),
                    "text_lengths": torch.tensor([text_length]),
                    "text_mask": torch.ones(1, text_length, dtype=torch.bool)},
        "decoder_step": step,
        "postnet": {"frames": torch.randn(1, frames, N_MELS), "frames_mask": torch.ones(1, frames)},
    }


def main() -> None:
    """Parse arguments, load the trained weights, export the networks, write the addon."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=HERE / "weights.safetensors", help="trained state dict")
    parser.add_argument("--symbols", type=Path, default=HERE / "symbols.json", help="phoneme table of the weights")
    parser.add_argument("--out", type=Path, default=HERE / "addon", help="addon folder to write")
    args = parser.parse_args()

    torch.manual_seed(0)  # the example inputs of the export
    frontend = phoneme_frontend(args.symbols)
    n_symbols = len(frontend["symbols"])
    model = Tacotron2Demo(n_symbols=n_symbols, n_mels=N_MELS).eval()
    model.load_state_dict(load_file(str(args.weights)))
    modules = {"encoder": model.encoder, "decoder_step": model.decoder_step, "postnet": model.postnet}
    ttsstack.write_addon(args.out, addon_spec(frontend), modules, examples(n_symbols))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
