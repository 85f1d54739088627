"""The addon format: ``addon.yaml`` schema, loading, validation and the authoring helper.

An addon is a folder holding ``addon.yaml`` and one ``torch.export`` program
(``.pt2``) per named network. This module is the format and nothing else: it
imports no other part of ttsstack but :mod:`ttsstack.recurrent` (the operators
a program may contain), :mod:`ttsstack.pt2` (reading a program without
running its author's code) and :mod:`ttsstack.yamlfile` (bounded YAML), which
import only torch and yaml, so authoring tools and the runtime share one
definition of what a valid addon is.

Every validation error is an :class:`AddonError` whose message starts with the
dotted path of the offending entry (``networks.decoder.inputs.frames.shape[1]:
unknown dim 'T_frame'; known: T_frames, T_text``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .pt2 import ProgramFileError, read_program
from .recurrent import recurrent_as_ops
from .yamlfile import YamlError, load_yaml

ADDON_FILE = "addon.yaml"
FORMAT_VERSION = 2
"""The format this ttsstack writes. Format 2 adds vocoder networks (role ``vocoder``), key/value cache
states (``states.*.cache`` with ``position``/``cache_mask``), a ``speaker`` entry and runtime-filled noise
inputs; a format-1 file (none of those) loads as it is."""
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
}
MAX_SAMPLE_RATE = 384_000
MAX_N_FFT = 1 << 15  # the STFT and filterbank sizes scale with it
MAX_N_MELS = 512
MAX_DIM = 1 << 28  # largest value of a named dim: a waveform's samples too (2**28 is 3.4 hours at 22.05 kHz;
# 2**20, the bound before, refused a full-size VITS, whose 16,384 frames are 4.2 million samples)
MAX_BATCH = 64
"""Largest batch a ``batch: true`` network is exported for unless the addon's ``batch.max`` says less."""
BATCH = "batch"
"""The batch axis's name: its ``torch.export`` dim, its key in a static bucket, ``--buckets batch=...``."""


class AddonError(ValueError):
    """An addon that cannot be used; the message names the entry at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One named network input or output: its shape (ints or dim names) and dtype."""

    shape: list[int | str]
    dtype: Literal["float32", "float16", "int64", "int32", "bool"] = "float32"

    @property
    def torch_dtype(self) -> torch.dtype:
        """The dtype as a ``torch.dtype``."""
        return DTYPES[self.dtype]

    @property
    def named_dims(self) -> list[tuple[int, str]]:
        """``(axis, dim name)`` for every symbolic axis."""
        return [(axis, d) for axis, d in enumerate(self.shape) if isinstance(d, str)]


class StateSpec(_Strict):
    """A recurrent state: the output that becomes the named input at the next call.

    Keyed by the state input's name in ``NetworkSpec.states``; ``init`` fills
    the input at the first call. The pair must agree in shape and dtype.

    With ``cache: DIM`` the state is a key/value cache along the named dim
    ``DIM`` instead: the input holds a fixed number of slots (``DIM``'s size,
    the capacity the runtime picks), the output only this call's entry (size 1
    along ``DIM``, same shape otherwise), which the runtime writes into slot
    ``position`` (the network's ``position`` input, the call's index from 0).
    The network's ``cache_mask`` input (``[1, DIM]``) marks filled slots with 1,
    so it attends to them only. One kind for every backend: static backends
    compile the largest capacity (``dims.DIM.buckets[-1]``, else ``max``),
    dynamic ones size it per utterance to the steps it may take.
    """

    output: str
    init: float = 0.0
    cache: str | None = None


