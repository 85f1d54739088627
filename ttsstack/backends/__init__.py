"""Compile/run targets. Importing this package registers the built-in backends."""

from . import cpu, eager, neuron, onnx, onnx_static  # noqa: F401  (registration)
from .base import Artifact, Backend, BackendError, NetworkArtifacts

__all__ = ["Artifact", "Backend", "BackendError", "NetworkArtifacts"]
