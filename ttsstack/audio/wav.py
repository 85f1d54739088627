"""PCM16 WAV output: sample conversion, a header for streamed responses, and files."""

from __future__ import annotations

import os
import struct

import numpy as np
import soundfile

UNKNOWN_SIZE = 0xFFFFFFFF
"""RIFF and data chunk size written when the length of a stream is not known yet."""

_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


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
