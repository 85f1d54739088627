"""Audio encoded chunk by chunk as it is made: MP3, Ogg Opus, AAC (ADTS), FLAC, G.711 μ-law, WAV and raw PCM.

An :class:`AudioEncoder` takes float chunks (mono, at the voice's rate) and
returns the bytes the format has ready after each one, so a streamed response
can send them at once and a standard decoder can play what has arrived so
far. The compressed formats and μ-law go through PyAV (FFmpeg's encoders
and muxers, ``pip install av``): an in-memory output that cannot seek, so
every muxer writes a streamable layout (no size to patch at the end), flushed
after every packet. WAV and PCM are ttsstack's own PCM16 (:func:`float_to_pcm16`,
the exact samples of the voice) when they keep the voice's rate.

A codec that takes only some rates (MP3, AAC, Opus) is fed audio resampled by
FFmpeg's resampler (PyAV's ``AudioResampler``) to the rate :func:`output_rate`
picks or the caller asks for; the same resampler gives PCM, WAV and μ-law any
rate (telephony: μ-law at 8 kHz, its default).

With ``whole=True`` nothing comes out until :meth:`AudioEncoder.finish`,
which returns the complete file, its sizes filled in (a WAV header with its
true lengths, FLAC's total sample count): the one to save.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .wav import float_to_pcm16, wav_header


@dataclass(frozen=True)
class AudioFormat:
    """One ``response_format``: its media type and, for PyAV formats, the muxer and encoder that make it.

    ``rates`` are the sample rates the encoder takes (None: any);
    ``default_rate`` is the rate used when none is asked for (None: the
    voice's own, or the nearest the encoder takes). ``bit_rate`` (bits per
    second) overrides the encoder's default, where that is too low for speech.
    """

    name: str
    media_type: str
    muxer: str | None = None
    codec: str | None = None
    rates: tuple[int, ...] | None = None
    default_rate: int | None = None
    muxer_options: tuple[tuple[str, str], ...] = ()
    bit_rate: int | None = None


FORMATS: dict[str, AudioFormat] = {
    f.name: f
    for f in (
        # LAME's default in FFmpeg is 32 kb/s for mono at 22.05 kHz; 64 kb/s is clear speech
        AudioFormat("mp3", "audio/mpeg", "mp3", "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
                    bit_rate=64000),
        # Ogg pages of at most 20 ms, so a page (and its audio) leaves as soon as its Opus packet is made
        AudioFormat("opus", "audio/ogg", "ogg", "libopus", (8000, 12000, 16000, 24000, 48000),
                    muxer_options=(("page_duration", "20000"),)),
        AudioFormat("aac", "audio/aac", "adts", "aac",
                    (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)),
        AudioFormat("flac", "audio/flac", "flac", "flac", muxer_options=(("metadata_header_padding", "0"),)),
        AudioFormat("wav", "audio/wav"),
        AudioFormat("pcm", "audio/pcm"),
        AudioFormat("mulaw", "audio/basic", "mulaw", "pcm_mulaw", default_rate=8000),
    )
}
"""Every format ttsstack encodes, by ``response_format`` name."""

MIN_RATE, MAX_RATE = 8000, 96000
"""The sample rates a caller may ask for."""


class FormatUnavailable(ValueError):
    """A format this host cannot encode (PyAV or its codec is missing), or a rate its encoder does not take."""


@lru_cache(maxsize=1)
def _pyav_codecs() -> frozenset[str] | None:
    """The encoders of the installed PyAV's FFmpeg, or None when PyAV is not installed."""
    try:
        import av
    except ImportError:
        return None
    return frozenset(av.codecs_available)


def available_formats() -> list[str]:
    """The formats this host can encode: WAV and PCM always, the others where PyAV has their encoder."""
    codecs = _pyav_codecs() or frozenset()
    return [f.name for f in FORMATS.values() if f.codec is None or f.codec in codecs]


def check_available(name: str) -> AudioFormat:
    """The format called ``name``, or :class:`FormatUnavailable` naming what this host can encode."""
    if name not in FORMATS:
        raise FormatUnavailable(f"unknown format '{name}'; available: {', '.join(available_formats())}")
    fmt = FORMATS[name]
    if name not in available_formats():
        why = "PyAV is not installed (pip install av)" if _pyav_codecs() is None else f"its encoder {fmt.codec} is missing from PyAV's FFmpeg"
        raise FormatUnavailable(f"format '{name}' cannot be encoded on this host: {why}; available: {', '.join(available_formats())}")
    return fmt


def output_rate(fmt: AudioFormat, source_rate: int, requested: int | None = None) -> int:
    """The sample rate ``fmt`` is sent at: ``requested`` when given (it must be one the encoder takes),
    else the format's default, else the source rate when the encoder takes it, else the nearest rate
    above it (below it when none is above). A rate other than the source's needs PyAV's resampler."""
    if requested is not None:
        if not MIN_RATE <= requested <= MAX_RATE:
            raise FormatUnavailable(f"sample rate {requested} Hz: must be from {MIN_RATE} to {MAX_RATE} Hz")
        if fmt.rates is not None and requested not in fmt.rates:
            raise FormatUnavailable(
                f"sample rate {requested} Hz: {fmt.name} takes {', '.join(map(str, fmt.rates))} Hz")
        rate = requested
    elif fmt.default_rate is not None:
        rate = fmt.default_rate
    elif fmt.rates is None or source_rate in fmt.rates:
        rate = source_rate
    else:
        above = [r for r in fmt.rates if r > source_rate]
        rate = min(above) if above else max(fmt.rates)
    if rate != source_rate and _pyav_codecs() is None:
        raise FormatUnavailable(f"sample rate {rate} Hz: resampling from {source_rate} Hz needs PyAV (pip install av)")
    return rate


