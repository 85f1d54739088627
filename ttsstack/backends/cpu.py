"""The ``cpu`` backend: TorchScript traced from the exported program, dynamic shapes."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..runtime.registry import BACKENDS
from .base import Backend, ModuleRunner, NetworkArtifacts, example_inputs
from .lowering import lower_to_aten

TRACE_LENGTH = 23  # an odd size unlikely to coincide with a constant in the graph


@BACKENDS.register("cpu")
class CpuBackend(Backend):
    """``torch.jit.trace`` of ``ExportedProgram.module()``, frozen, loaded with ``torch.jit.load``.

    ttsstack's recurrent operators are lowered to their ATen kernels first, so
    the artifact holds ``aten::lstm``/``aten::gru`` with a dynamic time axis.
    Tracing records ATen ops for one example; the compiler validates the
    artifact at other lengths right after, so a graph that baked a length in
    is caught at compile time, not in production.
    """

    name = "cpu"
    suffix = ".ts"

    @property
    def placement(self) -> str:
        return "TorchScript on the CPU"

    def toolchain(self) -> dict[str, str]:
        return {"torch": torch.__version__.split("+")[0]}

    def compile(self, program, spec, dims, bucket, out: Path) -> None:
        sizes = {d: min(TRACE_LENGTH, dims[d].max) for t in spec.inputs.values() for _, d in t.named_dims}
        args = tuple(example_inputs(spec, sizes).values())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(lower_to_aten(program.module()), args, check_trace=False, strict=False)
        traced = torch.jit.freeze(traced.eval())
        torch.jit.save(traced, str(out))

    def load(self, network: NetworkArtifacts) -> ModuleRunner:
        (artifact,) = network.artifacts
        return ModuleRunner(network.spec, torch.jit.load(str(artifact.path), map_location="cpu"))

