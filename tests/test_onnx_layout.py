"""1-D convolutions of an exported graph run as height-1 2-D ones in ONNX Runtime, with the same outputs."""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ttsstack.tolerances import ONNX_CPU

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from ttsstack.backends.onnx_layout import conv1d_as_conv2d  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


class ConvChain(nn.Module):
    """What a vocoder's graph holds: masked convolutions, an upsampling transpose, residuals, a scalar
    product, and a tensor that leaves the chain both for a non-elementwise reader and as an output."""

    def __init__(self):
        super().__init__()
        self.pre = nn.Conv1d(8, 16, 7, padding=3)
        self.up = nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1)
        self.dilated = nn.Conv1d(8, 8, 3, dilation=3, padding=3)
        self.post = nn.Conv1d(8, 1, 5, padding=2)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor):
        x = self.pre(mel * mask)
        x = self.up(F.leaky_relu(x, 0.1))
        x = x + self.dilated(F.leaky_relu(x, 0.1)) * 0.5
        return torch.tanh(self.post(x)), x.transpose(1, 2).sum(-1)


def _onnx(model: nn.Module, args: tuple[torch.Tensor, ...]):
    time = torch.export.Dim("T", min=2, max=4096)
    program = torch.export.export(model, args, dynamic_shapes=({2: time}, {2: time}))
    return torch.onnx.export(program, args, dynamo=True, verbose=False).model_proto


def _run(proto, inputs: dict[str, torch.Tensor]) -> list:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs.values())})


def test_rewritten_graph_gives_the_program_outputs_at_every_length():
    torch.manual_seed(0)
    model = ConvChain().eval()
    proto = _onnx(model, (torch.randn(1, 8, 16), torch.ones(1, 1, 16)))
    assert conv1d_as_conv2d(proto) == 4
    onnx.checker.check_model(proto)
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    kernels = [list(a.ints) for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose")
               for a in n.attribute if a.name == "kernel_shape"]
    assert ops["Conv"] + ops["ConvTranspose"] == 4 and all(len(k) == 2 and k[0] == 1 for k in kernels)
    assert ops["Unsqueeze"] <= 4 + 2  # the weights, the mel and the mask: the chain is lifted once, not per layer
    for length in (2, 9, 200):
        mel, mask = torch.randn(1, 8, length), torch.ones(1, 1, length)
        mask[..., length * 2 // 3:] = 0
        with torch.inference_mode():
            want = model(mel, mask)
        got = _run(proto, {"mel": mel, "mask": mask})
        for g, w in zip(got, want):
            assert g.shape == tuple(w.shape)
            error = (torch.from_numpy(g) - w).abs().max().item()
            assert ONNX_CPU.passes(error, w.abs().max().item()), (length, error)


def test_graph_without_1d_convolutions_is_left_as_it_is():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()).eval()
    proto = torch.onnx.export(model, (torch.randn(1, 2, 5, 5),), dynamo=True, verbose=False).model_proto
    before = proto.SerializeToString()
    assert conv1d_as_conv2d(proto) == 0
    assert proto.SerializeToString() == before
