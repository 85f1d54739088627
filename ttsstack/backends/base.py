"""The backend seam: compile one network for given shapes, load its artifacts, name block variants.

A backend is a small object. The compiler asks it which shape buckets a
network needs (:meth:`Backend.buckets`), to compile one (:meth:`Backend.compile`),
and which toolchain versions it depends on; the loader asks it to turn the
artifacts back into a :class:`~ttsstack.runtime.network.NetworkRunner` and
which block variants replace the plain blocks (``block_variants``).
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import torch

from ..addon import BATCH, DimSpec, NetworkSpec, batched
from ..runtime.network import NetworkRunner, sequence_dim


class BackendError(RuntimeError):
    """A backend that cannot compile or load; the message names the network and backend."""


FP32 = "fp32"
PRECISIONS = (FP32, "fp16", "bf16", "int8")
"""Arithmetic precisions an artifact may be compiled at (``ttsstack compile --precision``); inputs and outputs stay fp32."""


@dataclass(frozen=True)
class Artifact:
    """One compiled file: which shapes it accepts (dim name -> size for a static bucket, else None).

    A static bucket of a ``batch: true`` network compiled for more than one row
    also holds its batch size under :data:`~ttsstack.addon.BATCH` (``{"T_text": 16, "batch": 4}``).
    """

    path: Path
    bucket: dict[str, int] | None = None
    details: dict[str, str] = field(default_factory=dict)  # what compile() returned: route, instruction set, ...


@dataclass
class NetworkArtifacts:
    """Everything a backend may load one network from."""

    name: str
    spec: NetworkSpec
    program: Path
    artifacts: list[Artifact] = field(default_factory=list)


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class Backend(ABC):
    """Base class of compile/run targets; subclasses register in ``BACKENDS``."""

    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = (FP32,)  # what this backend can compile at (see PRECISIONS)
    precision: str = FP32  # this instance's (set by __init__)
    static: ClassVar[bool] = False
    suffix: ClassVar[str] = ""
    route_suffix: ClassVar[dict[str, str]] = {}
    block_variants: ClassVar[dict[str, type]] = {}

    def __init__(self, precision: str = FP32):
        if precision not in self.precisions:
            known = "" if precision in PRECISIONS else f" (precisions are {', '.join(PRECISIONS)})"
            raise BackendError(
                f"backend '{self.name}' cannot compile at precision '{precision}'{known}; "
                f"it offers: {', '.join(self.precisions)}"
            )
        self.precision = precision

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run on this host, or None when it can."""
        return None

    @abstractmethod
    def toolchain(self) -> dict[str, str]:
        """Versions of the libraries whose output the artifacts depend on."""

    def incompatibility(self, recorded: dict[str, str]) -> str | None:
        """Why artifacts made by the ``recorded`` toolchain cannot be loaded here, or None.

        The default requires the same major.minor of every recorded library.
        """
        current = self.toolchain()
        for lib, version in recorded.items():
            have = current.get(lib)
            if have is None:
                return f"{lib} {version} made the artifacts, but {lib} is not installed"
            if have.split(".")[:2] != version.split(".")[:2]:
                return f"artifacts were made with {lib} {version}, this host has {lib} {have}"
        return None

    def settings(self) -> dict[str, str]:
        """Compile settings besides the toolchain that change an artifact (precision, compiler flags); part of the cache key."""
        return {"precision": self.precision}

    def routes(self, spec: NetworkSpec) -> list[str | None]:
        """The ways to compile a network, in the order the compiler tries them (the next after a failed validation)."""
        return [None]

    def suffix_for(self, route: str | None) -> str:
        """The artifact file suffix of a route."""
        return self.route_suffix.get(route, self.suffix) if route else self.suffix

    def host_problem(self, details: dict[str, str]) -> str | None:
        """Why this host cannot run an artifact compiled with these ``details`` (the manifest's), or None."""
        return None

    def buckets(
        self, spec: NetworkSpec, dims: dict[str, DimSpec], batch_sizes: Sequence[int] = (1,)
    ) -> list[dict[str, int] | None]:
        """The shape buckets to compile for: ``[None]`` (one dynamic artifact) unless static.

        ``batch_sizes`` are the addon's batch buckets (``batch.buckets``), which
        a static backend compiles a ``batch: true`` network at; a dynamic
        artifact takes any batch.
        """
        return [None]

    @abstractmethod
    def compile(
        self,
        program: torch.export.ExportedProgram,
        spec: NetworkSpec,
        dims: dict[str, DimSpec],
        bucket: dict[str, int] | None,
        out: Path,
        route: str | None = None,
    ) -> dict[str, str] | None:
        """Write the artifact of ``program`` for ``bucket`` (None: dynamic up to each dim's max) to ``out``.

        ``route`` is one of :meth:`routes`. Returns details to record in the
        manifest (the route taken, what the artifact needs of a host), or None.
        """

    @abstractmethod
    def load(self, network: NetworkArtifacts) -> NetworkRunner:
        """A runner for the network from its artifacts."""

    @property
    def device(self) -> str:
        """Where the runner computes ("cpu", "cuda", "neuron"); parity tolerances depend on it."""
        return "cpu"

    @property
    def placement(self) -> str:
        """Where the artifacts run on this host, in words (shown by inspect, synthesize and parity)."""
        return self.device


