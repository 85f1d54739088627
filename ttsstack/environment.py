"""Checks of the installed environment that pip cannot express, run when ttsstack is imported."""

from __future__ import annotations

import warnings
from importlib.metadata import PackageNotFoundError, version

ONNXRUNTIME_WHEELS = ("onnxruntime", "onnxruntime-gpu")
"""The ``[onnx]`` and ``[gpu]`` extras' runtimes: both install the ``onnxruntime`` module, so only one may be present."""


def onnxruntime_conflict() -> str | None:
    """A message when both ONNX Runtime wheels are installed (one overwrites the other's files), else None."""
    found = []
    for name in ONNXRUNTIME_WHEELS:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    if len(found) < 2:
        return None
    return (
        f"both {' and '.join(found)} are installed; they ship the same 'onnxruntime' module and overwrite each "
        "other's files, so which one runs is undefined. Keep one: pip uninstall -y onnxruntime onnxruntime-gpu, "
        "then pip install 'ttsstack[onnx]' (CPU) or 'ttsstack[gpu]' (CUDA)"
    )


def warn_about_environment() -> None:
    """Emit a warning for each problem :func:`onnxruntime_conflict` (and any later check) finds."""
    message = onnxruntime_conflict()
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
