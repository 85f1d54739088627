"""ttsstack: compile TTS acoustic models ahead of time for any accelerator and stream their speech.

>>> voice = ttsstack.load("compiled/fastpitch-demo", backend="cpu")
>>> for mel_chunk in voice.stream("Hello there."):
...     ...
"""

__version__ = "0.1.0"
"""The one place the version is written; ``pyproject.toml`` reads it from here."""

from .environment import warn_about_environment

warn_about_environment()

from . import backends  # noqa: E402,F401  (registers the built-in backends)
from .addon import AddonError, load_addon, write_addon  # noqa: E402
from .loader import load  # noqa: E402
from .runtime import RuntimeOptions, Voice  # noqa: E402

__all__ = ["AddonError", "RuntimeOptions", "Voice", "load", "load_addon", "write_addon", "__version__"]
