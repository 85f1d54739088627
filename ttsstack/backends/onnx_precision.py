"""Reduced precision for an exported ONNX file (the ``onnx`` and ``onnx-static`` backends): int8 or fp16.

- ``int8``: ONNX Runtime's dynamic quantization
  (``onnxruntime.quantization.quantize_dynamic``): the weights of
  ``MatMul``/``Gemm`` and ``LSTM`` nodes become 8-bit per output channel, and
  each call quantizes their activations on the fly (``DynamicQuantizeLinear``
  -> ``MatMulInteger``; ``DynamicQuantizeLSTM``). Weights are unsigned
  (u8 x u8): ONNX Runtime's u8 x s8 kernels on x86 CPUs without VNNI
  saturate 16-bit sums, which made a FastPitch-size decoder's output 10x
  worse (0.26 against 0.02 on a mel of magnitude 2.3). ``Conv`` stays fp32:
  ONNX Runtime's ``ConvInteger`` CPU kernel is a reference loop, and made a
  conv decoder 2x slower than fp32 on this project's build host.
- ``fp16``: every float initializer and op in fp16 (``onnxruntime.transformers.float16``),
  with casts at the graph's inputs and outputs so they stay float32.

bf16 is not offered: ONNX Runtime's CPU provider has next to no bf16 kernels.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import Counter
from pathlib import Path

INT8_OPS = ["MatMul", "Gemm", "LSTM"]
PRECISIONS = ("int8", "fp16")


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantizer logs advice ("consider pre-processing") on the root logger; keep it out of compiles."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def lower_precision(path: Path, precision: str) -> dict[str, str]:
    """Rewrite the ONNX file at ``path`` in place at ``precision`` (``int8`` or ``fp16``); what changed, for the manifest."""
    import onnx

    before = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory(prefix="ttsstack-int8-") as work, _quiet_root_logger():
            quantized = Path(work) / "model.onnx"
            quantize_dynamic(
                str(path), str(quantized), weight_type=QuantType.QUInt8, per_channel=True, op_types_to_quantize=INT8_OPS,
                extra_options={"MatMulConstBOnly": True},  # layers only; attention's products of activations stay fp32
            )
            path.write_bytes(quantized.read_bytes())
        after = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
        integer = {op: n for op, n in after.items() if op in ("MatMulInteger", "DynamicQuantizeLSTM")}
        kept = {op: after[op] for op in ("MatMul", "Gemm", "Conv", "LSTM", "GRU") if after.get(op)}
        return {"int8": _describe(integer), "kept fp32": _describe(kept)}
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(path))
        del model.graph.value_info[:]  # the exporter's fp32 shape records contradict the converted graph
        model = convert_float_to_float16(model, keep_io_types=True)
        onnx.save_model(model, str(path))
        return {"fp16": f"{sum(before.values())} nodes"}
    raise ValueError(f"no ONNX lowering for precision '{precision}'")


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in sorted(counts.items())) or "none"
