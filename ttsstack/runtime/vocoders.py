"""Vocoder stages: a mel chunk stream in, an audio chunk stream out, named by ``vocoder.type``."""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from ..addon import AudioSpec
from ..audio import GriffinLim, MelSettings
from .registry import VOCODERS


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
    ``overlap_frames``, ...) go to :class:`ttsstack.audio.GriffinLim`.
    """

    def __init__(self, audio: AudioSpec, **options):
        self.griffin_lim = GriffinLim(mel_settings(audio), **options)

    def stream(self, mel_chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Audio chunks as soon as their mel context has arrived."""
        return self.griffin_lim.stream(mel_chunks)