class StatefulSpec(_Strict):
    """Marks a network ``ttsstack compile`` derived to stream network ``of`` with kept states instead of windows.

    Each call takes a chunk of ``of``'s frames, the chunk's first frame
    index (input ``start``) and the sequence's length once known (input
    ``end``, else a larger number), and returns as many frames' worth of
    ``output`` steps, ``delay`` steps behind the chunk; its ``states`` carry
    what each convolution keeps (:mod:`ttsstack.compiler.stateful`).
    """

    of: str
    delay: int = Field(ge=0)
    output: str
    start: str
    end: str
    derivation: int = Field(ge=1)
    """The version of the derivation that wrote it: a compile by a later one derives the twin again."""


class NoiseSpec(_Strict):
    """A noise input the runtime fills: a standard normal draw times ``scale`` (VITS's sampling noise, say).

    Keyed by the input's name in ``NetworkSpec.noise``; the input is float
    with exactly one named dim. The draw at each step along that dim depends
    only on ``seed``, the input's name and the step's index
    (:func:`ttsstack.runtime.noise.noise_steps`), so a network streamed on
    overlapping windows gets the noise a whole-utterance run gets, and the
    same text gives the same audio. ``scale: 1.0`` leaves the scaling to the
    network (as VITS's ``noise_scale`` does); 0 makes it deterministic.
    """

    scale: float = 1.0
    seed: int = 0


class NetworkSpec(_Strict):
    """One exported network: where its program lives, its tensors and its receptive field.

    ``context`` is the receptive radius along the network's sequence dim: an
    output step depends only on inputs within that many steps either side.
    ``"unbounded"`` means the whole sequence matters (attention, RNNs).
    ``inputs`` and ``outputs`` are positional: the program is called with the
    inputs in the order listed and returns the outputs in the order listed
    (tools rewriting ``addon.yaml`` must keep key order).
    ``lengths`` / ``mask`` name an input the runtime fills itself with the true
    length (``[1]`` int64) or validity mask (``[1, T]``, 1 for real steps), so
    that static-shape backends can pad such a network exactly.
    ``position`` / ``cache_mask`` name the inputs the runtime fills for a
    network with ``cache`` states (see :class:`StateSpec`): the call's index
    (``[1]`` int64) and the mask of filled cache slots. ``noise`` names
    inputs the runtime fills with seeded noise (:class:`NoiseSpec`).
    ``batch: true`` says axis 0 of every input and output (declared ``1``)
    is a batch axis the program takes at any size up to the addon's
    ``batch.max`` (:attr:`AddonSpec.batch_dim`), so the runtime may run the calls of several streams as one
    (:mod:`~ttsstack.runtime.batching`); rows are independent, and steps
    past a row's length are ignored through the ``mask``/``lengths`` input.
    ``compare: spectrum`` (role ``vocoder`` only) has ``ttsstack parity``
    compare its waveform by log-mel spectrum (:data:`~ttsstack.tolerances.SPECTRUM`)
    instead of sample by sample: for a vocoder whose samples are chaotic in
    its inputs (a sine source whose phase is integrated over the sentence),
    where a float32 step moves samples far but not their spectrum.
    """

    role: str
    file: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    context: int | Literal["unbounded"] = "unbounded"
    lengths: str | None = None
    mask: str | None = None
    states: dict[str, StateSpec] = Field(default_factory=dict)
    position: str | None = None
    cache_mask: str | None = None
    noise: dict[str, NoiseSpec] = Field(default_factory=dict)
    batch: bool = False
    compare: Literal["samples", "spectrum"] = "samples"
    stateful: StatefulSpec | None = None

    @field_validator("context")
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be >= 0 or 'unbounded'")
        return value

    @model_validator(mode="after")
    def _spectrum_for_vocoders(self) -> "NetworkSpec":
        if self.compare == "spectrum" and self.role != "vocoder":
            raise ValueError(f"compare: 'spectrum' is for a waveform, a network of role vocoder; this one's role is {self.role!r}")
        return self

    @property
    def bounded(self) -> bool:
        """Whether the network can be run on overlapping windows."""
        return self.context != "unbounded"

    @property
    def derived_inputs(self) -> set[str]:
        """Inputs the runtime fills itself (lengths, mask, recurrent state, cache position and mask, noise)."""
        stream = {self.stateful.start, self.stateful.end} if self.stateful else set()
        return {n for n in (self.lengths, self.mask, self.position, self.cache_mask) if n} | set(self.states) | set(self.noise) | stream

    @property
    def cache_dims(self) -> set[str]:
        """The named dims along which ``cache`` states hold their slots."""
        return {state.cache for state in self.states.values() if state.cache}

    @property
    def data_inputs(self) -> dict[str, TensorSpec]:
        """Inputs read from other blocks' outputs."""
        return {n: s for n, s in self.inputs.items() if n not in self.derived_inputs}


