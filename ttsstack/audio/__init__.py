"""Audio: mel analysis, the Griffin-Lim vocoder and WAV (and other audio file) output.

This package stands apart from the rest of ttsstack: it imports nothing else of
it and takes plain parameters only (`MelSettings` is built from plain values).
"""

from .griffin_lim import GriffinLim
from .mel import MelSettings, hz_to_mel, log_mel_spectrogram, mel_filterbank, mel_to_hz
from .wav import AUDIO_SUFFIXES, UNKNOWN_SIZE, audio_format_for, float_to_pcm16, wav_header, write_audio, write_wav

__all__ = [
    "AUDIO_SUFFIXES",
    "UNKNOWN_SIZE",
    "audio_format_for",
    "GriffinLim",
    "MelSettings",
    "float_to_pcm16",
    "hz_to_mel",
    "log_mel_spectrogram",
    "mel_filterbank",
    "mel_to_hz",
    "wav_header",
    "write_audio",
    "write_wav",
]
