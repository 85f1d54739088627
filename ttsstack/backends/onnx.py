"""The ``onnx`` backend: ONNX with dynamic axes, run by ONNX Runtime on the CUDA or the CPU execution provider.

Compile exports the exported program itself with ``torch.onnx.export(...,
dynamo=True)``, which keeps its dims symbolic; ttsstack's recurrent operators
become ONNX ``LSTM``/``GRU`` through
:func:`~ttsstack.backends.onnx_translations.custom_translation_table`. The
symbolic axes are then renamed after the addon's named dims (``T_text``,
``T_frames``), so the ONNX file reads like ``addon.yaml``. Artifacts are single
files (weights inside).

At run time the CUDA execution provider is used when the installed
onnxruntime has it (``pip install 'ttsstack[gpu]'``) and the host has a GPU,
else the CPU one; the choice is logged, shown by ``ttsstack inspect`` and
``ttsstack synthesize``, and read back from each session (ONNX Runtime falls
back to the CPU when the CUDA provider fails to start). On CUDA, inputs and
outputs go through I/O binding: one copy to the device and one back per
network call, outputs allocated on the device by ONNX Runtime. A step
network (one with states, called once per frame) binds the inputs that stay
the same for an utterance once (:meth:`OrtRunner.bind`: on CUDA the memory is
copied to the device once per utterance) and feeds its states back without
converting them. Sessions' intra-op workers sleep between runs (see :func:`ort_session`).

At ``--precision int8`` or ``fp16`` the exported file is rewritten before it
is validated (:mod:`ttsstack.backends.onnx_precision`); inputs and outputs
stay float32.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import warnings
from pathlib import Path

import torch

from ..addon import NetworkSpec
from ..runtime.network import Step
from ..runtime.registry import BACKENDS
from .base import FP32, Backend, BackendError, NetworkArtifacts, trace_examples
from .onnx_precision import lower_precision

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
REQUIRED = ("onnxruntime", "onnx", "onnxscript")
INSTALL_HINT = "pip install 'ttsstack[onnx]' (or 'ttsstack[gpu]' on CUDA hosts)"


def onnx_unavailable_reason() -> str | None:
    """Why ONNX export or ONNX Runtime cannot be used here, or None."""
    for module in REQUIRED:
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed; {INSTALL_HINT}"
    return None


def onnx_toolchain() -> dict[str, str]:
    """Versions of torch, onnx, onnxscript (the exporter) and onnxruntime (validation)."""
    import onnx
    import onnxruntime
    import onnxscript

    return {
        "torch": torch.__version__.split("+")[0],
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def gpu_present() -> bool:
    """Whether this host has an NVIDIA GPU (seen by torch, or by its device nodes)."""
    return torch.cuda.is_available() or any(Path("/dev").glob("nvidia[0-9]*"))


def preferred_provider() -> str:
    """``CUDAExecutionProvider`` when onnxruntime has it and a GPU is present, else ``CPUExecutionProvider``."""
    import onnxruntime

    return CUDA if CUDA in onnxruntime.get_available_providers() and gpu_present() else CPU


@contextlib.contextmanager
def _quiet_exporter():
    """Keep the exporter's progress prints and notes (optional libraries missing) out of the compile output."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


_REGISTRIES: dict = {}


