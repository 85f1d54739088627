"""Every network of an attention addon exports to ONNX with dynamic dims and runs in ONNX Runtime like eager.

The ``onnx`` backends build on this: recurrent layers go through ttsstack's ONNX
translations, and a padded encoder run (true length below the padded one) matches.
"""

from __future__ import annotations

import pytest
import torch

from ttsstack.addon import load_addon
from ttsstack.backends.base import example_inputs
from ttsstack.tolerances import ONNX_CPU

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from ttsstack.backends.onnx_translations import custom_translation_table  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _cases(spec, dims):
    yield {d: 7 for d in dims}, None
    yield {d: 40 for d in dims}, 25 if spec.lengths else None  # padded: 25 real steps of 40


@pytest.mark.parametrize("network", ["encoder", "decoder_step", "postnet"])
def test_network_runs_in_onnx_runtime_like_eager(tiny_tacotron, network):
    addon = load_addon(tiny_tacotron)
    spec = addon.spec.networks[network]
    program = addon.load_program(network)
    args = tuple(example_inputs(spec, {d: 23 for d in addon.spec.dims}).values())
    model = torch.onnx.export(program, args, dynamo=True, custom_translation_table=custom_translation_table(), verbose=False)
    session = ort.InferenceSession(model.model_proto.SerializeToString())
    assert [i.name for i in session.get_inputs()] == list(spec.inputs)
    for sizes, valid in _cases(spec, addon.spec.dims):
        inputs = example_inputs(spec, sizes, seed=1)
        if valid is not None:
            inputs[spec.lengths][:] = valid
            inputs[spec.mask][:, valid:] = False
        with torch.inference_mode():
            want = program.module()(*inputs.values())
        got = session.run(None, {name: t.numpy() for name, t in inputs.items()})
        for name, g, w in zip(spec.outputs, got, want if isinstance(want, tuple) else (want,)):
            error = (torch.from_numpy(g) - w).abs().max().item()
            assert ONNX_CPU.passes(error, w.abs().max().item()), (network, name, sizes, error)
