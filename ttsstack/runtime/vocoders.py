"""Vocoder stages: the stack's frame stream in, an audio chunk stream out, named by ``vocoder.type``.

A vocoder class is built once per voice as ``cls(ctx, wiring, frames, **options)``:
the build context (addon spec, network runners, backend block variants), the
stack's checked wiring and the name of the frame stream the stack produces,
then the other keys of the addon's ``vocoder`` entry. It checks at build that
it can read that stream, and ``stream(frame_chunks, tensors=None)`` turns
float32 ``[frames, C]`` numpy chunks into float32 mono waveform chunks
(``tensors``: the call's own, its speaker embedding). ``networks`` names the
addon networks it runs (none for Griffin-Lim); ``lookahead`` (0 when absent)
is the frames past a block's end it waits for, which the stack's blocks add
to their first chunk so the vocoder can start on it; ``piece_frames`` (None
when absent) says it takes each piece's frames whole, at most that many.

An addon without a ``vocoder`` entry gets ``Network`` when it has a network of
role ``vocoder``, else ``GriffinLim`` (see :class:`~ttsstack.addon.AddonSpec`);
``RuntimeOptions.vocoder`` (``--vocoder``) picks another type at load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

import numpy as np
import torch

from ..addon import AudioSpec
from ..audio import GriffinLim, MelSettings
from .blocks.base import StackError, Wiring
from .registry import VOCODERS, RegistryError
from .speakers import speaker_tensors

if TYPE_CHECKING:
    from .builder import BuildContext


def mel_settings(audio: AudioSpec) -> MelSettings:
    """The audio package's settings from an addon's ``audio`` entry (``fmax`` defaults to Nyquist)."""
    return MelSettings(
        sample_rate=audio.sample_rate,
        n_fft=audio.n_fft,
        hop_length=audio.hop_length,
        win_length=audio.win_length,
        n_mels=audio.n_mels,
        fmin=audio.fmin,
        fmax=audio.fmax if audio.fmax is not None else audio.sample_rate / 2,
    )


@VOCODERS.register("GriffinLim")
class GriffinLimVocoder:
    """Griffin-Lim phase reconstruction, streamed block by block on a fixed frame grid.

    Extra keys of the addon's ``vocoder`` entry (``n_iter``, ``block_frames``,
    ``overlap_frames``, ...) go to :class:`ttsstack.audio.GriffinLim`. The
    stack's frames must be log-mel frames of ``audio.n_mels`` bins.
    """

    networks: tuple[str, ...] = ()

    def __init__(self, ctx: "BuildContext", wiring: Wiring, frames: str, **options):
        info = wiring.read("vocoder (GriffinLim)", frames, rank=3)
        n_mels = ctx.spec.audio.n_mels
        if info.channels is not None and info.channels != n_mels:
            raise StackError(
                f"vocoder (GriffinLim): the stack's stream '{frames}' from {info.writer} has {info.channels} "
                f"channels, but Griffin-Lim takes audio.n_mels = {n_mels} mel bins; name a vocoder network instead"
            )
        self.griffin_lim = GriffinLim(mel_settings(ctx.spec.audio), **options)
        self.lookahead = self.griffin_lim.lookahead_frames
        """Mel frames past a block's end it waits for: what the stack's blocks add to their first chunk."""

    def stream(self, mel_chunks: Iterable[np.ndarray], tensors: Mapping[str, torch.Tensor] | None = None) -> Iterator[np.ndarray]:
        """Audio chunks as soon as their mel context has arrived (``tensors``, the call's, are not read)."""
        return self.griffin_lim.stream(mel_chunks)


@VOCODERS.register("Network")
class NetworkVocoder:
    """A vocoder network of the addon (role ``vocoder``, e.g. HiFi-GAN) run over the stack's frames.

    ``network`` names it (default: the addon's one network of role
    ``vocoder``). It is a :class:`~ttsstack.runtime.blocks.vocoder.Vocoder`
    block, so the backend's variant runs it (static backends pad its windows
    to buckets) and a bounded ``context`` streams it exactly on overlapping
    windows of the voice's chunk schedule. The frames of the whole text are
    one stream, as for Griffin-Lim: sentences join without a seam. A network
    with unbounded context runs once per piece instead (:attr:`piece_frames`).
    """

    def __init__(self, ctx: "BuildContext", wiring: Wiring, frames: str, network: str | None = None):
        raw = {"type": "Vocoder"} | ({"network": network} if network is not None else {})
        self.block = ctx.build(raw, "vocoder")
        self.block.check(wiring, frames)
        self.networks = (self.block.network,)
        self.lookahead = self.block.lookahead
        """The network's context: frames past a window's end it waits for."""
        self.piece_frames = self.block.piece_frames
        """Unbounded context: the most frames of a piece it takes; the Voice hands it each piece whole. Else None."""
        self.default_tensors = speaker_tensors(ctx.spec.speaker, None)
        """The call's tensors when a caller gives none: the addon's first voice (nothing without ``speaker:``)."""

    @torch.inference_mode()
    def stream(self, frame_chunks: Iterable[np.ndarray], tensors: Mapping[str, torch.Tensor] | None = None) -> Iterator[np.ndarray]:
        """Waveform chunks (float32, mono) as soon as each window's right context has arrived.

        ``tensors`` are the call's own (its speaker embedding), for a network
        that reads them; None: :attr:`default_tensors`.
        """
        frames = (torch.from_numpy(np.ascontiguousarray(chunk, np.float32)).unsqueeze(0) for chunk in frame_chunks)
        for audio in self.block.stream(dict(self.default_tensors if tensors is None else tensors), frames):
            yield audio.reshape(-1).numpy()


def build_vocoder(ctx: "BuildContext", wiring: Wiring, frames: str):
    """The vocoder the addon's ``vocoder`` entry names (or the options' ``vocoder`` type), reading the stack's ``frames``.

    An options ``vocoder`` other than the entry's type is built with that
    type's defaults (the entry's other keys belong to its own type).
    """
    config = dict(ctx.spec.vocoder)
    if ctx.options.vocoder not in (None, config["type"]):
        config = {"type": ctx.options.vocoder}
    try:
        cls = VOCODERS.get(config.pop("type"))
    except RegistryError as exc:
        raise StackError(f"vocoder.type: {exc}") from None
    try:
        return cls(ctx, wiring, frames, **config)
    except TypeError as exc:
        raise StackError(f"vocoder: {exc}") from None