class DimSpec(_Strict):
    """A named dynamic dim: its largest value, the sizes static backends compile, and its smallest value.

    ``min`` (default 1) is for programs that need a few steps: a convolution
    with reflect padding needs more steps than it pads. They are exported for
    ``min..max``; the runtime pads a shorter call of a network with a
    ``mask``/``lengths`` input up to ``min`` and crops its outputs, and refuses
    one without, naming the dim.
    """

    max: int = Field(gt=0, le=MAX_DIM)
    buckets: list[int] | None = None
    min: int = Field(default=1, gt=0, le=MAX_DIM)

    @model_validator(mode="after")
    def _check_buckets(self) -> "DimSpec":
        if self.min > self.max:
            raise ValueError(f"min: {self.min} exceeds max {self.max}")
        if self.buckets and self.buckets[0] < self.min:
            raise ValueError(f"buckets: smallest bucket {self.buckets[0]} is below min {self.min}")
        if self.buckets is None:
            return self
        if not self.buckets:
            raise ValueError("buckets: must not be empty (leave it out to use no buckets)")
        if any(b <= 0 for b in self.buckets):
            raise ValueError(f"buckets: sizes must be positive, got {self.buckets}")
        if any(a >= b for a, b in zip(self.buckets, self.buckets[1:])):
            raise ValueError(f"buckets: must be strictly increasing, got {self.buckets}")
        if self.buckets[-1] > self.max:
            raise ValueError(f"buckets: largest bucket {self.buckets[-1]} exceeds max {self.max}")
        return self

    def clamp(self, size: int) -> int:
        """``size`` within ``min..max``."""
        return max(self.min, min(size, self.max))


class AudioSpec(_Strict):
    """Mel and waveform settings the networks were trained with.

    Bounded so that a config cannot make the vocoder allocate without limit
    (``n_fft`` sizes the STFT and the mel filterbank), and consistent the way
    the mel analysis needs: ``hop_length <= win_length <= n_fft``, ``n_mels``
    at most the ``n_fft // 2 + 1`` frequency bins, ``0 <= fmin < fmax <=
    sample_rate / 2``.
    """

    sample_rate: int = Field(gt=0, le=MAX_SAMPLE_RATE)
    hop_length: int = Field(gt=0)
    win_length: int = Field(gt=0)
    n_fft: int = Field(gt=0, le=MAX_N_FFT)
    n_mels: int = Field(gt=0, le=MAX_N_MELS)
    fmin: float = Field(default=0.0, ge=0)
    fmax: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "AudioSpec":
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length: {self.win_length} exceeds n_fft {self.n_fft}")
        if self.hop_length > self.win_length:
            raise ValueError(f"hop_length: {self.hop_length} exceeds win_length {self.win_length} (frames would leave gaps)")
        if self.n_mels > self.n_fft // 2 + 1:
            raise ValueError(f"n_mels: {self.n_mels} exceeds the {self.n_fft // 2 + 1} frequency bins of n_fft {self.n_fft}")
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if fmax > nyquist:
            raise ValueError(f"fmax: {fmax} exceeds the Nyquist frequency sample_rate / 2 = {nyquist}")
        if self.fmin >= fmax:
            raise ValueError(f"fmin: {self.fmin} must be below fmax {fmax}")
        return self


