"""Complex arithmetic of an iSTFT head (Vocos's ``mag * (cos p + 1j * sin p)``, then ``irfft``) exports to ONNX."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttsstack.addon import NetworkSpec
from ttsstack.tolerances import ONNX_CPU

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from ttsstack.backends.onnx import export_onnx  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


class ComplexHead(nn.Module):
    """Magnitude and phase to a complex spectrum by a product with ``1j`` (``aten.mul.Scalar``), then to frames."""

    def forward(self, mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        spectrum = mag * (torch.cos(phase) + 1j * torch.sin(phase))
        return torch.fft.irfft(spectrum, n=16, dim=2)


def test_complex_scalar_product_exports_and_runs_like_eager(tmp_path):
    """torchlib has no complex ``mul.Scalar``; ttsstack's translation makes the head export and match eager."""
    spec = NetworkSpec.model_validate({
        "role": "vocoder", "file": "head.pt2",
        "inputs": {"mag": {"shape": [1, "T", 9]}, "phase": {"shape": [1, "T", 9]}},
        "outputs": {"frames": {"shape": [1, "T", 16]}},
    })
    steps = torch.export.Dim("T", min=2, max=512)
    args = (torch.rand(1, 12, 9), torch.rand(1, 12, 9) * 6)
    program = torch.export.export(ComplexHead(), args, dynamic_shapes=({1: steps}, {1: steps}))
    export_onnx(program, args, spec, tmp_path / "head.onnx")
    session = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
    for length in (3, 40):
        mag, phase = torch.rand(1, length, 9, generator=torch.Generator().manual_seed(length)), torch.randn(1, length, 9)
        want = ComplexHead()(mag, phase)
        got = torch.from_numpy(session.run(None, {"mag": mag.numpy(), "phase": phase.numpy()})[0])
        error = (got - want).abs().max().item()
        assert ONNX_CPU.passes(error, want.abs().max().item()), (length, error)
