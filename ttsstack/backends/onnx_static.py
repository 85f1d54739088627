"""The ``onnx-static`` backend: one fixed-shape ONNX file per network per bucket, run by ONNX Runtime.

Each bucket's artifact comes from the network re-exported with
``torch.export`` at that bucket's shapes and then converted to ONNX, so every
axis in the file is fixed: ONNX Runtime itself rejects any other shape, which
makes this a real static-shape runtime on any host (and the place to check
an addon's buckets before deploying to Neuron). The static block variants pad
to the smallest fitting bucket.

On a CUDA host each session captures a CUDA graph (``enable_cuda_graph``)
with its inputs and outputs in fixed device buffers; ONNX Runtime allows that
only when every node runs on the CUDA provider, and a session it refuses runs
without graphs (logged).
"""

from __future__ import annotations

import logging
import threading

import torch

from ..addon import NetworkSpec
from ..runtime.network import Step
from ..runtime.registry import BACKENDS
from .base import Artifact, BackendError, bucket_examples, bucket_shapes
from .onnx import CUDA, HostArrays, OnnxBackend, OrtRunner, host_array, ort_session, preferred_provider
from .static import StaticBackend

log = logging.getLogger(__name__)


def _numpy_dtype(dtype: torch.dtype):
    return torch.empty(0, dtype=dtype).numpy().dtype


class CudaGraphRunner:
    """A fixed-shape session replayed as a CUDA graph: every call reuses the same device buffers.

    Inputs are copied into the bound buffers on ``device``, the graph is
    replayed and the outputs are copied back; a lock keeps concurrent callers
    from sharing the buffers mid-run. Inputs fixed by :meth:`bind` are copied
    once, and again only when another caller used the buffers in between.
    """

    static_lengths = None

    def __init__(self, spec: NetworkSpec, session, shapes: dict[str, list[int]], device: str = "cuda"):
        import onnxruntime

        self.spec = spec
        self.session = session
        self.provider = session.get_providers()[0]
        make = onnxruntime.OrtValue.ortvalue_from_shape_and_type
        tensors = {**spec.inputs, **spec.outputs}
        self.buffers = {name: make(shapes[name], _numpy_dtype(tensors[name].torch_dtype), device, 0) for name in tensors}
        self.binding = session.io_binding()
        for name in spec.inputs:
            self.binding.bind_ortvalue_input(name, self.buffers[name])
        for name in spec.outputs:
            self.binding.bind_ortvalue_output(name, self.buffers[name])
        self.output_names = list(spec.outputs)
        self.lock = threading.Lock()
        self.holder: object | None = None  # the binding whose fixed inputs the buffers hold

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.bind({})(inputs)

    def bind(self, fixed: dict[str, torch.Tensor]) -> Step:
        """Calls that pass the other inputs, the ``fixed`` ones copied into their buffers once (see ``bind_inputs``)."""
        arrays = {name: host_array(tensor) for name, tensor in fixed.items()}
        names = [name for name in self.spec.inputs if name not in fixed]
        token, host = object(), HostArrays()

        def run(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            with self.lock:
                if self.holder is not token:
                    for name, array in arrays.items():
                        self.buffers[name].update_inplace(array)
                    self.holder = token
                for name in names:
                    self.buffers[name].update_inplace(host.array(inputs[name]))
                self.session.run_with_iobinding(self.binding)
                return host.tensors(self.output_names, [self.buffers[name].numpy() for name in self.output_names])

        return run


def _fixed_shapes(spec: NetworkSpec, bucket: dict[str, int]) -> dict[str, list[int]] | None:
    """Every tensor's shape in this bucket, or None when an output's size is not fixed by the bucket."""
    shapes = bucket_shapes(spec, bucket)
    return None if any(isinstance(d, str) for shape in shapes.values() for d in shape) else shapes


@BACKENDS.register("onnx-static")
class OnnxStaticBackend(StaticBackend, OnnxBackend):
    """Fixed-shape ONNX per bucket; the onnx backend's toolchain and provider choice, the static blocks."""

    name = "onnx-static"
    suffix = ".onnx"

    def compile(self, program, spec, dims, bucket, out, route=None) -> dict[str, str]:
        args = tuple(bucket_examples(spec, bucket).values())
        return self.export(torch.export.export(program.module(), args), args, spec, out)

    def load_artifact(self, network: str, spec: NetworkSpec, artifact: Artifact):
        provider = preferred_provider()
        shapes = _fixed_shapes(spec, artifact.bucket or {})
        try:
            if provider == CUDA and shapes is not None:
                try:
                    session = ort_session(artifact.path, CUDA, {"enable_cuda_graph": "1"})
                    if session.get_providers()[0] == CUDA:
                        log.info("onnx-static: network '%s' %s runs on %s with CUDA graphs", network, artifact.bucket, CUDA)
                        return CudaGraphRunner(spec, session, shapes)
                except Exception as exc:  # noqa: BLE001 - ORT refuses graphs when a node is not on CUDA
                    log.warning("onnx-static: network '%s' %s runs without CUDA graphs: %s", network, artifact.bucket, exc)
            session = ort_session(artifact.path, provider)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise BackendError(f"network '{network}' on backend '{self.name}': ONNX Runtime cannot load {artifact.path}: {exc}") from exc
        return OrtRunner(spec, session, network)