class _Output:
    """A write-only in-memory file for PyAV's muxer (no ``seek``: the muxer writes a streamable layout)."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        return len(data)

    def take(self) -> bytes:
        """What the muxer has written since the last call."""
        data = bytes(self._pending)
        self._pending.clear()
        return data


class _SeekableOutput(io.BytesIO):
    """A seekable in-memory file: the muxer fills in sizes at the end (``whole`` files); nothing is taken before."""

    def take(self) -> bytes:
        """Nothing until the file is complete."""
        return b""


class _Resampled:
    """Float chunks at ``source_rate`` as PyAV frames in ``sample_format`` at ``rate``, ``frame_size`` samples each."""

    def __init__(self, source_rate: int, rate: int, sample_format: str, frame_size: int | None):
        import av
        from av.audio.resampler import AudioResampler

        self._av = av
        self.source_rate = source_rate
        self._resampler = AudioResampler(format=sample_format, layout="mono", rate=rate, frame_size=frame_size)
        self._pts = 0

    def frames(self, audio: np.ndarray | None) -> list[Any]:
        """The frames ready after ``audio`` (None flushes what the resampler holds)."""
        if audio is None:
            return self._resampler.resample(None)
        samples = np.clip(np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0), -1.0, 1.0)
        frame = self._av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.source_rate
        frame.pts = self._pts
        self._pts += samples.size
        return self._resampler.resample(frame)


class AudioEncoder(ABC):
    """Encodes float chunks into ``fmt`` at ``rate``: :meth:`encode` per chunk, then :meth:`finish` once.

    Build it with :func:`encoder_for`. Not thread-safe; one per stream.
    """

    def __init__(self, fmt: AudioFormat, source_rate: int, rate: int, whole: bool):
        self.format = fmt
        self.source_rate = source_rate
        self.rate = rate
        self.whole = whole

    @abstractmethod
    def encode(self, audio: np.ndarray) -> bytes:
        """The bytes ready after this chunk (possibly none while an encoder fills a frame)."""

    @abstractmethod
    def finish(self) -> bytes:
        """The rest: buffered audio, the container's trailer; with ``whole``, the complete file."""


class _PcmEncoder(AudioEncoder):
    """PCM16 little-endian, raw or after a WAV header; resampled by FFmpeg when ``rate`` is not the source's."""

    def __init__(self, fmt: AudioFormat, source_rate: int, rate: int, whole: bool):
        super().__init__(fmt, source_rate, rate, whole)
        self._resampled = None if rate == source_rate else _Resampled(source_rate, rate, "s16", None)
        self._header_sent = False
        self._kept: list[bytes] = []

    def _pcm(self, audio: np.ndarray | None) -> bytes:
        if self._resampled is None:
            return b"" if audio is None else float_to_pcm16(audio)
        return b"".join(bytes(frame.planes[0])[: 2 * frame.samples] for frame in self._resampled.frames(audio))

    def _out(self, pcm: bytes) -> bytes:
        if self.whole:
            self._kept.append(pcm)
            return b""
        if self.format.name == "wav" and not self._header_sent:
            self._header_sent = True
            return wav_header(self.rate, None) + pcm
        return pcm

    def encode(self, audio: np.ndarray) -> bytes:
        return self._out(self._pcm(audio))

    def finish(self) -> bytes:
        tail = self._out(self._pcm(None))
        if not self.whole:
            return tail
        body = b"".join(self._kept)
        return (wav_header(self.rate, len(body) // 2) if self.format.name == "wav" else b"") + body


class _PyAVEncoder(AudioEncoder):
    """A PyAV encoder and muxer writing to memory, flushed after every packet."""

    def __init__(self, fmt: AudioFormat, source_rate: int, rate: int, whole: bool):
        super().__init__(fmt, source_rate, rate, whole)
        import av

        self._output: _Output | _SeekableOutput = _SeekableOutput() if whole else _Output()
        options = {"flush_packets": "1", **dict(fmt.muxer_options)}
        self._container = av.open(self._output, mode="w", format=fmt.muxer, container_options=options, buffer_size=4096)
        self._stream = self._container.add_stream(fmt.codec, rate=rate, layout="mono")
        context = self._stream.codec_context
        if fmt.bit_rate:
            context.bit_rate = fmt.bit_rate
        context.open()  # fixes frame_size, which the frames fed to it must have
        self._resampled = _Resampled(source_rate, rate, context.format.name, context.frame_size or None)

    def _mux(self, frames: list[Any]) -> None:
        for frame in frames:
            self._container.mux(self._stream.encode(frame))

    def encode(self, audio: np.ndarray) -> bytes:
        self._mux(self._resampled.frames(audio))
        return self._output.take()

    def finish(self) -> bytes:
        self._mux(self._resampled.frames(None))
        self._container.mux(self._stream.encode(None))
        self._container.close()
        if isinstance(self._output, _SeekableOutput):
            return self._output.getvalue()
        return self._output.take()


def encoder_for(name: str, source_rate: int, rate: int | None = None, whole: bool = False) -> AudioEncoder:
    """An encoder of format ``name`` for mono float audio at ``source_rate``, sent at ``rate``
    (see :func:`output_rate`); :class:`FormatUnavailable` when this host cannot make it."""
    fmt = check_available(name)
    rate = output_rate(fmt, source_rate, rate)
    cls = _PcmEncoder if fmt.codec is None else _PyAVEncoder
    return cls(fmt, source_rate, rate, whole)
