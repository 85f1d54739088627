"""Turns an addon's ``stack`` config into blocks and checks the wiring before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..addon import MAX_BATCH, AddonSpec, TensorSpec
from .blocks.base import Block, StackError, StreamableBlock, TensorInfo, Wiring, config_of
from .network import NetworkRunner
from .registry import BLOCKS, RegistryError
from .vocoders import build_vocoder

FRONTEND_OUTPUT = "tokens"
MAX_BATCH_WAIT_MS = 1000.0
"""Longest a batched call may wait for other streams: beyond it, waiting costs more first audio than batching saves."""
SPEED = "speed"
"""Per-call speaking rate, float32 ``[1]``, set by the caller of ``Voice.stream`` (1.0: as trained)."""


@dataclass
class RuntimeOptions:
    """Load-time knobs of the streaming blocks (per voice, not per call).

    ``first_chunk_frames`` is the (smaller) first chunk the upsampler and
    decoders emit, which sets time to first audio; chunks then double up to
    ``chunk_frames`` (8, 16, 32, ..., 256, 256, ...: see ``chunk_sizes``); each
    block's first chunk also holds the lookahead of the blocks after it, so
    an autoregressive decoder's first audio comes after 8 steps plus its
    postnet's context and the vocoder's (20 for Tacotron 2 with Griffin-Lim). Later
    chunks need only stay ahead of playback, and long ones cost less per
    frame (each decoder window recomputes its context): 256 frames (3 s at
    22.05 kHz, hop 256) instead of 128 made the demo's mel of 4,011
    characters 22% faster. A later sentence goes on with the schedule
    (its first chunk as long as what the sentences before it streamed), so
    only the utterance starts small. ``sentence_split`` synthesizes one sentence
    at a time (first audio after the first sentence); off, sentences are
    packed into pieces as long as the encoders accept. ``vocoder`` names a
    vocoder type that replaces the addon's ``vocoder`` entry (``GriffinLim``
    speaks the demo without its vocoder network); None keeps the addon's.
    ``batch`` is the most streams whose calls of one ``batch: true`` network
    run as one batched call (:mod:`~ttsstack.runtime.batching`); 1 runs every
    call alone. ``batch_wait_ms`` is the most a call waits for the other
    streams that called that network last time: 2 ms is a fraction of a
    decoder step on a CPU; an accelerator whose calls cost more may gather
    larger batches with a longer wait. ``vocoder_thread`` decodes a stream's
    mel in a thread of its own, at most one chunk ahead of the vocoder
    (:mod:`~ttsstack.runtime.prefetch`), so the two compute at once; the
    audio is the same. Word timings (``timings=True``) take the one-thread
    path either way. ``stateful_vocoder`` streams a vocoder network through
    the stateful twin ``ttsstack compile`` derived for it, where the backend
    has one (:mod:`~ttsstack.runtime.stateful`): every frame vocoded once,
    instead of windows that recompute their context; the audio is the same.
    """

    chunk_frames: int = 256
    first_chunk_frames: int = 8
    sentence_split: bool = True
    vocoder: str | None = None
    batch: int = 1
    batch_wait_ms: float = 2.0
    vocoder_thread: bool = True
    stateful_vocoder: bool = True

    def __post_init__(self) -> None:
        if self.chunk_frames < 1 or self.first_chunk_frames < 1:
            raise ValueError("chunk_frames and first_chunk_frames must be >= 1")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"batch must be between 1 and {MAX_BATCH} (streams per batched call), got {self.batch}")
        if not 0 <= self.batch_wait_ms <= MAX_BATCH_WAIT_MS:
            raise ValueError(f"batch_wait_ms must be between 0 and {MAX_BATCH_WAIT_MS}, got {self.batch_wait_ms}")


@dataclass
class BuildContext:
    """What blocks need while being built: the addon spec, network runners, backend variants."""

    spec: AddonSpec
    runners: Mapping[str, NetworkRunner]
    variants: Mapping[str, type] = field(default_factory=dict)
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    read_names: set[str] = field(default_factory=set)
    """Filled by :func:`build_stack`: every tensor a block of the stack reads."""

    def build(self, raw: Any, path: str) -> Block:
        """Build one block (and, recursively, its children) from its config dict."""
        if not isinstance(raw, dict) or "type" not in raw:
            raise StackError(f"{path}: a block entry must be a mapping with a 'type', got {raw!r}")
        try:
            cls = BLOCKS.get(raw["type"])
        except RegistryError as exc:
            raise StackError(f"{path}.type: {exc}") from None
        cls = self.variants.get(raw["type"], cls)
        return cls(config_of(cls, raw, path), self, path)

    def runner(self, network: str, path: str) -> NetworkRunner:
        """The runner of a named network; unknown names list the addon's networks."""
        if network not in self.runners:
            raise StackError(f"{path}: unknown network '{network}'; networks: {', '.join(self.spec.networks)}")
        return self.runners[network]


