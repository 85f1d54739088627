"""Mel analysis: the settings an acoustic model was trained with, the Slaney mel
filterbank, and the log-mel spectrogram of a waveform.

The conventions are those of Tacotron 2 and FastPitch (and librosa's defaults for
the filterbank), so that mels computed here line up with the ones such models
produce: Slaney mel scale with Slaney area normalisation, a centred STFT with a
periodic Hann window and reflect padding, a magnitude (not power) spectrogram,
and the natural log of the mel energies clamped at 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above,
# with 27 mels per factor of 6.4 in frequency.
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_LOG_REGION_START_HZ = 1000.0
_LOG_REGION_START_MEL = _LOG_REGION_START_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = math.log(6.4) / 27.0

LOG_CLAMP = 1e-5
"""Smallest mel magnitude before the log: log-mel values are >= ln(1e-5)."""


@dataclass(frozen=True)
class MelSettings:
    """How mel frames relate to audio: the `audio` section of an addon.

    Plain values only, so that this package stays independent of the addon
    format: the caller builds it with ``MelSettings(**audio_section)``.
    Invalid combinations raise ``ValueError`` naming the field at fault.
    """

    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    fmin: float
    fmax: float

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"MelSettings.{name} must be a positive integer, got {value!r}")
        if self.win_length > self.n_fft:
            raise ValueError(
                f"MelSettings.win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})"
            )
        if self.hop_length > self.win_length:
            raise ValueError(
                f"MelSettings.hop_length ({self.hop_length}) must not exceed "
                f"win_length ({self.win_length}): frames would leave gaps in the audio"
            )
        nyquist = self.sample_rate / 2
        if not 0 <= self.fmin < self.fmax:
            raise ValueError(
                f"MelSettings.fmin ({self.fmin}) must satisfy 0 <= fmin < fmax ({self.fmax})"
            )
        if self.fmax > nyquist:
            raise ValueError(
                f"MelSettings.fmax ({self.fmax}) must not exceed the Nyquist frequency "
                f"sample_rate / 2 ({nyquist})"
            )

    @property
    def n_freqs(self) -> int:
        """Number of linear frequency bins of the one-sided STFT: ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Frequencies in Hz to Slaney mels (linear below 1 kHz, logarithmic above)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _LINEAR_HZ_PER_MEL
    log = _LOG_REGION_START_MEL + np.log(np.maximum(hz, _LOG_REGION_START_HZ) / _LOG_REGION_START_HZ) / _LOG_STEP
    return np.where(hz >= _LOG_REGION_START_HZ, log, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Slaney mels to frequencies in Hz: the inverse of `hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _LINEAR_HZ_PER_MEL
    log = _LOG_REGION_START_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _LOG_REGION_START_MEL) - _LOG_REGION_START_MEL))
    return np.where(mel >= _LOG_REGION_START_MEL, log, linear)


def mel_filterbank(settings: MelSettings) -> torch.Tensor:
    """Triangular mel filters, float32 ``[n_mels, n_fft // 2 + 1]``.

    Filter ``m`` rises from mel point ``m`` to a peak at mel point ``m + 1`` and
    falls to zero at ``m + 2``, for ``n_mels + 2`` points evenly spaced on the
    Slaney mel scale between fmin and fmax; each filter is then divided by half
    its width in Hz (Slaney area normalisation), as librosa does by default.
    """
    fft_hz = np.linspace(0.0, settings.sample_rate / 2, settings.n_freqs)
    edges_hz = mel_to_hz(
        np.linspace(hz_to_mel(settings.fmin), hz_to_mel(settings.fmax), settings.n_mels + 2)
    )
    widths = np.diff(edges_hz)
    distance = edges_hz[:, None] - fft_hz[None, :]
    rising = -distance[:-2] / widths[:-1, None]
    falling = distance[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def log_mel_spectrogram(audio: np.ndarray, settings: MelSettings) -> np.ndarray:
    """Log-mel spectrogram of mono audio, float32 ``[1 + len(audio) // hop_length, n_mels]``.

    ``audio`` is a 1-D float array in [-1, 1]. It must be longer than
    ``n_fft // 2`` samples, because the centred STFT reflects that many samples
    at each end.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"audio must be a 1-D float array (mono), got shape {audio.shape} dtype {audio.dtype}"
        )
    if audio.shape[0] <= settings.n_fft // 2:
        raise ValueError(
            f"audio has {audio.shape[0]} samples; the centred STFT needs more than "
            f"n_fft // 2 = {settings.n_fft // 2}"
        )
    spectrum = torch.stft(
        torch.from_numpy(audio.astype(np.float32, copy=False)),
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        win_length=settings.win_length,
        window=torch.hann_window(settings.win_length),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    mel = mel_filterbank(settings) @ spectrum.abs()
    return torch.log(torch.clamp(mel, min=LOG_CLAMP)).T.contiguous().numpy()
