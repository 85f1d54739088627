"""The ``neuron`` backend: ``torch_neuronx.trace`` per bucket for AWS Inferentia2/Trainium, saved TorchScript.

Compile traces each network once per bucket with
``torch_neuronx.trace(module, example_inputs, compiler_workdir=...,
compiler_args=[...])``, which runs the Neuron compiler (neuronx-cc) on the
bucket's fixed shapes, and saves the result with ``torch.jit.save``. The
compiler arguments are explicit: ``--auto-cast none`` for fp32 (neuronx-cc
would otherwise cast matrix products to bf16), ``--optlevel 2``; they are
recorded in the manifest and the compile cache key. ttsstack's recurrent operators are lowered
to their ATen kernels first (:func:`~ttsstack.backends.lowering.lower_to_aten`),
so the trace holds only operators the Neuron compiler knows. A compiler
failure keeps its work directory (``<artifact>.workdir``, with neuronx-cc's
logs) and names it.

Loading imports ``torch_neuronx`` (which registers the Neuron operators) and
``torch.jit.load``s each artifact; the Neuron runtime places a model on the
NeuronCores the process may see at its first call. Placement follows the
Neuron runtime's own settings, read when the first model loads:

- ``NEURON_RT_VISIBLE_CORES=0-1``: the NeuronCores this process may use (one
  process per core range is the usual way to serve several voices);
- ``NEURON_RT_NUM_CORES=N``: ask for N free cores instead of naming them;
- ``NEURON_RT_LOG_LEVEL=INFO``: runtime logs, including where models land.

``torch-neuronx`` exists only on Neuron hosts, installed from the Neuron
package repository (see the README, "Backends"); elsewhere this backend is
unavailable, and the test suite runs it against an emulator of ``trace``.
"""

from __future__ import annotations

import importlib
import io
import os
import shutil

import torch

from ..addon import NetworkSpec
from ..runtime.registry import BACKENDS
from .base import Artifact, BackendError, ModuleRunner, bucket_examples, package_version
from .lowering import lower_to_aten
from .static import StaticBackend

INSTALL_HINT = (
    "install it on an Inferentia2/Trainium host from the Neuron repository: "
    "pip install torch-neuronx neuronx-cc --extra-index-url=https://pip.repos.neuron.amazonaws.com"
)


# neuronx-cc casts matrix products to bf16 by default (--auto-cast matmult): fp32 must say --auto-cast none.
COMPILER_PRECISION = {
    "fp32": ["--auto-cast", "none"],
    "bf16": ["--auto-cast", "all", "--auto-cast-type", "bf16"],
    "fp16": ["--auto-cast", "all", "--auto-cast-type", "fp16"],
}


def _torch_neuronx():
    return importlib.import_module("torch_neuronx")


@BACKENDS.register("neuron")
class NeuronBackend(StaticBackend):
    """One ``torch_neuronx.trace`` artifact per network per bucket, loaded with ``torch.jit.load``."""

    name = "neuron"
    suffix = ".neuron.pt"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            _torch_neuronx()
        except ImportError:
            return f"torch-neuronx is not installed; {INSTALL_HINT}"
        return None

    def toolchain(self) -> dict[str, str]:
        versions = {
            "torch": torch.__version__.split("+")[0],
            "torch-neuronx": getattr(_torch_neuronx(), "__version__", None) or package_version("torch-neuronx") or "unknown",
        }
        compiler = package_version("neuronx-cc")
        if compiler:
            versions["neuronx-cc"] = compiler
        return versions

    @property
    def device(self) -> str:
        return "neuron"

    @property
    def placement(self) -> str:
        cores = os.environ.get("NEURON_RT_VISIBLE_CORES") or os.environ.get("NEURON_RT_NUM_CORES")
        return f"NeuronCores {cores}" if cores else "NeuronCores (all visible to the process)"

    precisions = tuple(COMPILER_PRECISION)

    def __init__(self, precision: str = "fp32", optlevel: int = 2):
        super().__init__(precision)
        if optlevel not in (1, 2, 3):
            raise BackendError(f"neuron: optlevel must be 1, 2 or 3, got {optlevel}")
        self.compiler_args = [*COMPILER_PRECISION[precision], "--optlevel", str(optlevel)]

    def settings(self) -> dict[str, str]:
        return {**super().settings(), "compiler_args": " ".join(self.compiler_args)}

    def compile(self, program, spec, dims, bucket, out, route=None) -> None:
        workdir = out.parent / f"{out.name}.workdir"
        args = tuple(bucket_examples(spec, bucket).values())
        try:
            traced = _torch_neuronx().trace(
                lower_to_aten(program.module()), args, compiler_workdir=str(workdir), compiler_args=list(self.compiler_args)
            )
        except Exception as exc:
            raise BackendError(f"torch_neuronx.trace failed (compiler logs kept in {workdir}): {exc}") from exc
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        out.write_bytes(buffer.getvalue())
        shutil.rmtree(workdir, ignore_errors=True)
        return None

    def load_artifact(self, network: str, spec: NetworkSpec, artifact: Artifact) -> ModuleRunner:
        _torch_neuronx()  # registers the Neuron operators the saved TorchScript calls
        return ModuleRunner(spec, torch.jit.load(str(artifact.path)))
