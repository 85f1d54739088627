"""What the training scripts share: paths, audio settings, and the modules they load.

The scripts need only self-contained parts of the project: ``model.py`` and
``vocoder.py`` (the network code the addon exports), ``ttsstack/runtime/phonemes.py`` (espeak-ng)
and the ``ttsstack/audio`` package (log-mel analysis, Griffin-Lim), which
imports nothing else of ttsstack. They are loaded by path, so training does not
import the rest of the package (runtime, backends, compiler).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
