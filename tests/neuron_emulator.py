"""A stand-in for ``torch_neuronx`` where Neuron is missing: the same ``trace`` contract, on the CPU.

``trace(module, example_inputs, compiler_workdir=...)`` returns TorchScript
that runs ``module`` for exactly the traced input shapes and raises an error
(``torch.jit.Error``) for any other, as a Neuron-compiled model does; it saves with
``torch.jit.save`` and loads with ``torch.jit.load``. Like neuronx-cc, it
refuses a module that calls an operator outside ATen (ttsstack's recurrent
operators must be lowered before tracing). The tests install this
module as ``torch_neuronx`` (see ``conftest.py``), so the neuron backend's
compile, load, bucket dispatch and static blocks are exercised on any host.
Nothing is compiled for a NeuronCore: numerics are the CPU's.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

__version__ = "0.0+emulator"


class ShapeGuard(torch.jit.ScriptModule):
    """TorchScript that checks every input's shape against the traced one, then runs the traced graph."""

    def __init__(self, traced: torch.jit.ScriptModule, shapes: list[list[int]]):
        super().__init__()
        self.traced = traced
        args = ", ".join(f"x{i}" for i in range(len(shapes)))
        checks = "".join(
            f"    if x{i}.shape != {shape}:\n"
            f"        raise RuntimeError('input {i} has shape ' + str(x{i}.shape) + ', but the model was traced for {shape}')\n"
            for i, shape in enumerate(shapes)
        )
        self.define(f"def forward(self, {args}):\n{checks}    return self.traced({args})\n")


def trace(module: torch.nn.Module, example_inputs, compiler_workdir: str | None = None, **_options) -> torch.jit.ScriptModule:
    """Trace ``module`` for the shapes of ``example_inputs``; the result refuses any other shape."""
    if compiler_workdir is not None:
        Path(compiler_workdir).mkdir(parents=True, exist_ok=True)  # neuronx-cc writes its logs there
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, inputs, check_trace=False, strict=False)
    foreign = sorted({node.kind() for node in traced.inlined_graph.nodes() if node.kind().startswith("ttsstack::")})
    if foreign:
        raise RuntimeError(f"neuronx-cc: unsupported operator(s) {', '.join(foreign)}")
    return ShapeGuard(traced, [list(x.shape) for x in inputs])
