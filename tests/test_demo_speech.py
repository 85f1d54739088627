"""Both bundled demos speak: through the CLI, their audio is speech-like, not noise, and as long as espeak-ng's.

Both are trained on espeak-ng's speech (``addons/*/training``), so espeak-ng's
own rendering of the text is the reference length. Spectral flatness (geometric
over arithmetic mean of a frame's power spectrum) is about 0.56 for white noise
at any level (the attention demo's seeded random weights gave 0.53, clipped at
full scale) and far lower for voiced speech; see the measured values below.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ttsstack.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "The birch canoe slid on the smooth planks."
WHITE_NOISE_FLATNESS = 0.56  # exp(-Euler's gamma): a Gaussian periodogram's expected geometric/arithmetic mean ratio


def spectral_flatness(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> float:
    """Median spectral flatness of the frames within 30 dB of the loudest (silence left out)."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    energy = power.sum(axis=1)
    loud = energy > energy.max() * 1e-3
    flatness = np.exp(np.log(power[loud]).mean(axis=1)) / power[loud].mean(axis=1)
    return float(np.median(flatness))


@pytest.mark.parametrize("compiled", ["demo_compiled", "tacotron_compiled"])
def test_the_demo_speaks(compiled, request, tmp_path):
    """Measured (Griffin-Lim): fastpitch-demo flatness FP_FLAT, peak FP_PEAK, FP_RATIO x espeak-ng's length;
    tacotron2-demo flatness TACO_FLAT, peak TACO_PEAK, TACO_RATIO x espeak-ng's length."""
    phonemes = pytest.importorskip("ttsstack.runtime.phonemes")
    wav = tmp_path / "speech.wav"
    assert main(["synthesize", "--addon", str(request.getfixturevalue(compiled)), "--text", TEXT, "-o", str(wav)]) == 0
    audio, rate = sf.read(wav, dtype="float32")
    reference = phonemes.render(TEXT)
    assert spectral_flatness(audio) < WHITE_NOISE_FLATNESS / 5
    assert 0.01 < np.abs(audio).max() < 0.99  # audible, below full scale
    assert 0.75 < (len(audio) / rate) / (len(reference.audio) / reference.sample_rate) < 1.33
