"""What static-shape backends share: one artifact per bucket, a strict runner, and the compile-time checks.

A static backend compiles each network once per bucket of its sequence dim
(``dims.<name>.buckets`` in ``addon.yaml``, or ``--buckets`` at compile time).
At run time :class:`StaticRunner` dispatches a call to the artifact of exactly
that size and refuses any other; the block variants in
:mod:`~ttsstack.backends.static_blocks` choose the smallest fitting bucket,
pad, fill the mask and crop.
"""

from __future__ import annotations

from abc import abstractmethod
import torch

from ..addon import DimSpec, NetworkSpec
from ..runtime.network import NetworkRunner, Step, bind_inputs, sequence_dim, time_axis
from .base import Artifact, Backend, BackendError, NetworkArtifacts
from .static_blocks import StaticAutoregressiveDecoder, StaticDecoder, StaticNetworkBlock, StaticPostnet, StaticVocoder


class StaticRunner:
    """A network's per-bucket artifacts behind one runner; a call must match a bucket exactly.

    ``static_lengths`` maps the sequence dim to the sorted bucket sizes (empty
    for a network without named dims, which has a single fixed-shape artifact),
    and each ``cache`` dim to its one compiled capacity (``cache_sizes``).
    """

    def __init__(
        self, network: str, backend: str, spec: NetworkSpec, by_size: dict[int | None, NetworkRunner],
        cache_sizes: dict[str, int] | None = None,
    ):
        self.network = network
        self.backend = backend
        self.spec = spec
        self.dim = sequence_dim(spec)
        self.by_size = by_size
        self.static_lengths = {self.dim: sorted(by_size)} if self.dim else {}
        self.static_lengths.update({d: [size] for d, size in (cache_sizes or {}).items()})

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._artifact_for(inputs)(inputs)

    def bind(self, fixed: dict[str, torch.Tensor]) -> Step:
        """The artifact of the ``fixed`` inputs' bucket with them bound (:func:`bind_inputs`): one dispatch per binding."""
        return bind_inputs(self._artifact_for(fixed), fixed)

    def _artifact_for(self, inputs: dict[str, torch.Tensor]) -> NetworkRunner:
        """The artifact of the bucket the inputs' size along the sequence dim names; raises for a size that is no bucket."""
        if not self.dim:
            return self.by_size[None]
        for name, tensor in self.spec.inputs.items():
            axis = next((a for a, d in tensor.named_dims if d == self.dim), None)
            if axis is not None and name in inputs:
                size = inputs[name].shape[axis]
                runner = self.by_size.get(size)
                if runner is None:
                    raise BackendError(
                        f"network '{self.network}' on backend '{self.backend}': input '{name}' has {self.dim}={size}, "
                        f"but the compiled artifacts accept only {self.dim} in {self.static_lengths[self.dim]} "
                        f"(static shapes: pad with the backend's block variants)"
                    )
                return runner
        raise BackendError(
            f"network '{self.network}' on backend '{self.backend}': none of the inputs {', '.join(inputs)} "
            f"is along {self.dim}, so no bucket can be chosen"
        )


class StaticBackend(Backend):
    """Base of backends that compile one fixed-shape artifact per bucket (``onnx-static``, ``neuron``)."""

    static = True
    block_variants = {
        "Network": StaticNetworkBlock,
        "Decoder": StaticDecoder,
        "Postnet": StaticPostnet,
        "AutoregressiveDecoder": StaticAutoregressiveDecoder,
        "Vocoder": StaticVocoder,
    }

    def buckets(self, spec: NetworkSpec, dims: dict[str, DimSpec]) -> list[dict[str, int] | None]:
        """One bucket per size of the network's sequence dim; raises when padding could not be exact.

        A network is refused when it has several named dims, when its dim has
        no buckets, when padding could change its outputs (context above 0 or
        unbounded) and it declares no ``mask``/``lengths`` input, or when the
        largest bucket leaves no room for its context on both sides. A
        ``cache`` dim is not bucketed: every artifact holds its largest bucket
        (else its ``max``) of slots, the fixed-size cache of :class:`~ttsstack.addon.StateSpec`.
        """
        caches = {d: (dims[d].buckets or [dims[d].max])[-1] for d in spec.cache_dims}
        named = sorted({d for t in spec.inputs.values() for _, d in t.named_dims} - set(caches))
        if not named:
            return [dict(caches)]
        if len(named) > 1:
            raise BackendError(
                f"inputs have several named dims ({', '.join(named)}); static backend '{self.name}' "
                f"pads one sequence dim per network"
            )
        (dim,) = named
        sizes = dims[dim].buckets
        if not sizes:
            raise BackendError(
                f"dim '{dim}' has no buckets, and static backend '{self.name}' compiles one artifact per bucket: "
                f"add dims.{dim}.buckets to addon.yaml or pass --buckets {dim}=N,N,..."
            )
        if (not spec.bounded or spec.context > 0) and not (spec.mask or spec.lengths):
            reach = "every output" if not spec.bounded else f"the outputs within {spec.context} steps of a piece's end"
            raise BackendError(
                f"context {spec.context} and no mask or lengths input: static backend '{self.name}' pads pieces "
                f"to a {dim} bucket, and padding would change {reach}; declare `mask: INPUT` (a [1, {dim}] "
                f"input, 1 for real steps) or `lengths: INPUT` (a [1] int64 input) in the network's entry, "
                f"and make the network ignore padded steps (a convolutional network, e.g. a HiFi-GAN vocoder: "
                f"export it wrapped in ttsstack.masking.MaskedConvolutions)"
            )
        if spec.bounded:
            if sizes[-1] <= 2 * spec.context:
                raise BackendError(
                    f"largest {dim} bucket {sizes[-1]} leaves no room for context {spec.context} on each side "
                    f"of a window; add a bucket larger than {2 * spec.context}"
                )
            missing = [n for n, t in spec.outputs.items() if time_axis(t, dim) is None]
            if missing:
                raise BackendError(
                    f"output(s) {', '.join(missing)} have no {dim} axis (nor one other named dim along it), so the "
                    f"bounded network cannot run on windows; declare `context: unbounded` if they depend on the "
                    f"whole sequence"
                )
        return [{dim: size, **caches} for size in sizes]

    def load(self, network: NetworkArtifacts) -> StaticRunner:
        dim = sequence_dim(network.spec)
        by_size, cache_sizes = {}, {}
        for artifact in network.artifacts:
            bucket = artifact.bucket or {}
            by_size[bucket.get(dim)] = self.load_artifact(network.name, network.spec, artifact)
            cache_sizes.update({d: bucket[d] for d in network.spec.cache_dims if d in bucket})
        return StaticRunner(network.name, self.name, network.spec, by_size, cache_sizes)

    @abstractmethod
    def load_artifact(self, network: str, spec: NetworkSpec, artifact: Artifact) -> NetworkRunner:
        """A runner for one bucket's artifact (accepting only that bucket's shapes)."""
