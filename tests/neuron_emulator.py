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


# neuronx-cc options the emulator knows, with their allowed values (None: a flag without a value).
COMPILER_OPTIONS = {
    "--auto-cast": {"none", "matmult", "all"},
    "--auto-cast-type": {"bf16", "fp16", "tf32"},
    "--optlevel": {"1", "2", "3"},
    "-O1": None,
    "-O2": None,
    "-O3": None,
    "--model-type": {"generic", "transformer", "unet-inference"},
    "--target": {"inf2", "trn1", "trn2"},
}
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def parse_compiler_args(compiler_args) -> dict[str, str | None]:
    """neuronx-cc's options from ``compiler_args`` (a string or a list); unknown ones fail as neuronx-cc does."""
    words = compiler_args.split() if isinstance(compiler_args, str) else list(compiler_args or [])
    options: dict[str, str | None] = {}
    while words:
        flag = words.pop(0)
        if flag not in COMPILER_OPTIONS:
            raise RuntimeError(f"neuronx-cc: error: unrecognized arguments: {flag}")
        allowed = COMPILER_OPTIONS[flag]
        if allowed is None:
            options[flag] = None
            continue
        value = words.pop(0) if words else None
        if value not in allowed:
            raise RuntimeError(f"neuronx-cc: error: argument {flag}: invalid choice: {value!r} (choose from {sorted(allowed)})")
        options[flag] = value
    return options


def trace(
    module: torch.nn.Module, example_inputs, compiler_workdir: str | None = None, compiler_args=None, **_options
) -> torch.jit.ScriptModule:
    """Trace ``module`` for the shapes of ``example_inputs``; the result refuses any other shape.

    ``compiler_args`` are checked like neuronx-cc's, and its numerics follow
    them: as on Neuron, matrix products are cast to bf16 unless
    ``--auto-cast none`` says otherwise (neuronx-cc's default is
    ``--auto-cast matmult --auto-cast-type bf16``).
    """
    options = parse_compiler_args(compiler_args)
    cast = options.get("--auto-cast", "matmult")
    dtype = AUTOCAST_DTYPES.get(options.get("--auto-cast-type") or "bf16")
    if compiler_workdir is not None:
        Path(compiler_workdir).mkdir(parents=True, exist_ok=True)  # neuronx-cc writes its logs there
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    with warnings.catch_warnings(), torch.autocast("cpu", dtype=dtype, enabled=cast != "none" and dtype is not None):
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, inputs, check_trace=False, strict=False)
    foreign = sorted({node.kind() for node in traced.inlined_graph.nodes() if node.kind().startswith("ttsstack::")})
    if foreign:
        raise RuntimeError(f"neuronx-cc: unsupported operator(s) {', '.join(foreign)}")
    return ShapeGuard(traced, [list(x.shape) for x in inputs])
