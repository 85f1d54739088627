"""Validate a freshly compiled artifact against its source program, every output at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..addon import DimSpec, NetworkSpec
from ..backends.base import example_inputs
from ..runtime.network import NetworkRunner
from ..tolerances import Tolerance

VALIDATION_LENGTHS = (7, 61)  # besides the trace length: catches lengths baked into a graph


@dataclass(frozen=True)
class OutputMismatch:
    """One output of one validation run that is off: wrong shape, or values beyond tolerance."""

    output: str
    sizes: dict[str, int]
    detail: str


class ValidationFailure(RuntimeError):
    """An artifact whose outputs differ from the reference program's; lists every mismatch."""

    def __init__(self, network: str, backend: str, mismatches: list[OutputMismatch]):
        self.mismatches = mismatches
        lines = [f"  {m.output} at {m.sizes}: {m.detail}" for m in mismatches]
        super().__init__(f"network '{network}' on backend '{backend}' does not match its program:\n" + "\n".join(lines))


def validation_sizes(spec: NetworkSpec, dims: dict[str, DimSpec], bucket: dict[str, int] | None) -> list[dict[str, int]]:
    """Sizes of the named dims to validate at: the bucket itself, or a few lengths up to each max."""
    names = {d for t in spec.inputs.values() for _, d in t.named_dims}
    if bucket is not None:
        return [{d: bucket.get(d, min(VALIDATION_LENGTHS[0], dims[d].max)) for d in names}]
    return [{d: min(n, dims[d].max) for d in names} for n in VALIDATION_LENGTHS]


class DeclaredShapeError(RuntimeError):
    """A program whose outputs differ from the shapes or dtypes its ``addon.yaml`` declares; lists them all."""


def check_declared_outputs(network: str, reference, dims: dict[str, DimSpec]) -> None:
    """Run the program at the validation lengths; every output must have its declared rank, sizes and dtype.

    Fixed sizes (the mel's last dim included) and named dims the inputs set are
    checked; a named dim that only an output has can take any size.
    """
    spec = reference.spec
    problems: list[str] = []
    for sizes in validation_sizes(spec, dims, None):
        with torch.inference_mode():
            got = reference(example_inputs(spec, sizes, seed=1))
        for name, declared in spec.outputs.items():
            where = f"networks.{network}.outputs.{name}"
            tensor = got[name]
            if tensor.dim() != len(declared.shape):
                problems.append(f"{where}.shape: declared {declared.shape}, the program returns {list(tensor.shape)} at {sizes}")
                continue
            for axis, (want, have) in enumerate(zip(declared.shape, tensor.shape)):
                want = sizes.get(want) if isinstance(want, str) else want
                if want is not None and want != have:
                    problems.append(f"{where}.shape[{axis}]: declared {declared.shape[axis]} = {want}, the program returns {have} at {sizes}")
            if tensor.dtype != declared.torch_dtype:
                problems.append(f"{where}.dtype: declared {declared.dtype}, the program returns {str(tensor.dtype).removeprefix('torch.')}")
    if problems:
        raise DeclaredShapeError("the program does not return what addon.yaml declares:\n    " + "\n    ".join(dict.fromkeys(problems)))


def compare(name: str, sizes: dict[str, int], got: torch.Tensor, want: torch.Tensor, tol: Tolerance) -> OutputMismatch | None:
    """A mismatch when shapes differ or the error exceeds the tolerance, else None."""
    if got.shape != want.shape:
        return OutputMismatch(name, sizes, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if want.numel() == 0:
        return None
    error = (got.double() - want.double()).abs().max().item()
    scale = want.double().abs().max().item()
    if not tol.passes(error, scale):
        return OutputMismatch(name, sizes, f"max abs error {error:.3g} > {tol.atol} + {tol.rtol} * {scale:.3g}")
    return None


def validate_runner(
    network: str, backend: str, reference, runner: NetworkRunner, dims: dict[str, DimSpec], bucket, tol: Tolerance
) -> None:
    """Run reference and artifact on the same inputs; raise :class:`ValidationFailure` listing all mismatches."""
    spec = runner.spec
    mismatches: list[OutputMismatch] = []
    for sizes in validation_sizes(spec, dims, bucket):
        inputs = example_inputs(spec, sizes, seed=1)
        with torch.inference_mode():
            want = reference(inputs)
            got = runner(inputs)
        for out in spec.outputs:
            mismatch = compare(out, sizes, got[out], want[out], tol)
            if mismatch:
                mismatches.append(mismatch)
    if mismatches:
        raise ValidationFailure(network, backend, mismatches)
