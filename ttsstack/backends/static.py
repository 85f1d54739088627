"""What static-shape backends share: one artifact per bucket, a strict runner, and the compile-time checks.

A static backend compiles each network once per bucket of its sequence dim
(``dims.<name>.buckets`` in ``addon.yaml``, or ``--buckets`` at compile time),
and a ``batch: true`` network once per bucket and batch size (``batch.buckets``,
or ``--buckets batch=1,4``). At run time :class:`StaticRunner` dispatches a
call to the artifact of exactly that size and batch, and refuses any other;
the block variants in :mod:`~ttsstack.backends.static_blocks` choose the
smallest fitting bucket, pad, fill the mask and crop.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import torch

from ..addon import BATCH, DimSpec, NetworkSpec
from ..runtime.network import NetworkRunner, Step, bind_inputs, sequence_dim, time_axis
from .base import Artifact, Backend, BackendError, NetworkArtifacts
from .static_blocks import StaticAutoregressiveDecoder, StaticDecoder, StaticNetworkBlock, StaticPostnet, StaticVocoder


MAX_STATIC_CACHE_SLOTS = 1 << 16
"""Most slots a ``cache`` dim may hold on a static backend: every artifact allocates them all (a dim's ``max``
may reach 2**28 for waveform samples; a cache that size would not fit in memory)."""


class StaticRunner:
    """A network's per-bucket artifacts behind one runner; a call must match a bucket exactly.

    ``static_lengths`` maps the sequence dim to the sorted bucket sizes (empty
    for a network without named dims, which has a single fixed-shape artifact),
    and each ``cache`` dim to its one compiled capacity (``cache_sizes``).
    ``batch_sizes`` are the sorted batch sizes compiled (``[1]`` unless a
    ``batch: true`` network has batch buckets): a call goes to the artifact of
    its batch size (axis 0) and length, and
    :class:`~ttsstack.runtime.batching.BatchingRunner` fills batches up to one of them.
    """

    def __init__(
        self, network: str, backend: str, spec: NetworkSpec, by_bucket: dict[tuple[int, int | None], NetworkRunner],
        cache_sizes: dict[str, int] | None = None,
    ):
        self.network = network
        self.backend = backend
        self.spec = spec
        self.dim = sequence_dim(spec)
        self.by_bucket = by_bucket
        self.batch_sizes = sorted({batch for batch, _ in by_bucket})
        self.static_lengths = {self.dim: sorted({length for _, length in by_bucket})} if self.dim else {}
        self.static_lengths.update({d: [size] for d, size in (cache_sizes or {}).items()})

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.artifact_for(inputs)(inputs)

    def bind(self, fixed: dict[str, torch.Tensor]) -> Step:
        """The artifact of the ``fixed`` inputs' bucket with them bound (:func:`bind_inputs`): one dispatch per binding."""
        return bind_inputs(self.artifact_for(fixed), fixed)

    def _where(self) -> str:
        return f"network '{self.network}' on backend '{self.backend}'"

    def artifact_for(self, inputs: dict[str, torch.Tensor]) -> NetworkRunner:
        """The artifact of the bucket the inputs' batch size and size along the sequence dim name; raises for
        sizes that are no bucket."""
        bucket = self._batch_of(inputs), self._length_of(inputs)
        runner = self.by_bucket.get(bucket)
        if runner is None:  # a compile that failed for some buckets
            compiled = ", ".join(self._bucket_name(*b) for b in sorted(self.by_bucket))
            raise BackendError(f"{self._where()}: no artifact for {self._bucket_name(*bucket)}; compiled: {compiled}")
        return runner

    def _bucket_name(self, batch: int, length: int | None) -> str:
        return f"batch {batch}" + (f" {self.dim}={length}" if self.dim else "")

    def _batch_of(self, inputs: dict[str, torch.Tensor]) -> int:
        """The call's batch size (axis 0 of a ``batch: true`` network's inputs, else 1); raises for one not compiled."""
        if not self.spec.batch or not inputs:
            return 1
        name, tensor = next(iter(inputs.items()))
        batch = tensor.shape[0]
        if batch not in self.batch_sizes:
            raise BackendError(
                f"{self._where()}: input '{name}' has batch {batch}, but the compiled artifacts take only batch "
                f"sizes {self.batch_sizes} (static shapes: compile more with the addon's batch.buckets or "
                f"--buckets batch=1,N,...)"
            )
        return batch

    def _length_of(self, inputs: dict[str, torch.Tensor]) -> int | None:
        """The call's size along the sequence dim (None for a network without one); raises for one that is no bucket."""
        if not self.dim:
            return None
        for name, tensor in self.spec.inputs.items():
            axis = next((a for a, d in tensor.named_dims if d == self.dim), None)
            if axis is not None and name in inputs:
                size = inputs[name].shape[axis]
                if size not in self.static_lengths[self.dim]:
                    raise BackendError(
                        f"{self._where()}: input '{name}' has {self.dim}={size}, but the compiled artifacts accept "
                        f"only {self.dim} in {self.static_lengths[self.dim]} (static shapes: pad with the backend's "
                        f"block variants)"
                    )
                return size
        raise BackendError(
            f"{self._where()}: none of the inputs {', '.join(inputs)} is along {self.dim}, so no bucket can be chosen"
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

    def buckets(
        self, spec: NetworkSpec, dims: dict[str, DimSpec], batch_sizes: Sequence[int] = (1,)
    ) -> list[dict[str, int] | None]:
        """One bucket per size of the network's sequence dim (per batch size of a ``batch: true`` network);
        raises when padding could not be exact.

        A ``batch: true`` network gets every length bucket at every one of
        ``batch_sizes`` (the addon's ``batch.buckets``), compiled like length
        buckets; a bucket of more than one row says so under :data:`~ttsstack.addon.BATCH`
        (``{"T_text": 16, "batch": 4}``), one of a single row keeps the name and cache key it had before.

        A network is refused when it has several named dims, when its dim has
        no buckets, when padding could change its outputs (context above 0 or
        unbounded) and it declares no ``mask``/``lengths`` input, or when the
        largest bucket leaves no room for its context on both sides. A
        ``cache`` dim is not bucketed: every artifact holds its largest bucket
        (else its ``max``) of slots, the fixed-size cache of :class:`~ttsstack.addon.StateSpec`.
        """
        lengths = self._length_buckets(spec, dims)
        if not spec.batch:
            return lengths
        return [{**bucket, BATCH: batch} if batch > 1 else bucket for batch in batch_sizes for bucket in lengths]

    def _length_buckets(self, spec: NetworkSpec, dims: dict[str, DimSpec]) -> list[dict[str, int]]:
        """The buckets of the sequence dim (and the cache dims' capacity), checked as :meth:`buckets` says."""
        caches = {d: (dims[d].buckets or [dims[d].max])[-1] for d in spec.cache_dims}
        for d, slots in caches.items():
            if slots > MAX_STATIC_CACHE_SLOTS:
                raise BackendError(
                    f"cache dim '{d}' holds {slots} slots in every artifact of static backend '{self.name}' "
                    f"(its largest bucket, else its max), over {MAX_STATIC_CACHE_SLOTS}: give dims.{d}.buckets "
                    f"a size the decoder needs, or a smaller max"
                )
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
        by_bucket, cache_sizes = {}, {}
        for artifact in network.artifacts:
            bucket = artifact.bucket or {}
            by_bucket[bucket.get(BATCH, 1), bucket.get(dim)] = self.load_artifact(network.name, network.spec, artifact)
            cache_sizes.update({d: bucket[d] for d in network.spec.cache_dims if d in bucket})
        return StaticRunner(network.name, self.name, network.spec, by_bucket, cache_sizes)

    @abstractmethod
    def load_artifact(self, network: str, spec: NetworkSpec, artifact: Artifact) -> NetworkRunner:
        """A runner for one bucket's artifact (accepting only that bucket's shapes)."""
