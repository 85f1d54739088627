"""The ``cpu`` backend: TorchScript where a trace holds the shapes, else AOTInductor; dynamic shapes.

Two routes, tried in a fixed order for every network (the compiler validates
each artifact at several lengths right after it is written and moves on to the
next route when validation fails):

1. ``torchscript``: ``torch.jit.trace`` of ``ExportedProgram.module()``,
   frozen. Fast to build and loadable by any libtorch host. A trace records
   ATen ops for one example, so every size the graph computes from its inputs
   (an attention reshape, a position table sliced to the length) becomes a
   constant: transformers, conformers and flows fail validation here.
2. ``aotinductor``: ``torch._inductor.aoti_compile_and_package`` of the
   exported program itself, dims kept symbolic, to a ``.pt2`` package of
   native code, run through AOTInductor's C interface with the GIL released
   (:mod:`ttsstack.backends.aoti_runtime`; ``aoti_load_package`` holds it
   and is the fallback for packages that need more). It takes
   every network ``torch.export`` takes, and costs seconds to a minute of C++
   compilation per network. The code is built for a portable instruction-set
   level (``-march=x86-64-v3`` on an AVX2 host, ``x86-64-v4`` on AVX-512)
   rather than the build host's exact CPU; the manifest records the machine,
   the vector ISA and the torch version, and a host that cannot run the
   artifact refuses it at load with the reason.

ttsstack's recurrent operators are lowered to their ATen kernels before the
trace (``aten::lstm`` keeps the time axis dynamic); AOTInductor calls them
through the dispatcher, where :mod:`ttsstack.recurrent` registers them.

Precision (``ttsstack compile --precision``): fp32, or bf16, fp16 and int8
on the TorchScript route, whose graph is rewritten before the trace
(:mod:`ttsstack.backends.torch_precision`: casts for bf16/fp16, dynamic
quantization of linear, LSTM-cell and conv1d layers for int8). The
AOTInductor route compiles fp32 only, so a network that needs it fails to
compile at a lower precision, saying so.
"""

from __future__ import annotations

import functools
import io
import platform
import tempfile
import warnings
from pathlib import Path

import torch

from ..runtime.registry import BACKENDS
from .aoti_runtime import AotiModel, UnsupportedPackage
from .base import FP32, Backend, BackendError, ModuleRunner, NetworkArtifacts, trace_examples
from .lowering import lower_to_aten
from .torch_precision import CAST_DTYPES, cast_graph, quantize_graph

TORCHSCRIPT = "torchscript"
AOTINDUCTOR = "aotinductor"
# Portable x86-64 levels for the vector ISA inductor picks: the artifact runs on any CPU of that level.
MARCH_FOR_ISA = {"avx2": "x86-64-v3", "avx512": "x86-64-v4"}


@functools.cache
def host_isa() -> dict[str, str]:
    """This host's machine and the best vector ISA inductor can use on it (``{"machine", "isa"}``)."""
    from torch._inductor import cpu_vec_isa

    return {"machine": platform.machine(), "isa": str(cpu_vec_isa.pick_vec_isa()) or "none"}


@functools.cache
def host_isas() -> frozenset[str]:
    """Every vector ISA this host can run code for."""
    from torch._inductor import cpu_vec_isa

    return frozenset(str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()) | {"none"}


WRAPPER_OPT_LEVEL = "O0"
"""The generated C++ wrapper only calls the kernels: ``-O0`` builds it in two thirds of the time at ``-O1``
(17.5 s vs 26 s on a tiny transformer decoder here) and ran no slower (2.27 vs 2.39 ms at 256 frames);
the kernels keep inductor's own optimisation flags."""


def aoti_options() -> dict[str, object]:
    """Inductor settings of an AOTInductor build: a portable ``-march`` for the host's vector ISA, a cheap wrapper."""
    march = MARCH_FOR_ISA.get(host_isa()["isa"]) if host_isa()["machine"] in ("x86_64", "AMD64") else None
    options: dict[str, object] = {"aot_inductor.compile_wrapper_opt_level": WRAPPER_OPT_LEVEL}
    return options | ({"cpp.march": march} if march else {})