@contextlib.contextmanager
def _shared_torchlib_registry():
    """Build torch.onnx's table of ATen-to-ONNX functions once per process instead of once per export.

    ``torch.onnx.export`` rebuilds that table (parsing every torchlib function,
    seconds each time) on every call, then registers the custom translations
    into it. Each export gets its own copy of the cached table, so those
    registrations never pile up in the cache. The cached table also gets
    ttsstack's translations of complex operators
    (:func:`~ttsstack.backends.onnx_translations.complex_translations`), which
    ``custom_translation_table`` cannot register. The patch is undone on exit
    and skipped when this torch has no such table.
    """
    try:
        from torch.onnx._internal.exporter import _registration

        build = _registration.ONNXRegistry.__dict__["from_torchlib"]
    except (ImportError, KeyError):
        yield
        return

    from .onnx_translations import complex_translations

    def cached(cls, *args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in _REGISTRIES:
            _REGISTRIES[key] = build.__func__(cls, *args, **kwargs)
            for target, function in complex_translations().items():  # custom_translation_table registers real ones only
                _REGISTRIES[key].register_op(target, function, is_complex=True)
        registry = copy.copy(_REGISTRIES[key])
        registry.functions = {target: list(found) for target, found in registry.functions.items()}
        return registry

    _registration.ONNXRegistry.from_torchlib = classmethod(cached)
    try:
        yield
    finally:
        _registration.ONNXRegistry.from_torchlib = build


def export_onnx(model, args: tuple[torch.Tensor, ...], spec: NetworkSpec, out: Path) -> None:
    """``torch.onnx.export(dynamo=True)`` of ``model`` to ``out``, tensors named as in the spec.

    ttsstack's operators are translated by
    :func:`~ttsstack.backends.onnx_translations.custom_translation_table`.
    Symbolic axes of the inputs are renamed to the spec's dim names wherever
    they appear (inputs, outputs, intermediate shapes), and 1-D convolutions
    run as 2-D ones (:func:`~ttsstack.backends.onnx_layout.conv1d_as_conv2d`:
    ONNX Runtime's faster kernels).
    """
    import onnx

    from .onnx_layout import conv1d_as_conv2d
    from .onnx_translations import custom_translation_table

    with _quiet_exporter(), _shared_torchlib_registry():
        program = torch.onnx.export(
            model, args, dynamo=True, input_names=list(spec.inputs), output_names=list(spec.outputs),
            custom_translation_table=custom_translation_table(), verbose=False,
        )
    proto = program.model_proto
    names: dict[str, str] = {}
    for value, tensor in zip(proto.graph.input, spec.inputs.values()):
        for axis, dim in tensor.named_dims:
            param = value.type.tensor_type.shape.dim[axis].dim_param
            if param:
                names[param] = dim
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param in names:
                d.dim_param = names[d.dim_param]
    conv1d_as_conv2d(proto)
    onnx.save_model(proto, str(out))


def ort_session(path: Path, provider: str, provider_options: dict[str, str] | None = None):
    """An ONNX Runtime session of one artifact on ``provider`` (the CPU provider as fallback).

    Its CPU thread pool follows PyTorch's intra-op setting (``torch.set_num_threads``
    before loading), so one knob sizes every backend; a static addon has many
    sessions and each would otherwise start a pool as large as the machine.
    Its intra-op workers sleep between runs instead of busy-waiting: a voice's
    sessions run one after another with host work in between (a decoder step
    per frame), and spinning workers of one session take the cores the next
    one and that host work need (on a busy 2-core host, spinning made decoder
    steps 1.6x and a FastPitch utterance 3x slower). On CUDA, TF32 is off.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only; the provider choice is logged here
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # TF32 off: the CUDA provider's matrix products in full fp32, as the tolerances module states.
    cuda_options = {"use_tf32": "0", **(provider_options or {})}
    providers: list = [CPU] if provider == CPU else [(provider, cuda_options), CPU]
    return onnxruntime.InferenceSession(str(path), options, providers=providers)


def host_array(tensor: torch.Tensor):
    """A numpy view of a CPU tensor (a copy only when it is not contiguous)."""
    return tensor.detach().contiguous().numpy()


class HostArrays:
    """Tensors to numpy and back for the calls of one binding, without converting what comes back.

    Outputs become tensors sharing their arrays; an output of the last call
    passed back as an input (an autoregressive state) is fed the array it
    wraps, found by identity, instead of being converted again.
    """

    def __init__(self):
        self.produced: dict[int, tuple[torch.Tensor, object]] = {}  # the last call's outputs, kept alive

    def array(self, tensor: torch.Tensor):
        """The numpy array to feed for ``tensor``."""
        hit = self.produced.get(id(tensor))
        return hit[1] if hit is not None else host_array(tensor)

    def tensors(self, names: list[str], arrays) -> dict[str, torch.Tensor]:
        """The call's output ``arrays`` as named tensors sharing their memory."""
        self.produced.clear()
        outputs = {}
        for name, array in zip(names, arrays):
            tensor = torch.from_numpy(array)
            self.produced[id(tensor)] = (tensor, array)
            outputs[name] = tensor
        return outputs


class OrtRunner:
    """Runs one ONNX Runtime session on named torch tensors; on CUDA through I/O binding.

    ``binding_device`` is where bound inputs and outputs live (``"cuda"`` on
    the CUDA provider; None runs without binding).
    """

    static_lengths = None

    def __init__(self, spec: NetworkSpec, session, network: str):
        self.spec = spec
        self.session = session
        self.provider = session.get_providers()[0]
        self.binding_device = "cuda" if self.provider == CUDA else None
        self.output_names = list(spec.outputs)
        log.info("onnx: network '%s' runs on %s", network, self.provider)

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.bind({})(inputs)

    def bind(self, fixed: dict[str, torch.Tensor]) -> Step:
        """Calls that pass the other inputs, with the ``fixed`` ones converted once (see ``bind_inputs``).

        On CUDA the fixed inputs are copied to the device once and stay bound;
        each call copies the others in and the outputs back. Without binding,
        the fixed inputs' numpy views join each call's feeds. Either way the
        previous call's outputs fed back are not converted again (:class:`HostArrays`).
        """
        arrays = {name: host_array(tensor) for name, tensor in fixed.items()}
        names = [name for name in self.spec.inputs if name not in fixed]
        host = HostArrays()
        if not self.binding_device:

            def run(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
                feeds = dict(arrays)
                for name in names:
                    feeds[name] = host.array(inputs[name])
                return host.tensors(self.output_names, self.session.run(self.output_names, feeds))

            return run

        import onnxruntime

        binding = self.session.io_binding()  # holds the fixed inputs' device copies as long as the step lives
        for name, array in arrays.items():
            binding.bind_ortvalue_input(name, onnxruntime.OrtValue.ortvalue_from_numpy(array, self.binding_device, 0))

        def run_bound(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            for name in names:
                binding.bind_cpu_input(name, host.array(inputs[name]))
            for name in self.output_names:
                binding.bind_output(name, self.binding_device)
            self.session.run_with_iobinding(binding)
            return host.tensors(self.output_names, binding.copy_outputs_to_cpu())

        return run_bound


@BACKENDS.register("onnx")
class OnnxBackend(Backend):
    """ONNX with dynamic axes for the named dims, one artifact per network, run by ONNX Runtime."""

    name = "onnx"
    precisions = (FP32, "fp16", "int8")
    suffix = ".onnx"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return onnx_unavailable_reason()

    def export(self, model, args: tuple[torch.Tensor, ...], spec: NetworkSpec, out: Path) -> dict[str, str]:
        """:func:`export_onnx` to ``out`` at this backend's precision; what the precision rewrite did."""
        export_onnx(model, args, spec, out)
        return {} if self.precision == FP32 else lower_precision(out, self.precision)

    def toolchain(self) -> dict[str, str]:
        return onnx_toolchain()

    def incompatibility(self, recorded: dict[str, str]) -> str | None:
        """None: an ONNX file runs on any onnxruntime that supports its opset (ONNX Runtime says so otherwise)."""
        return None

    @property
    def device(self) -> str:
        return "cuda" if preferred_provider() == CUDA else "cpu"

    @property
    def placement(self) -> str:
        provider = preferred_provider()
        return f"ONNX Runtime {provider}" + (" with I/O binding" if provider == CUDA else "")

    def compile(self, program, spec, dims, bucket, out: Path, route=None) -> dict[str, str]:
        return self.export(program, tuple(trace_examples(spec, dims).values()), spec, out)

    def load(self, network: NetworkArtifacts) -> OrtRunner:
        (artifact,) = network.artifacts
        try:
            session = ort_session(artifact.path, preferred_provider())
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise BackendError(f"network '{network.name}' on backend '{self.name}': ONNX Runtime cannot load {artifact.path}: {exc}") from exc
        return OrtRunner(network.spec, session, network.name)
