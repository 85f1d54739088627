"""The reference: eager PyTorch on the exported programs themselves (no artifact)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..pt2 import read_program
from ..runtime.registry import BACKENDS
from .base import Backend, ModuleRunner, NetworkArtifacts


@BACKENDS.register("eager")
class EagerBackend(Backend):
    """Runs ``ExportedProgram.module()``: what every other backend is compared with."""

    name = "eager"

    @property
    def placement(self) -> str:
        return "PyTorch eager on the CPU"

    def toolchain(self) -> dict[str, str]:
        return {"torch": torch.__version__}

    def buckets(self, spec, dims, batch_sizes=(1,)):
        return []  # nothing to compile: the .pt2 is the artifact

    def compile(self, program, spec, dims, bucket, out: Path, route=None) -> None:
        raise NotImplementedError("the eager backend runs the .pt2 programs directly")

    def load(self, network: NetworkArtifacts) -> ModuleRunner:
        return ModuleRunner(network.spec, read_program(network.program).module())
