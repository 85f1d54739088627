"""Lowering ttsstack's own operators (``ttsstack::lstm``/``ttsstack::gru``) for tracing backends.

An exported program may hold these operators (see :mod:`ttsstack.recurrent`).
Before ``torch.jit.trace`` (the ``cpu`` backend; a Neuron trace likewise),
:func:`lower_to_aten` replaces each call by its ATen implementation, so the
trace records ``aten::lstm``/``aten::gru`` with the time axis dynamic and the
artifact needs no Python kernel. ONNX has its own lowering in
:mod:`ttsstack.backends.onnx_translations`.
"""

from __future__ import annotations

import torch

from ..recurrent import ATEN_KERNELS


def lower_to_aten(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Make every ttsstack operator call in ``module`` (``ExportedProgram.module()``) call its ATen kernel.

    Rewrites the graph in place and returns the module.
    """
    changed = False
    for node in module.graph.nodes:
        if node.op == "call_function" and node.target in ATEN_KERNELS:
            node.target = ATEN_KERNELS[node.target]
            changed = True
    if changed:
        module.recompile()
    return module