class ModuleRunner:
    """Runs a callable taking the spec's inputs positionally and returning its outputs in spec order."""

    static_lengths = None

    def __init__(self, spec: NetworkSpec, module):
        self.spec = spec
        self.module = module
        self.input_names = list(spec.inputs)
        self.output_names = list(spec.outputs)

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.module(*(inputs[n] for n in self.input_names))
        if isinstance(out, torch.Tensor):
            out = (out,)
        return dict(zip(self.output_names, out))


def example_inputs(spec: NetworkSpec, sizes: dict[str, int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs of the declared shapes and dtypes, named dims set by ``sizes``.

    Integer inputs hold 0/1 values (valid token ids for any vocabulary), the
    ``lengths`` input the full length, the ``mask`` and ``cache_mask`` inputs ones, floats a
    seeded normal draw: enough to trace and to compare numerics.
    """
    gen = torch.Generator().manual_seed(seed)
    inputs: dict[str, torch.Tensor] = {}
    for name, tensor in spec.inputs.items():
        shape = [sizes[d] if isinstance(d, str) else d for d in tensor.shape]
        dtype = tensor.torch_dtype
        if name == spec.lengths:
            inputs[name] = torch.full(shape, sizes[sequence_dim(spec)], dtype=dtype)
        elif name in (spec.mask, spec.cache_mask) or dtype == torch.bool:
            inputs[name] = torch.ones(shape, dtype=dtype)
        elif dtype.is_floating_point:
            inputs[name] = torch.randn(shape, generator=gen).to(dtype)
        else:
            inputs[name] = torch.randint(0, 2, shape, generator=gen, dtype=dtype)
    return inputs


TRACE_LENGTH = 23  # an odd size unlikely to coincide with a constant in the graph
TRACE_BATCH = 2  # rows a batch network is traced with: a trace of 1 row may record the batch size as a constant


def trace_examples(spec: NetworkSpec, dims: dict[str, DimSpec]) -> dict[str, torch.Tensor]:
    """What a dynamic backend traces or exports a network with: every named dim at :data:`TRACE_LENGTH`
    (or its max), and :data:`TRACE_BATCH` rows for a ``batch: true`` network."""
    sizes = {d: dims[d].clamp(TRACE_LENGTH) for t in spec.inputs.values() for _, d in t.named_dims}
    examples = example_inputs(spec, sizes)
    return batched(examples, TRACE_BATCH) if spec.batch else examples


def bucket_examples(spec: NetworkSpec, bucket: dict[str, int]) -> dict[str, torch.Tensor]:
    """:func:`example_inputs` at a static bucket's sizes, for a ``batch: true`` network with as many rows as the
    bucket's batch size: what a static backend traces. (Axis 0 of another network's tensor is its own: a
    SpeechT5 cache's layers.)"""
    examples = example_inputs(spec, bucket)
    return batched(examples, bucket.get(BATCH, 1)) if spec.batch else examples


def bucket_shapes(spec: NetworkSpec, bucket: dict[str, int] | None) -> dict[str, list[int | str]]:
    """Every input's and output's shape in ``bucket`` (None: a dynamic artifact), as the manifest records it.

    The bucket's sizes replace its dims, and axis 0 of a ``batch: true``
    network holds the bucket's batch size (1 unless the bucket says); a dim
    the bucket does not size keeps its name (``batch`` on a dynamic artifact).
    """
    sizes = {BATCH: 1, **bucket} if bucket is not None else {}
    shapes = {}
    for name, tensor in {**spec.inputs, **spec.outputs}.items():
        shape = [BATCH, *tensor.shape[1:]] if spec.batch else tensor.shape
        shapes[name] = [sizes.get(d, d) if isinstance(d, str) else d for d in shape]
    return shapes