@BACKENDS.register("cpu")
class CpuBackend(Backend):
    """TorchScript (traced) or AOTInductor (native, symbolic shapes) artifacts, run on the CPU.

    See the module docstring for the rule that picks the route per network.
    """

    name = "cpu"
    precisions = (FP32, "bf16", "fp16", "int8")
    suffix = ".ts"
    route_suffix = {TORCHSCRIPT: ".ts", AOTINDUCTOR: ".aoti.pt2"}

    @property
    def placement(self) -> str:
        return "TorchScript or AOTInductor on the CPU"

    def toolchain(self) -> dict[str, str]:
        return {"torch": torch.__version__.split("+")[0]}

    def routes(self, spec) -> list[str]:
        return [TORCHSCRIPT, AOTINDUCTOR]

    def compile(self, program, spec, dims, bucket, out: Path, route: str | None = TORCHSCRIPT) -> dict[str, str]:
        if route == AOTINDUCTOR:
            if self.precision != FP32:
                raise BackendError(f"the {AOTINDUCTOR} route compiles fp32 only, not {self.precision}")
            return self._compile_aoti(program, out)
        args = tuple(trace_examples(spec, dims).values())
        module, details = self._at_precision(lower_to_aten(program.module()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(module, args, check_trace=False, strict=False)
        traced = torch.jit.freeze(traced.eval())
        buffer = io.BytesIO()  # torch.jit.save to a full disk aborts the process; Python's write raises OSError
        torch.jit.save(traced, buffer)
        out.write_bytes(buffer.getvalue())
        return {"route": TORCHSCRIPT, **details}

    def _at_precision(self, module: torch.fx.GraphModule) -> tuple[torch.nn.Module, dict[str, str]]:
        """The graph to trace at this backend's precision, and what the rewrite did (for the manifest)."""
        if self.precision in CAST_DTYPES:
            return cast_graph(module, self.precision), {}
        if self.precision == "int8":
            return quantize_graph(module)
        return module, {}

    def _compile_aoti(self, program, out: Path) -> dict[str, str]:
        from torch._inductor import aoti_compile_and_package

        options = aoti_options()
        with tempfile.TemporaryDirectory(prefix="ttsstack-aoti-") as work:
            package = Path(work) / "package.pt2"
            aoti_compile_and_package(program, package_path=str(package), inductor_configs=options)
            out.write_bytes(package.read_bytes())
        return {"route": AOTINDUCTOR, **host_isa(), "march": str(options.get("cpp.march", "native")), "torch": torch.__version__}

    def host_problem(self, details: dict[str, str]) -> str | None:
        """Why this host cannot run an artifact with these manifest ``details``, or None."""
        if details.get("route") != AOTINDUCTOR:
            return None
        here = host_isa()
        if details.get("torch") != torch.__version__:
            return f"AOTInductor code was built with torch {details.get('torch')}, this host has torch {torch.__version__}"
        if details.get("machine") != here["machine"]:
            return f"AOTInductor code was built for {details.get('machine')}, this host is {here['machine']}"
        if details.get("isa", "none") not in host_isas():
            return (
                f"AOTInductor code was built for the {details.get('isa')} instruction set, which this CPU lacks "
                f"(it has: {', '.join(sorted(host_isas() - {'none'})) or 'none'})"
            )
        if details.get("march") == "native" and details.get("isa") != here["isa"]:
            return "AOTInductor code was built for the build host's exact CPU (-march=native), and this CPU differs"
        return None

    def load(self, network: NetworkArtifacts) -> ModuleRunner:
        (artifact,) = network.artifacts
        if artifact.details.get("route") == AOTINDUCTOR:
            from torch._inductor import aoti_load_package

            try:
                return AotiRunner(network.spec, AotiModel(artifact.path))
            except UnsupportedPackage:
                pass  # torch's own loader runs it, holding the GIL during calls
            except Exception as exc:  # noqa: BLE001 - a native loader error names nothing by itself
                raise BackendError(f"network '{network.name}': AOTInductor package {artifact.path} failed to load: {exc}") from exc
            try:
                return AotiRunner(network.spec, aoti_load_package(str(artifact.path)))
            except Exception as exc:  # noqa: BLE001 - a native loader error names nothing by itself
                raise BackendError(f"network '{network.name}': AOTInductor package {artifact.path} failed to load: {exc}") from exc
        return ModuleRunner(network.spec, torch.jit.load(str(artifact.path), map_location="cpu"))


class AotiRunner(ModuleRunner):
    """A :class:`ModuleRunner` for an AOTInductor model, which reads every input as contiguous.

    AOTInductor's generated code indexes each input with the strides it was
    compiled for, whatever the tensor's own: a view (a recurrent state cut
    from a larger output, say) would be read wrong without a word, so each
    input is made contiguous first (free when it already is).
    """

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return super().__call__({name: tensor.contiguous() for name, tensor in inputs.items()})
