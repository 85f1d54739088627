"""Audio output: PCM16 conversion, a WAV header for streamed responses, and files (WAV, FLAC, Ogg, MP3)."""

from __future__ import annotations

import os
import struct

import numpy as np
import soundfile

UNKNOWN_SIZE = 0xFFFFFFFF
"""RIFF and data chunk size written when the length of a stream is not known yet."""

_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")

AUDIO_SUFFIXES = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
                  ".mp3": ("MP3", "MPEG_LAYER_III")}
"""File suffix -> (libsndfile format, subtype) of the audio files ttsstack writes."""


def float_to_pcm16(audio: np.ndarray) -> bytes:
    """Float audio (nominally in [-1, 1]) as little-endian signed 16-bit PCM bytes.

    Samples are clipped to [-1, 1] (NaN becomes 0) and scaled by 32767 with
    rounding to nearest, so a full-scale float maps to +-32767 symmetrically.
    """
    audio = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, num_samples: int | None) -> bytes:
    """The 44-byte RIFF header of a mono PCM16 WAV with ``num_samples`` samples.

    ``None`` means the length is not known when the header is sent (streaming):
    both the RIFF and the data chunk sizes are then 0xFFFFFFFF, which players
    and decoders read as "until the end of the stream".
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if num_samples is None:
        riff_size = data_size = UNKNOWN_SIZE
    else:
        data_size = 2 * num_samples
        riff_size = 36 + data_size
        if num_samples < 0 or riff_size > UNKNOWN_SIZE:
            raise ValueError(
                f"num_samples must be between 0 and {(UNKNOWN_SIZE - 36) // 2} for a WAV file, "
                f"got {num_samples}"
            )
    return _HEADER.pack(
        b"RIFF", riff_size, b"WAVE",
        b"fmt ", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16,
        b"data", data_size,
    )


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio to ``path`` as a PCM16 WAV file, clipped to [-1, 1]."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {audio.shape}")
    soundfile.write(os.fspath(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


def audio_format_for(path: str | os.PathLike) -> tuple[str, str]:
    """The (format, subtype) that the suffix of ``path`` asks for; a ValueError naming the suffix otherwise.

    Only formats this host's libsndfile can write are accepted (MP3 needs
    libsndfile 1.1 or later), so a refused suffix is refused before any work.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    writable = {s: f for s, f in AUDIO_SUFFIXES.items() if f[0] in soundfile.available_formats()}
    if suffix not in writable:
        what = f"suffix '{suffix}'" if suffix else "no suffix"
        raise ValueError(f"{os.fspath(path)}: {what}; audio files are written as {', '.join(writable)}")
    return writable[suffix]


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio to ``path`` in the format its suffix names (see :func:`audio_format_for`)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {audio.shape}")
    fmt, subtype = audio_format_for(path)
    soundfile.write(os.fspath(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype=subtype, format=fmt)
