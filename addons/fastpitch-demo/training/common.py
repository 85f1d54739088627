"""What the training scripts share: paths, audio settings, and the modules they load.

The scripts need only self-contained parts of the project: ``model.py`` and
``vocoder.py`` (the network code the addon exports), ``ttsstack/runtime/phonemes.py`` (espeak-ng)
and the ``ttsstack/audio`` package (log-mel analysis, Griffin-Lim), which
imports nothing else of ttsstack. They are loaded by path, so training does not
import the rest of the package (runtime, backends, compiler). ``Split`` reads a
make_dataset.py split; the tacotron2-demo's training reads the same data set
through it.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

ADDON = Path(__file__).resolve().parents[1]
REPO = ADDON.parents[1]

AUDIO = {"sample_rate": 22050, "n_fft": 1024, "hop_length": 256, "win_length": 1024,
         "n_mels": 80, "fmin": 0, "fmax": 8000}
"""The addon's ``audio`` section: what the mels are computed with."""


def load_module(path: Path, name: str, package: bool = False) -> ModuleType:
    """Import one file (or a package's ``__init__.py``) as module ``name`` (cached in sys.modules)."""
    if name in sys.modules:
        return sys.modules[name]
    locations = [str(path.parent)] if package else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def model_module() -> ModuleType:
    """``addons/fastpitch-demo/model.py``."""
    return load_module(ADDON / "model.py", "fastpitch_demo_model")


def vocoder_module() -> ModuleType:
    """``addons/fastpitch-demo/vocoder.py``: the neural vocoder the addon exports."""
    return load_module(ADDON / "vocoder.py", "fastpitch_demo_vocoder")


def phonemes_module() -> ModuleType:
    """``ttsstack/runtime/phonemes.py``: espeak-ng rendering and phonemization."""
    return load_module(REPO / "ttsstack" / "runtime" / "phonemes.py", "fastpitch_demo_phonemes")


def audio_module() -> ModuleType:
    """The ``ttsstack/audio`` package: ``MelSettings``, ``log_mel_spectrogram``, ``GriffinLim``, ``write_wav``."""
    return load_module(REPO / "ttsstack" / "audio" / "__init__.py", "fastpitch_demo_audio", package=True)


class Split:
    """One npz of make_dataset.py as per-utterance tensors."""

    def __init__(self, path: Path):
        data = np.load(path)
        tok_edges = np.concatenate([[0], np.cumsum(data["token_lengths"])])
        mel_edges = np.concatenate([[0], np.cumsum(data["mel_lengths"])])
        tokens, durations, mels = (torch.from_numpy(data[k]) for k in ("tokens", "durations", "mels"))
        self.tokens = [tokens[a:b] for a, b in zip(tok_edges[:-1], tok_edges[1:])]
        self.durations = [durations[a:b] for a, b in zip(tok_edges[:-1], tok_edges[1:])]
        self.mels = [mels[a:b] for a, b in zip(mel_edges[:-1], mel_edges[1:])]

    def __len__(self) -> int:
        return len(self.tokens)

    def batches(self, max_frames: int, rng: random.Random | None) -> list[list[int]]:
        """Index lists of similar-length utterances, each padded batch at most ``max_frames`` frames."""
        jitter = (lambda: rng.random()) if rng else (lambda: 0.0)
        order = sorted(range(len(self)), key=lambda i: len(self.mels[i]) + 8 * jitter())
        out, current = [], []
        for i in order:
            if current and (len(current) + 1) * max(len(self.mels[j]) for j in current + [i]) > max_frames:
                out.append(current)
                current = []
            current.append(i)
        out.append(current)
        if rng:
            rng.shuffle(out)
        return out

    def collate(self, ids: list[int]) -> dict[str, torch.Tensor]:
        n_tok = max(len(self.tokens[i]) for i in ids)
        n_mel = max(len(self.mels[i]) for i in ids)
        batch = {
            "tokens": torch.zeros(len(ids), n_tok, dtype=torch.int64),  # pad id 0
            "durations": torch.zeros(len(ids), n_tok, dtype=torch.int64),
            "token_mask": torch.zeros(len(ids), n_tok),
            "mel": torch.zeros(len(ids), n_mel, self.mels[ids[0]].shape[1]),
            "mel_mask": torch.zeros(len(ids), n_mel),
        }
        for row, i in enumerate(ids):
            t, m = len(self.tokens[i]), len(self.mels[i])
            batch["tokens"][row, :t] = self.tokens[i]
            batch["durations"][row, :t] = self.durations[i]
            batch["token_mask"][row, :t] = 1
            batch["mel"][row, :m] = self.mels[i]
            batch["mel_mask"][row, :m] = 1
        return batch
