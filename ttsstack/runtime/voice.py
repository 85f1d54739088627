"""A loaded voice: frontend + built stack + vocoder, streaming mel then audio."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import AsyncIterable, AsyncIterator, Iterator, Mapping

import numpy as np
import torch

from ..addon import AddonSpec
from .alignment import ALIGNMENT
from .blocks.base import Block, PieceTooLong
from .blocks.windows import PRIOR_FRAMES
from .batching import batching_runners
from .builder import SPEED, BuildContext, RuntimeOptions, build_stack
from .frontend import build_frontend, split_tokens
from .clauses import FLUSH_AFTER_S
from .network import NetworkRunner
from .prefetch import prefetched
from .short_calls import short_call_runners
from .speakers import SpeakerChoice, speaker_tensors
from .tempo import resample_time
from .timings import TimedChunk, WordTiming, timed_frames, timings_support, with_words


WHOLE_TEXT_MAX_CHARS = 10_000
"""Longest text the whole-result calls (:meth:`Voice.synthesize`, :meth:`Voice.synthesize_audio`) take by
default: their result grows with the text (about 15 MB of float audio and twice that at the peak per 1,000
characters at 22,050 Hz), while :meth:`Voice.stream_audio` holds one chunk whatever the length."""

WARMUP_PASSES = 2
"""Dummy runs of the stack at load: TorchScript's profiling executor optimizes a network on its second call."""


