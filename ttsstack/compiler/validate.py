"""Validate a freshly compiled artifact against its source program, every output at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..addon import BATCH, DimSpec, NetworkSpec
from ..backends.base import example_inputs
from ..runtime.batching import join_calls, padded_dim, split_outputs
from ..runtime.network import NetworkRunner, crop_steps, pad_steps, sequence_dim, with_length_inputs
from ..tolerances import BATCHED, Tolerance

VALIDATION_LENGTHS = (7, 61)  # besides the trace length: catches lengths baked into a graph
VALIDATION_BATCH = 3  # rows a dynamic batch artifact is checked at: neither 1 nor the trace's 2 (TRACE_BATCH)


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
        return [{d: bucket.get(d, dims[d].clamp(VALIDATION_LENGTHS[0])) for d in names}]
    return [{d: dims[d].clamp(n) for d in names} for n in VALIDATION_LENGTHS]


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


def batched_runs(spec: NetworkSpec, runner: NetworkRunner, reference, dims: dict[str, DimSpec], bucket: dict[str, int] | None = None):
    """Two calls run as one batch the way the runtime batches streams, each row with the reference's run of it alone.

    The second call is shorter along the network's :func:`~ttsstack.runtime.batching.padded_dim`
    (about two thirds), so its row is padded and its mask says so. For a
    static ``bucket`` the first call has the bucket's length and the rows are
    filled up to its batch size (:data:`~ttsstack.addon.BATCH`), as the runtime
    fills them; without one the first call is the longer validation length
    and the rows are filled to :data:`VALIDATION_BATCH`.
    Returns ``(sizes, got, want)`` per call, as :func:`validate_runner` compares them.
    """
    sizes = validation_sizes(spec, dims, bucket)[-1]
    dim = padded_dim(spec)
    shorter = {**sizes, dim: padded_length(sizes[dim])} if dim else sizes
    calls = [example_inputs(spec, sizes, seed=4), example_inputs(spec, shorter, seed=5)]
    with torch.inference_mode():
        joined, lengths = join_calls(spec, calls, (bucket or {}).get(BATCH, VALIDATION_BATCH))
        got = split_outputs(spec, runner(joined), lengths)
        want = [reference(call) for call in calls]
    return [({"batch row": row, **(sizes if row == 0 else shorter)}, got[row], want[row]) for row in range(2)]


class BatchRowsError(RuntimeError):
    """A ``batch: true`` program that does not run calls as independent rows of one batch."""


def check_batch_rows(network: str, reference, dims: dict[str, DimSpec]) -> None:
    """Run the program on a batch of two calls of different lengths; each row must equal the call run alone.

    Raises :class:`BatchRowsError` for a program exported without a batch
    axis, or one whose rows leak into each other or past their mask.
    """
    where = f"networks.{network}.batch"
    try:
        runs = batched_runs(reference.spec, reference, reference, dims)
    except Exception as exc:  # noqa: BLE001 - any failure at batch 2 means the program has no batch axis
        raise BatchRowsError(
            f"{where}: true, but the program does not run a batch of 2 ({type(exc).__name__}: {exc}); "
            f"export it with a dynamic axis 0 (ttsstack.write_addon does for `batch: true` networks)"
        ) from None
    problems = [m.detail for sizes, got, want in runs for out in got if (m := compare(out, sizes, got[out], want[out], BATCHED))]
    if problems:
        raise BatchRowsError(
            f"{where}: true, but a row of a batch differs from the same call alone (does the network ignore "
            f"steps its mask marks as padding?): " + "; ".join(problems)
        )


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


def padded_length(size: int) -> int:
    """How many real steps the padded validation puts in a bucket of ``size``: about two thirds."""
    return max(1, (2 * size) // 3)


def _padded_run(spec: NetworkSpec, runner: NetworkRunner, reference, bucket: dict[str, int], dim: str):
    """Outputs of ``runner`` on real inputs padded to the bucket's ``dim`` (mask zeros, lengths short), cropped, and the reference's.

    The reference runs on the same inputs unpadded. Only the network's
    ``mask``/``lengths`` inputs tell it which steps are real, so a network
    that declares one but ignores it differs here. Other dims of the bucket
    (a ``cache`` dim) keep their size; an output along another named dim (a
    vocoder's samples) is cropped in proportion.
    """
    size = bucket[dim]
    valid = padded_length(size)
    inputs = example_inputs(spec, {**bucket, dim: valid}, seed=2)
    padded = {}
    for name, tensor in inputs.items():
        axis = next((a for a, d in spec.inputs[name].named_dims if d == dim), None)
        if axis is None:
            padded[name] = tensor
            continue
        padded[name] = pad_steps(tensor, axis, size)
    padded = with_length_inputs(spec, padded, size, valid)
    with torch.inference_mode():
        want, got = reference(inputs), runner(padded)
    cropped = {}
    for name, out in got.items():
        # along dim itself, or one other named dim that is not a fixed dim of the bucket (a vocoder's samples)
        named = [(a, d) for a, d in spec.outputs[name].named_dims if d not in bucket or d == dim]
        same = [a for a, d in named if d == dim]
        axis = same[0] if same else (named[0][0] if len(named) == 1 else None)
        cropped[name] = out if axis is None else crop_steps(out, axis, size, 0, valid)
    return {dim: valid, f"padded to {dim}": size}, cropped, want


def _single_runs(spec: NetworkSpec, runner: NetworkRunner, reference, dims: dict[str, DimSpec], bucket):
    """Runs of one call each: at the validation sizes, and padded to a static bucket (:func:`_padded_run`)."""
    runs = []
    for sizes in validation_sizes(spec, dims, bucket):
        inputs = example_inputs(spec, sizes, seed=1)
        with torch.inference_mode():
            runs.append((sizes, runner(inputs), reference(inputs)))
    dim = sequence_dim(spec)
    if bucket and dim in bucket and bucket[dim] > 1:
        runs.append(_padded_run(spec, runner, reference, bucket, dim))
    return runs


def validate_runner(
    network: str, backend: str, reference, runner: NetworkRunner, dims: dict[str, DimSpec], bucket, tol: Tolerance
) -> None:
    """Run reference and artifact on the same inputs; raise :class:`ValidationFailure` listing all mismatches.

    A static artifact is also run with real padding: inputs of about two
    thirds of its bucket, zero-padded, with the ``mask``/``lengths`` inputs
    saying so, against the unpadded reference run. A dynamic artifact of a
    ``batch: true`` network also runs two calls as one batch
    (:func:`batched_runs`), within the backend's tolerance plus ``BATCHED``;
    a static artifact of a batch bucket runs only such a batch, one call of
    the bucket's length and one shorter, padded, the rows filled to its batch size.
    """
    spec = runner.spec
    if (bucket or {}).get(BATCH, 1) > 1:  # a static artifact of several rows runs batches only
        checks = [(run, tol.plus(BATCHED)) for run in batched_runs(spec, runner, reference, dims, bucket)]
    else:
        checks = [(run, tol) for run in _single_runs(spec, runner, reference, dims, bucket)]
        if spec.batch and bucket is None:
            checks += [(run, tol.plus(BATCHED)) for run in batched_runs(spec, runner, reference, dims)]
    mismatches = [
        mismatch
        for (sizes, got, want), limit in checks
        for out in spec.outputs
        if (mismatch := compare(out, sizes, got[out], want[out], limit))
    ]
    if mismatches:
        raise ValidationFailure(network, backend, mismatches)


class ContextTooSmall(RuntimeError):
    """A bounded network whose output moves farther from a perturbed input step than its declared ``context``."""


def measured_radius(spec: NetworkSpec, module, dims: dict[str, DimSpec]) -> tuple[int, str] | None:
    """How far (in steps of the sequence dim) an output moves when one input step in the middle changes.

    Each data input along the sequence dim is perturbed at the centre step
    (floats +1, integer ids flipped between 0 and 1) and every output compared
    with the unperturbed run; an output along another named dim (a vocoder's
    samples) is mapped back to input steps by the ratio of lengths. Returns
    the farthest distance seen and where, or None for a network that is not
    probed (unbounded, stateful, or without a sequence dim). The distance is a
    lower bound of the true radius: a probe never blames a true declaration.
    """
    dim = sequence_dim(spec)
    if dim is None or not spec.bounded or spec.states:
        return None
    length = min(dims[dim].max, 4 * spec.context + 17)
    centre = length // 2
    sizes = {d: length for t in spec.inputs.values() for _, d in t.named_dims}
    inputs = example_inputs(spec, sizes, seed=3)
    with torch.inference_mode():
        base = reference_outputs(spec, module, inputs)
    farthest, where = 0, ""
    for name, tensor in spec.data_inputs.items():
        axis = next((a for a, d in tensor.named_dims if d == dim), None)
        if axis is None:
            continue
        moved = inputs[name].clone()
        step = moved.narrow(axis, centre, 1)
        step.copy_(step + 1 if moved.is_floating_point() else 1 - step.clamp(0, 1))
        with torch.inference_mode():
            out = reference_outputs(spec, module, {**inputs, name: moved})
        for out_name, out_spec in spec.outputs.items():
            named = out_spec.named_dims
            if not named:
                continue
            out_axis = named[0][0]
            diff = (out[out_name] - base[out_name]).abs().double()
            scale = base[out_name].abs().max().item()
            changed = diff.movedim(out_axis, 0).reshape(diff.shape[out_axis], -1).amax(1) > 1e-5 * scale + 1e-7
            per_step = out[out_name].shape[out_axis] / length
            for index in changed.nonzero().flatten().tolist():
                distance = abs(int(index // per_step) - centre)
                if distance > farthest:
                    farthest, where = distance, f"input '{name}' step {centre} moved output '{out_name}' at step {int(index // per_step)}"
    return farthest, where


def reference_outputs(spec: NetworkSpec, module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The program's outputs by name for named inputs (the inputs passed in spec order)."""
    out = module(*(inputs[n] for n in spec.inputs))
    return dict(zip(spec.outputs, (out,) if isinstance(out, torch.Tensor) else out))


def check_context(network: str, spec: NetworkSpec, module, dims: dict[str, DimSpec]) -> None:
    """Raise :class:`ContextTooSmall` when the probe sees the network reach farther than its declared ``context``."""
    measured = measured_radius(spec, module, dims)
    if measured and measured[0] > spec.context:
        distance, where = measured
        raise ContextTooSmall(
            f"network '{network}' declares context {spec.context}, but its output reaches {distance} steps: "
            f"perturbing {where}; streaming on windows would not be exact: declare context: {distance} or more "
            f"(or 'unbounded')"
        )