def initial_wiring(spec: AddonSpec) -> Wiring:
    """The tensors that exist before any block runs: the frontend's ``tokens``, the call's ``speed``
    and, when the addon declares ``speaker:``, the call's speaker embedding."""
    tensors = {
        FRONTEND_OUTPUT: TensorInfo.of(TensorSpec(shape=[1, "T_text"], dtype="int64"), "frontend"),
        SPEED: TensorInfo.of(TensorSpec(shape=[1], dtype="float32"), "the call (Voice.stream speed=)"),
    }
    if spec.speaker is not None:
        embedding = TensorSpec(shape=[1, spec.speaker.dim], dtype="float32")
        tensors[spec.speaker.input] = TensorInfo.of(embedding, "the call (Voice.stream speaker=)")
    return Wiring(tensors)


def build_stack(ctx: BuildContext) -> tuple[StreamableBlock, str, Any]:
    """Build the addon's ``stack`` into one streamable block, and its vocoder; return both and the stack's stream name.

    A stack of several entries is a :class:`StreamableStack`. The check runs
    the whole wiring now, so mistakes surface at load. The stack produces
    frames ``[1, T, C]`` (mel, or the latent frames a vocoder network takes);
    the addon's ``vocoder`` entry turns them into a waveform
    (:func:`~ttsstack.runtime.vocoders.build_vocoder`).
    """
    raw = ctx.spec.stack
    if not raw:
        raise StackError("stack: is empty; it needs at least one streamable block")
    root = ctx.build(raw[0], "stack[0]") if len(raw) == 1 else ctx.build({"type": "StreamableStack", "stack": raw}, "")
    if not isinstance(root, StreamableBlock):
        raise StackError(f"{root.label}: the top of the stack must be a streamable block (it produces the mel stream)")
    wiring = initial_wiring(ctx.spec)
    out = root.check(wiring, None)
    if wiring.tensors[out].rank != 3:
        raise StackError(
            f"{root.label}: the stack must end in frames [1, T, C], but it ends in '{out}' of rank "
            f"{wiring.tensors[out].rank}; a vocoder network goes in the addon's `vocoder:` entry, not in the stack"
        )
    ctx.read_names = wiring.read_names
    vocoder = build_vocoder(ctx, wiring, out)
    root.set_downstream(getattr(vocoder, "lookahead", 0))
    return root, out, vocoder


class _SpecOnlyRunner:
    """Stands in for a network when only the stack's structure is wanted (inspect, compile checks)."""

    static_lengths = None

    def __init__(self, spec):
        self.spec = spec

    def __call__(self, inputs):
        raise RuntimeError("a stack planned without loaded networks cannot run")


def plan_stack(spec: AddonSpec, variants: Mapping[str, type] | None = None) -> StreamableBlock:
    """Build and check the stack without loading any network: wiring errors surface here."""
    runners = {name: _SpecOnlyRunner(net) for name, net in spec.networks.items()}
    root, _, _ = build_stack(BuildContext(spec, runners, variants or {}))
    return root
