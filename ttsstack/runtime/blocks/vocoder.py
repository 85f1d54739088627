"""The vocoder block: a network of role ``vocoder`` run over the frame stream, waveform out, with exact overlap."""

from __future__ import annotations

from ..registry import BLOCKS
from ..stateful import stream_stateful
from .base import BlockConfig, StackError, Stream, TensorInfo, Tensors, Wiring
from .decoder import Decoder
from .windows import Window, chunk_sizes, prior_frames


@BLOCKS.register("Vocoder")
class Vocoder(Decoder):
    """Runs a vocoder network (default: the one with role ``vocoder``) on the stack's frames; streams its waveform.

    The network takes one frame input (``[1, T_frames, C]``: mel, or the
    latent frames of a model that ends in a waveform) besides its optional
    ``mask``/``lengths``, and returns one output along another named dim
    (``[1, T_samples]``), a whole number of samples per frame. With a bounded
    ``context`` (its receptive radius in frames) it runs on windows with that
    many frames of overlap each side and keeps the samples of the middle
    frames, so the streamed waveform equals a whole run's; ``context:
    unbounded`` runs it once on each chunk it gets: the Voice then gathers
    each piece's frames into one chunk (:attr:`piece_frames`), so such a
    vocoder speaks a sentence as soon as its frames are decoded.

    Where ``ttsstack compile`` derived a stateful twin of the network (a
    network whose ``stateful.of`` names it) and the backend loaded it, a
    bounded vocoder runs that instead (unless ``RuntimeOptions.stateful_vocoder``
    is off): each chunk of frames once as it arrives, the convolutions'
    states carried between calls, the same samples without windows
    (:mod:`~ttsstack.runtime.stateful`).

    Besides its frames it may take the call's speaker embedding (the input
    the addon's ``speaker:`` entry names), as a multi-speaker HiFi-GAN or
    VITS's decoder does: it is the same for every piece of a text.

    The addon's ``vocoder: {type: Network}`` entry builds this block after the
    stack (see :class:`~ttsstack.runtime.vocoders.NetworkVocoder`); it reads
    whatever frame stream the stack produces, so it is not placed in the stack.
    """

    role = "vocoder"

    class Config(BlockConfig):
        network: str | None = None

    def __init__(self, config, ctx, path):
        self.speaker_input = ctx.spec.speaker.input if ctx.spec.speaker is not None else None
        """The call's speaker embedding, which it may read besides its frames (None: the addon declares none)."""
        super().__init__(config, ctx, path)
        twins = [name for name, spec in ctx.spec.networks.items() if spec.stateful and spec.stateful.of == self.network]
        self.twin = twins[0] if twins and twins[0] in ctx.runners and ctx.options.stateful_vocoder else None
        """The stateful twin that streams this network, when loaded and wanted; else None (windows)."""
        self.twin_runner = ctx.runners[self.twin] if self.twin else None

    def stream(self, tensors: Tensors, upstream: Stream | None) -> Stream:
        """The waveform of ``upstream``'s frames: through the stateful twin when there is one, else as a Decoder."""
        if self.twin is None:
            return super().stream(tensors, upstream)
        extra = {n: tensors[n] for n in self.extra_inputs}
        # the first chunk covers the twin's delay (at most the context) as a window's right context would
        sizes = chunk_sizes(self.options.first_chunk_frames, self.options.chunk_frames, self.spec.context + self.downstream,
                            prior_frames(tensors))
        return stream_stateful(self.twin_runner, self.twin_runner.spec, self.frames_name, upstream, extra, sizes,
                               self.max_window)

    def describe(self) -> str:
        return super().describe() + (f" [stateful twin {self.twin}]" if self.twin else "")

    def stream_tensors(self, config, path: str) -> tuple[str, str]:
        """The network's one frame input and one waveform output."""
        frames = [name for name in self.spec.data_inputs if name != self.speaker_input]
        if len(frames) != 1 or len(self.spec.outputs) != 1:
            besides = "its mask/lengths" + (f" and the speaker input '{self.speaker_input}'" if self.speaker_input else "")
            raise StackError(
                f"{path}: vocoder network '{self.network}' must take one frame input (besides {besides}) and return "
                f"one waveform; it takes {', '.join(self.spec.data_inputs) or 'nothing'} and returns {', '.join(self.spec.outputs)}"
            )
        return frames[0], next(iter(self.spec.outputs))

    @property
    def piece_frames(self) -> int | None:
        """With unbounded context, the most frames of one piece it takes (the Voice splits longer pieces); else None."""
        return None if self.spec.bounded else self.most_steps()

    def run_unbounded(self, upstream: Stream, run: Window) -> Stream:
        """Unbounded context: one run per chunk, each a whole piece (the Voice gathers them, :attr:`piece_frames`)."""
        return (run(chunk, 0, chunk.shape[1]) for chunk in upstream)

    def check(self, wiring: Wiring, upstream: str | None) -> str:
        """Read the stack's frame stream, whatever its name, if its channels and dtype fit the network's input."""
        if upstream is None:
            raise StackError(f"{self.label}: needs a frame stream before it")
        want = self.spec.inputs[self.frames_name]
        got = wiring.read(self.label, upstream, rank=3, dtype=want.dtype)
        channels = want.shape[-1]
        if isinstance(channels, int) and got.channels is not None and got.channels != channels:
            raise StackError(
                f"{self.label}: network '{self.network}' takes {channels} channels per frame, but the stack's "
                f"stream '{upstream}' from {got.writer} has {got.channels}"
            )
        for name in self.extra_inputs:
            wiring.read(self.label, name, rank=len(self.spec.inputs[name].shape), dtype=self.spec.inputs[name].dtype)
        info = TensorInfo.of(self.spec.outputs[self.output_name], self.label)
        wiring.write(self.label, self.output_name, info)
        return self.output_name