class SpeakerSpec(_Strict):
    """A speaker embedding the caller chooses per call: written as tensor ``input`` (``[1, dim]`` float32).

    ``voices`` names embeddings shipped with the addon; the first is the
    default. A caller may also pass an embedding of its own.
    """

    input: str = Field(min_length=1)
    dim: int = Field(gt=0)
    voices: dict[str, list[float]] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_voices(self) -> "SpeakerSpec":
        for name, values in self.voices.items():
            if len(values) != self.dim:
                raise ValueError(f"voices.{name}: has {len(values)} values, dim is {self.dim}")
        return self


class FrontendSpec(BaseModel):
    """Text frontend settings; ``type`` picks a registered frontend, the rest is its own."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str


class AddonSpec(_Strict):
    """The whole ``addon.yaml``."""

    format: Literal[1, 2]
    name: str = Field(min_length=1)
    audio: AudioSpec
    frontend: FrontendSpec
    networks: dict[str, NetworkSpec]
    dims: dict[str, DimSpec] = Field(default_factory=dict)
    stack: list[dict[str, Any]]
    vocoder: dict[str, Any]
    speaker: SpeakerSpec | None = None
    batch: DimSpec | None = None

    @property
    def batch_dim(self) -> DimSpec:
        """The batch axis of ``batch: true`` networks: ``max`` rows (default :data:`MAX_BATCH`), and the batch
        sizes static backends compile, like a length dim's ``buckets`` (default 1 only: no batching there)."""
        return self.batch or DimSpec(max=MAX_BATCH, buckets=[1])

    @model_validator(mode="before")
    @classmethod
    def _default_vocoder(cls, data: Any) -> Any:
        """Without a ``vocoder`` entry: the addon's vocoder network (``{type: Network}``) when it has one
        (a network of role ``vocoder``), else Griffin-Lim."""
        if isinstance(data, Mapping) and "vocoder" not in data:
            networks = data.get("networks")
            roles = [n.get("role") for n in networks.values() if isinstance(n, Mapping)] if isinstance(networks, Mapping) else []
            data = {**data, "vocoder": {"type": "Network" if "vocoder" in roles else "GriffinLim"}}
        return data

    def networks_with_role(self, role: str) -> dict[str, NetworkSpec]:
        """The networks of one role, in file order."""
        return {n: s for n, s in self.networks.items() if s.role == role}

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to ``addon.yaml`` (a dim's ``min`` only where it is not 1)."""
        data = self.model_dump(mode="json", exclude_none=True)
        for dim in data.get("dims", {}).values():
            if dim.get("min") == 1:
                del dim["min"]
        return data


def _format_loc(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("int", "str", "literal['unbounded']", "function-after[_check_buckets(), DimSpec]"):
            continue  # pydantic's union-member tags add nothing for a reader
        else:
            path += f".{part}" if path else str(part)
    return path


def parse_spec(data: Mapping[str, Any], source: str = ADDON_FILE) -> AddonSpec:
    """Validate plain ``addon.yaml`` data into an :class:`AddonSpec`.

    Raises :class:`AddonError` listing every schema error with its path, then
    checks references between entries (dim names, state pairs, lengths/mask).
    """
    try:
        spec = AddonSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{_format_loc(err['loc'])}: {msg}")
        raise AddonError(f"{source}: invalid addon config:\n  " + "\n  ".join(dict.fromkeys(lines))) from None
    _check_references(spec, source)
    _check_format(spec, source)
    return spec


def format_2_entries(spec: AddonSpec) -> list[str]:
    """The paths of the entries that only format 2 has (empty for an addon that format 1 can say)."""
    entries = [field for field in ("speaker", "batch") if getattr(spec, field) is not None]
    for name, net in spec.networks.items():
        if net.role == "vocoder":
            entries.append(f"networks.{name}.role")
        entries += [f"networks.{name}.{field}" for field in ("position", "cache_mask") if getattr(net, field)]
        entries += [f"networks.{name}.states.{state}.cache" for state, spec_ in net.states.items() if spec_.cache]
        entries += [f"networks.{name}.noise.{noise}" for noise in net.noise]
        entries += [f"networks.{name}.batch"] if net.batch else []
    return entries


def _check_format(spec: AddonSpec, source: str) -> None:
    """A format-1 file may not use what format 2 added: an older ttsstack would misread it."""
    if spec.format >= 2:
        return
    newer = format_2_entries(spec)
    if newer:
        raise AddonError(
            f"{source}: {newer[0]}: needs `format: 2` (format 2 added vocoder networks, cache states, speakers, "
            f"noise inputs and batch axes); this file says format 1" + (f" (also: {', '.join(newer[1:])})" if newer[1:] else "")
        )


def _check_references(spec: AddonSpec, source: str) -> None:
    known = ", ".join(sorted(spec.dims)) or "(none)"
    if spec.batch is not None and spec.batch.buckets and spec.batch.buckets[0] != 1:
        raise AddonError(f"{source}: batch.buckets: must start with 1 (a lone stream runs at batch 1), got {spec.batch.buckets}")
    if BATCH in spec.dims and any(net.batch for net in spec.networks.values()):
        raise AddonError(
            f"{source}: dims.{BATCH}: `{BATCH}` names the batch axis of `batch: true` networks (the top-level "
            f"`batch:` entry); rename this dim"
        )
    for net_name, net in spec.networks.items():
        for kind, tensors in (("inputs", net.inputs), ("outputs", net.outputs)):
            for t_name, t_spec in tensors.items():
                for axis, dim in t_spec.named_dims:
                    if dim not in spec.dims:
                        raise AddonError(
                            f"{source}: networks.{net_name}.{kind}.{t_name}.shape[{axis}]: "
                            f"unknown dim '{dim}'; known: {known}"
                        )
        for field in ("lengths", "mask", "position", "cache_mask"):
            name = getattr(net, field)
            if name is not None and name not in net.inputs:
                raise AddonError(
                    f"{source}: networks.{net_name}.{field}: '{name}' is not an input of the network; "
                    f"inputs: {', '.join(net.inputs)}"
                )
        for noise_in in net.noise:
            path = f"{source}: networks.{net_name}.noise.{noise_in}"
            tensor = net.inputs.get(noise_in)
            if tensor is None:
                raise AddonError(f"{path}: '{noise_in}' is not an input of the network; inputs: {', '.join(net.inputs)}")
            if not tensor.torch_dtype.is_floating_point or len(tensor.named_dims) != 1:
                raise AddonError(
                    f"{path}: a noise input must be float with exactly one named dim (the steps it is drawn along), "
                    f"got {tensor.dtype} {tensor.shape}"
                )
        if net.batch:
            _check_batch(f"{source}: networks.{net_name}", net)
        if net.stateful is not None:
            _check_stateful(f"{source}: networks.{net_name}.stateful", net, spec)
        for state_in, state in net.states.items():
            path = f"{source}: networks.{net_name}.states.{state_in}"
            if state_in not in net.inputs:
                raise AddonError(f"{path}: state input '{state_in}' is not an input of the network")
            if state.output not in net.outputs:
                raise AddonError(f"{path}: state output '{state.output}' is not an output of the network")
            given, taken = net.inputs[state_in], net.outputs[state.output]
            if state.cache is not None:
                _check_cache(path, net, state_in, state.cache)
                expected = [1 if d == state.cache else d for d in given.shape]
                if taken.shape != expected:
                    raise AddonError(
                        f"{path}: cache output '{state.output}' must have shape {expected} (one slot along "
                        f"{state.cache}), got {taken.shape}"
                    )
            elif given.shape != taken.shape:
                raise AddonError(
                    f"{path}: input shape {given.shape} does not match output '{state.output}' shape {taken.shape}"
                )
            if given.dtype != taken.dtype:
                raise AddonError(f"{path}: input dtype {given.dtype} does not match output '{state.output}' dtype {taken.dtype}")


def _check_stateful(path: str, net: NetworkSpec, spec: "AddonSpec") -> None:
    """A stateful twin names a network of the addon, its own output, and two inputs of one int64 element."""
    stateful = net.stateful
    if stateful.of not in spec.networks or spec.networks[stateful.of].stateful is not None:
        raise AddonError(f"{path}.of: '{stateful.of}' is not a network of the addon it could stream")
    if stateful.output not in net.outputs:
        raise AddonError(f"{path}.output: '{stateful.output}' is not an output of the network")
    for field in ("start", "end"):
        name = getattr(stateful, field)
        tensor = net.inputs.get(name)
        if tensor is None or tensor.shape != [1] or tensor.dtype != "int64":
            raise AddonError(f"{path}.{field}: '{name}' must be an int64 input of shape [1]")


def _check_batch(path: str, net: NetworkSpec) -> None:
    """A ``batch`` network declares 1 at axis 0 of every tensor, and keeps no per-stream cache position."""
    for kind, tensors in (("inputs", net.inputs), ("outputs", net.outputs)):
        for name, tensor in tensors.items():
            if not tensor.shape or tensor.shape[0] != 1:
                raise AddonError(
                    f"{path}.{kind}.{name}.shape: a `batch: true` network declares 1 at axis 0 of every tensor "
                    f"(the batch axis), got {tensor.shape}"
                )
    if net.cache_dims:
        raise AddonError(
            f"{path}.batch: a network with cache states cannot be batched (its `position` input is one step "
            f"index for the whole call, but batched streams are at different steps); remove `batch: true`"
        )


def _check_cache(path: str, net: NetworkSpec, state_in: str, dim: str) -> None:
    """A ``cache`` state needs its dim on the input and the network's ``position`` and ``cache_mask`` inputs."""
    if dim not in net.inputs[state_in].shape:
        raise AddonError(f"{path}.cache: '{dim}' is not a dim of input '{state_in}' (shape {net.inputs[state_in].shape})")
    for field, expected in (("position", [1]), ("cache_mask", [1, dim])):
        name = getattr(net, field)
        if name is None:
            raise AddonError(f"{path}.cache: a cache state needs the network's `{field}:` input ({expected})")
        if net.inputs[name].shape != expected:
            raise AddonError(f"{path}.cache: {field} input '{name}' must have shape {expected}, got {net.inputs[name].shape}")


class Addon:
    """An addon folder: its validated spec and the paths of its networks."""

    def __init__(self, folder: Path, spec: AddonSpec):
        self.folder = folder
        self.spec = spec

    def resolve(self, relative: str, entry: str) -> Path:
        """The path of a file named in the config; refuses paths leaving the folder."""
        root = self.folder.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise AddonError(f"{self.folder / ADDON_FILE}: {entry}: path '{relative}' escapes the addon folder")
        return path

    def network_file(self, name: str) -> Path:
        """The ``.pt2`` file of one network, checked to exist inside the folder."""
        path = self.resolve(self.spec.networks[name].file, f"networks.{name}.file")
        if not path.is_file():
            raise AddonError(f"{self.folder / ADDON_FILE}: networks.{name}.file: '{path}' does not exist")
        return path

    def load_program(self, name: str) -> torch.export.ExportedProgram:
        """The network's ``torch.export`` program, read as untrusted input (:func:`~ttsstack.pt2.read_program`)."""
        try:
            return read_program(self.network_file(name))
        except ProgramFileError as exc:
            raise AddonError(f"networks.{name}.file: {exc}") from None


def load_addon(folder: str | Path) -> Addon:
    """Read and validate ``addon.yaml`` in ``folder``; every network file must be inside it."""
    folder = Path(folder)
    path = folder / ADDON_FILE
    if not path.is_file():
        raise AddonError(f"{folder}: not an addon folder (no {ADDON_FILE})")
    try:
        data = load_yaml(path.read_text(), str(path))
    except (YamlError, UnicodeDecodeError) as exc:
        raise AddonError(str(exc) if isinstance(exc, YamlError) else f"{path}: not UTF-8 text: {exc}") from None
    if not isinstance(data, dict):
        raise AddonError(f"{path}: expected a mapping at the top level")
    addon = Addon(folder, parse_spec(data, str(path)))
    for name in addon.spec.networks:
        addon.network_file(name)
    return addon


def dynamic_shapes_for(spec: AddonSpec, network: str) -> dict[str, dict[int, torch.export.Dim]]:
    """``torch.export`` dynamic shapes for one network, one shared ``Dim`` per named dim (and axis 0 of a batch network)."""
    dims = {name: torch.export.Dim(name, min=d.min, max=d.max) for name, d in spec.dims.items()}
    net = spec.networks[network]
    batch = {0: torch.export.Dim(BATCH, min=1, max=spec.batch_dim.max)} if net.batch else {}
    return {t_name: {**batch, **{axis: dims[dim] for axis, dim in t_spec.named_dims}} for t_name, t_spec in net.inputs.items()}


def batched(tensors: Mapping[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    """Batch-1 ``tensors`` repeated to ``size`` rows along axis 0.

    ``torch.export`` fixes an axis whose example size is 1, so a batch
    network is exported from (and the compiler checks it on) examples of two
    or more rows.
    """
    return {name: tensor.expand(size, *tensor.shape[1:]).contiguous() for name, tensor in tensors.items()}


def write_addon(
    folder: str | Path,
    spec: Mapping[str, Any],
    modules: Mapping[str, torch.nn.Module],
    example_inputs: Mapping[str, Mapping[str, torch.Tensor]],
) -> Addon:
    """Export each network with ``torch.export`` and write a complete addon folder.

    ``spec`` is the ``addon.yaml`` content; ``modules`` maps network names to
    modules whose ``forward`` takes the spec's inputs as keyword arguments in
    spec order; ``example_inputs`` gives one example per network (batch 1).
    Dynamic shapes come from the spec's named dims, and the batch axis of a
    ``batch: true`` network, so a program accepts exactly what its spec
    declares. Every ``nn.LSTM``/``nn.GRU`` is exported as a ttsstack
    operator (:func:`~ttsstack.recurrent.recurrent_as_ops`) so that its time
    axis stays dynamic. A shape condition ``torch.export`` cannot prove for
    every size of a dim (a transformer's relative-position shift needs two
    steps, say) becomes an assertion the program checks when it runs, not an
    export failure; the compiler then validates each artifact at several
    sizes. The folder is written afresh.
    """
    parsed = parse_spec(spec)
    missing = set(parsed.networks) - set(modules)
    if missing:
        raise AddonError(f"write_addon: no module given for networks: {', '.join(sorted(missing))}")
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    addon = Addon(folder, parsed)
    for name, net in parsed.networks.items():
        module = modules[name].eval()
        examples = batched(example_inputs[name], 2) if net.batch else example_inputs[name]
        args = tuple(examples[i] for i in net.inputs)
        dynamic = dynamic_shapes_for(parsed, name)
        with recurrent_as_ops(module):
            program = torch.export.export(
                module, args, dynamic_shapes=tuple(dynamic[i] for i in net.inputs),
                prefer_deferred_runtime_asserts_over_guards=True,
            )
        path = addon.resolve(net.file, f"networks.{name}.file")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, str(path))
    (folder / ADDON_FILE).write_text(yaml.safe_dump(parsed.to_dict(), sort_keys=False))
    return addon
