"""ttsstack: compile TTS acoustic models ahead of time for any accelerator and stream their speech.

>>> voice = ttsstack.load("compiled/fastpitch-demo", backend="cpu")
>>> for mel_chunk in voice.stream("Hello there."):
...     ...
"""

from . import backends  # noqa: F401  (registers the built-in backends)
from .addon import AddonError, load_addon, write_addon
from .loader import load
from .runtime import RuntimeOptions, Voice

__version__ = "0.1.0"
__all__ = ["AddonError", "RuntimeOptions", "Voice", "load", "load_addon", "write_addon", "__version__"]