class Voice:
    """One addon ready to synthesize on one backend.

    ``stream(text)`` yields the stack's frame chunks ``[frames, C]`` (float32
    numpy) as soon as each is decoded: mel ``[frames, n_mels]``, or, for an
    addon whose vocoder network takes latent frames (VITS-like), those
    latents. ``stream_audio(text)`` yields waveform chunks as soon as the
    vocoder (the addon's vocoder network, else Griffin-Lim) has them. Text is synthesized sentence by sentence,
    one continuous stream. Per-call settings are arguments of each call
    (``speed``: speaking rate, 2.0 is twice as fast; durations are divided by
    it; ``speaker``: for addons that declare ``speaker:``, a voice name of the
    addon or an embedding, see :func:`~ttsstack.runtime.speakers.speaker_tensors`);
    load-time ones are in :class:`RuntimeOptions`. A Voice holds no
    per-utterance state: several threads may stream from one Voice at once,
    and with ``RuntimeOptions.batch`` their calls of ``batch: true``
    networks run as one batched call (:mod:`~ttsstack.runtime.batching`).
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
        self.backend = backend
        self.options = options or RuntimeOptions()
        runners = short_call_runners(runners, spec.dims)
        self.runners = batching_runners(runners, self.options.batch, spec.batch_dim.max, self.options.batch_wait_ms / 1000)
        self.frontend = build_frontend(spec.frontend.model_dump())
        ctx = BuildContext(spec, self.runners, variants or {}, self.options)
        self.root, self.output, self.vocoder = build_stack(ctx)
        self.piece_frames: int | None = getattr(self.vocoder, "piece_frames", None)
        """A vocoder that takes each piece whole (unbounded context): the most frames of a piece; else None."""
        self.channels = _stream_channels(spec, self.output)
        self.stack_reads_speed = SPEED in ctx.read_names
        """Whether a block applies ``speed`` (the Upsampler does); else :meth:`stream` resamples the mel."""
        self.max_tokens = _max_tokens(spec, self.runners)

    @property
    def sample_rate(self) -> int:
        """Audio samples per second."""
        return self.spec.audio.sample_rate

    def warmup(self, passes: int = WARMUP_PASSES) -> None:
        """Run the frontend once and the stack ``passes`` times on a short dummy input, so first-call costs are paid now.

        TorchScript's profiling executor runs a network's first call to record
        shapes and compiles its optimized plan on the second; ONNX Runtime and
        the frontend (espeak-ng's data) also pay on their first calls. One pass
        left the optimizing call to the first request (the demo on one thread:
        first mel chunk 59 ms on the first call, 16 ms later); two passes and
        one frontend call bring the first call to the later ones' time.
        """
        list(self.frontend.pieces("Hello.", self.max_tokens))
        tokens = torch.zeros(1, min(16, self.max_tokens), dtype=torch.int64)
        for _ in range(passes):
            with torch.inference_mode():
                stream = self.root.stream({"tokens": tokens, **self._call_controls(1.0, None)}, None)
                first = next(stream, None)
                stream.close()
            if first is not None:
                audio = self.vocoder.stream([first[0].numpy()])
                next(audio, None)
                audio.close()

    def _call_controls(self, speed: float, speaker: SpeakerChoice) -> dict[str, torch.Tensor]:
        """The per-call tensors every utterance starts with besides ``tokens``."""
        return {**_call_controls(speed), **speaker_tensors(self.spec.speaker, speaker)}

    @torch.inference_mode()
    def _mel_tensors(self, text: str, speed: float, speaker: SpeakerChoice = None) -> Iterator[torch.Tensor]:
        controls = self._call_controls(speed, speaker)
        prior = 0  # frames of the pieces before this one: their schedule goes on (chunk_sizes)
        for tokens in self.frontend.pieces(text, self.max_tokens, pack=not self.options.sentence_split):
            for chunk in self._piece(tokens, {**controls, PRIOR_FRAMES: prior}):
                prior += chunk.shape[1]
                yield chunk

    def _piece(self, tokens: torch.Tensor, controls: dict[str, torch.Tensor]) -> Iterator[torch.Tensor]:
        """The stream of one piece of tokens; split at word boundaries when a network cannot take it whole.

        A network with unbounded context over frames (a transformer decoder,
        a flow) takes at most its largest bucket on a static backend, or its
        dim's max: the frame count is known only after the encoders ran, and
        the network raises :class:`PieceTooLong` before anything of the piece
        streams. A vocoder network with unbounded context gets each piece
        whole, in one chunk, and the same limit holds for it. The piece's
        tokens are then cut after spaces or punctuation into enough parts,
        each synthesized as if the text had been split there.
        """
        started = False
        try:
            chunks = self.root.stream({"tokens": tokens, **controls}, None)
            if self.piece_frames is not None:
                chunks = _whole_piece(chunks, self.piece_frames, self.vocoder.networks[0])
            for chunk in chunks:
                started = True
                yield chunk
        except PieceTooLong as exc:
            parts = split_tokens(tokens, self.frontend.boundary_ids, -(-exc.steps // exc.limit))
            if started or len(parts) < 2:
                raise
            alignment = controls.get(ALIGNMENT)
            offset = alignment.token_offset if alignment is not None else 0
            for part in parts:
                if alignment is not None:
                    alignment.token_offset = offset
                offset += part.shape[1]
                yield from self._piece(part, controls)

    def stream(
        self, text: str, speed: float = 1.0, speaker: SpeakerChoice = None, timings: bool = False
    ) -> Iterator[np.ndarray] | Iterator[TimedChunk]:
        """Frame chunks ``[frames, C]`` of the whole text (mel, or a vocoder network's latents), each as soon as it is decoded.

        When no block of the stack reads ``speed`` (an attention decoder has
        no durations to divide), the frames are resampled along time instead
        (:func:`~ttsstack.runtime.tempo.resample_time`), so every addon honours it.
        With ``timings=True`` each item is a :class:`~ttsstack.runtime.timings.TimedChunk`
        (see :meth:`stream_audio`).
        """
        if timings:
            found: list[WordTiming] = []
            frames = self._tempo(timed_frames(self, text, speed, speaker, found), speed)
            yield from with_words(frames, found, np.zeros((0, self.channels), np.float32))
            return
        yield from self._tempo((chunk[0].numpy() for chunk in self._mel_tensors(text, speed, speaker)), speed)

    def _ahead(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """``chunks`` made in a thread of their own ahead of the vocoder, unless ``RuntimeOptions.vocoder_thread`` is off."""
        return prefetched(chunks) if self.options.vocoder_thread else chunks

    def _tempo(self, chunks: Iterator[np.ndarray], speed: float) -> Iterator[np.ndarray]:
        """``chunks`` at ``speed``: resampled along time when no block of the stack applies it."""
        return resample_time(chunks, speed) if speed != 1.0 and not self.stack_reads_speed else chunks

    @property
    def timings_unavailable(self) -> str | None:
        """Why this voice cannot give word timings (its frontend or its stack), or None when it can."""
        return timings_support(self)

    def synthesize(
        self, text: str, speed: float = 1.0, speaker: SpeakerChoice = None, max_chars: int | None = WHOLE_TEXT_MAX_CHARS
    ) -> np.ndarray:
        """The whole frames ``[frames, C]`` (mel or latents): the concatenation of :meth:`stream`.

        Text longer than ``max_chars`` is a ``ValueError`` (``None``: no limit); stream long text.
        """
        _check_whole_length(text, max_chars)
        chunks = list(self.stream(text, speed, speaker))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.channels), np.float32)

    def stream_audio(
        self, text: str, speed: float = 1.0, speaker: SpeakerChoice = None, timings: bool = False
    ) -> Iterator[np.ndarray] | Iterator[TimedChunk]:
        """Waveform chunks (float32, mono), vocoded from the mel stream as it arrives.

        With ``timings=True`` each item is a :class:`~ttsstack.runtime.timings.TimedChunk`:
        the ``chunk`` of samples and the ``words`` (:class:`~ttsstack.runtime.timings.WordTiming`:
        characters in ``text``, start and end in seconds) whose end became
        known while it was made, each word once, in order; the samples are
        those of ``timings=False``. A voice that cannot tell
        (:attr:`timings_unavailable`) raises :class:`~ttsstack.runtime.frontend.TimingsUnavailable`.
        """
        if not timings:
            yield from self.vocoder.stream(self._ahead(self.stream(text, speed, speaker)), speaker_tensors(self.spec.speaker, speaker))
            return
        found: list[WordTiming] = []
        audio = self.vocoder.stream(
            self._tempo(timed_frames(self, text, speed, speaker, found), speed), speaker_tensors(self.spec.speaker, speaker)
        )
        yield from with_words(audio, found, np.zeros(0, np.float32))

    def stream_text(
        self, fragments: AsyncIterable[str], speed: float = 1.0, speaker: SpeakerChoice = None,
        timings: bool = False, flush_after_s: float = FLUSH_AFTER_S,
    ) -> AsyncIterator[TimedChunk]:
        """Text as it is written (an async iterable of fragments, an LLM's tokens) to audio, clause by clause.

        An async iterator of :class:`~ttsstack.runtime.timings.TimedChunk`:
        each clause is spoken as soon as it is complete (a clause end and
        the whitespace after it), or when no fragment came for
        ``flush_after_s`` seconds, so speech starts before the text is
        finished; the audio equals synthesizing the same clauses one by one.
        See :mod:`~ttsstack.runtime.incremental`; it runs on anyio (the ``serve`` extra).
        """
        from .incremental import stream_text  # anyio: imported only by those who stream text

        return stream_text(self, fragments, speed, speaker, timings, flush_after_s)

    def synthesize_audio(
        self, text: str, speed: float = 1.0, speaker: SpeakerChoice = None, max_chars: int | None = WHOLE_TEXT_MAX_CHARS
    ) -> np.ndarray:
        """The whole waveform: the concatenation of :meth:`stream_audio`.

        Its memory grows with the text, so text longer than ``max_chars`` is a
        ``ValueError`` naming :meth:`stream_audio`, which holds one chunk at a
        time (``max_chars=None`` lifts the limit).
        """
        _check_whole_length(text, max_chars)
        chunks = list(self.stream_audio(text, speed, speaker))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def synthesize_timed(self, text: str, speed: float = 1.0) -> "TimedSynthesis":
        """Stream ``text`` to the end, keeping the mel, the audio and when the first chunks arrived."""
        start = time.perf_counter()
        mels: list[np.ndarray] = []
        audio: list[np.ndarray] = []
        first_mel = first_audio = None
        for chunk, mel_at, audio_at in self._stamped_audio(text, speed, start, mels):
            first_mel = first_mel if first_mel is not None else mel_at
            first_audio = first_audio if first_audio is not None else audio_at
            audio.append(chunk)
        total = time.perf_counter() - start
        return TimedSynthesis(
            mel=np.concatenate(mels) if mels else np.zeros((0, self.channels), np.float32),
            audio=np.concatenate(audio) if audio else np.zeros(0, np.float32),
            first_mel_s=first_mel if first_mel is not None else total,
            first_audio_s=first_audio if first_audio is not None else total,
            total_s=total,
        )

    def first_chunk_latency(self, text: str, speed: float = 1.0) -> tuple[float, float]:
        """Seconds to the first mel chunk and to the first audio chunk of ``text``; the rest is never made
        (but for the chunk or two the mel thread makes meanwhile, :attr:`RuntimeOptions.vocoder_thread`).

        What a listener waits for, measured without paying for the whole
        utterance, so latency can be sampled many times cheaply.
        """
        start = time.perf_counter()
        stamped = self._stamped_audio(text, speed, start, [])
        first = next(stamped, None)
        stamped.close()
        if first is None:
            total = time.perf_counter() - start
            return total, total
        return first[1], first[2]

    def _stamped_audio(
        self, text: str, speed: float, start: float, mels: list[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, float, float]]:
        """Audio chunks with the seconds since ``start`` to the first mel chunk and to this chunk; mel kept in ``mels``."""
        first_mel: float | None = None

        def recorded() -> Iterator[np.ndarray]:
            nonlocal first_mel
            for chunk in self.stream(text, speed):
                first_mel = first_mel if first_mel is not None else time.perf_counter() - start
                mels.append(chunk)
                yield chunk

        for chunk in self.vocoder.stream(self._ahead(recorded())):
            yield chunk, first_mel, time.perf_counter() - start

    def tree(self) -> list[tuple[int, Block]]:
        """``(depth, block)`` for every block, depth-first, for ``ttsstack inspect``."""
        out: list[tuple[int, Block]] = []

        def walk(block: Block, depth: int) -> None:
            out.append((depth, block))
            for child in block.children():
                walk(child, depth + 1)

        walk(self.root, 0)
        return out


@dataclass(frozen=True)
class TimedSynthesis:
    """A whole synthesis with its latencies: time to the first mel and audio chunks, and in total."""

    mel: np.ndarray
    audio: np.ndarray
    first_mel_s: float
    first_audio_s: float
    total_s: float


def _check_whole_length(text: str, max_chars: int | None) -> None:
    """``ValueError`` when a whole-result call gets text over ``max_chars`` characters."""
    if max_chars is not None and isinstance(text, str) and len(text) > max_chars:
        raise ValueError(
            f"text is {len(text)} characters long, over the whole-result limit of {max_chars}: "
            f"iterate Voice.stream_audio(text) (one chunk in memory at a time), or pass max_chars=None"
        )


def _call_controls(speed: float) -> dict[str, torch.Tensor]:
    """The per-call tensors every utterance starts with besides ``tokens``: ``speed`` ``[1]``."""
    if not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a finite number > 0, got {speed!r}")
    return {SPEED: torch.tensor([float(speed)], dtype=torch.float32)}


def _stream_channels(spec: AddonSpec, stream: str) -> int:
    """Channels per frame of the stack's ``stream`` (``audio.n_mels`` when no network output fixes them)."""
    for net in spec.networks.values():
        tensor = net.outputs.get(stream)
        if tensor is not None and isinstance(tensor.shape[-1], int):
            return tensor.shape[-1]
    return spec.audio.n_mels


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


def _whole_piece(chunks: Iterator[torch.Tensor], limit: int, network: str) -> Iterator[torch.Tensor]:
    """A piece's frame ``chunks`` as one chunk, for a vocoder network that runs once per piece (unbounded context).

    Raises :class:`PieceTooLong` past ``limit`` frames, before anything of the piece streams (it is then split).
    """
    pieces = list(chunks)
    if not pieces:
        return
    whole = torch.cat(pieces, dim=1)
    if whole.shape[1] > limit:
        raise PieceTooLong(
            f"vocoder network '{network}': {whole.shape[1]} frames exceed the most it takes at once ({limit}) and "
            f"the network has unbounded context", whole.shape[1], limit,
        )
    yield whole
