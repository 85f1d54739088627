"""A loaded voice: frontend + built stack + vocoder, streaming mel then audio."""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
import torch

from ..addon import AddonSpec
from .blocks.base import Block, StackError
from .builder import BuildContext, RuntimeOptions, build_stack
from .frontend import build_frontend
from .network import NetworkRunner
from .registry import VOCODERS


class Voice:
    """One addon ready to synthesize on one backend.

    ``stream(text)`` yields mel chunks ``[frames, n_mels]`` (float32 numpy) as
    soon as each is decoded; ``stream_audio(text)`` yields waveform chunks as
    soon as the vocoder has them. Text is synthesized sentence by sentence,
    one continuous stream. A Voice holds no per-utterance state: several
    threads may stream from one Voice at once.
    """

    def __init__(
        self,
        spec: AddonSpec,
        runners: Mapping[str, NetworkRunner],
        variants: Mapping[str, type] | None = None,
        options: RuntimeOptions | None = None,
        backend: str = "",
    ):
        self.spec = spec
        self.runners = dict(runners)
        self.backend = backend
        self.options = options or RuntimeOptions()
        self.frontend = build_frontend(spec.frontend.model_dump())
        ctx = BuildContext(spec, runners, variants or {}, self.options)
        self.root, self.output = build_stack(ctx)
        self.max_tokens = _max_tokens(spec, self.runners)
        self._vocoder = None

    @property
    def sample_rate(self) -> int:
        """Audio samples per second."""
        return self.spec.audio.sample_rate

    @property
    def vocoder(self):
        """The vocoder named by the addon's ``vocoder`` entry (built on first use)."""
        if self._vocoder is None:
            config = dict(self.spec.vocoder)
            try:
                cls = VOCODERS.get(config.pop("type"))
            except KeyError as exc:
                raise StackError(f"vocoder.type: {exc}") from None
            self._vocoder = cls(self.spec.audio, **config)
        return self._vocoder

    @torch.inference_mode()
    def _mel_tensors(self, text: str) -> Iterator[torch.Tensor]:
        for tokens in self.frontend.pieces(text, self.max_tokens):
            yield from self.root.stream({"tokens": tokens}, None)

    def stream(self, text: str) -> Iterator[np.ndarray]:
        """Mel chunks ``[frames, n_mels]`` of the whole text, in order, each as soon as it is decoded."""
        for chunk in self._mel_tensors(text):
            yield chunk[0].numpy()

    def synthesize(self, text: str) -> np.ndarray:
        """The whole mel ``[frames, n_mels]``: the concatenation of :meth:`stream`."""
        chunks = list(self.stream(text))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.spec.audio.n_mels), np.float32)

    def stream_audio(self, text: str) -> Iterator[np.ndarray]:
        """Waveform chunks (float32, mono), vocoded from the mel stream as it arrives."""
        yield from self.vocoder.stream(self.stream(text))

    def synthesize_audio(self, text: str) -> np.ndarray:
        """The whole waveform: the concatenation of :meth:`stream_audio`."""
        chunks = list(self.stream_audio(text))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def tree(self) -> list[tuple[int, Block]]:
        """``(depth, block)`` for every block, depth-first, for ``ttsstack inspect``."""
        out: list[tuple[int, Block]] = []

        def walk(block: Block, depth: int) -> None:
            out.append((depth, block))
            for child in block.children():
                walk(child, depth + 1)

        walk(self.root, 0)
        return out


def _max_tokens(spec: AddonSpec, runners: Mapping[str, NetworkRunner]) -> int:
    """The longest token piece every encoder accepts: the smallest ``max`` of their named dims.

    An unbounded encoder on a static-shape backend runs on one padded bucket,
    so its largest bucket is the limit too (longer text is split into pieces).
    """
    limits = []
    for name, net in spec.networks_with_role("encoder").items():
        static = runners[name].static_lengths or {}
        for tensor in net.data_inputs.values():
            for _, dim in tensor.named_dims:
                limits.append(spec.dims[dim].max)
                if not net.bounded and static.get(dim):
                    limits.append(static[dim][-1])
    return min(limits) if limits else 1 << 31
