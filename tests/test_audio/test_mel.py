"""Mel settings, the Slaney filterbank and the log-mel spectrogram."""

import dataclasses
import math

import numpy as np
import pytest

from ttsstack.audio import MelSettings, hz_to_mel, log_mel_spectrogram, mel_filterbank, mel_to_hz

SETTINGS = MelSettings(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=0, fmax=8000)
BIN_HZ = 22050 / 1024


def test_slaney_scale_anchor_points():
    # Linear at 200/3 Hz per mel up to 1 kHz (= 15 mel), then 27 mels per factor 6.4.
    np.testing.assert_allclose(hz_to_mel([0.0, 200 / 3, 1000.0, 6400.0]), [0.0, 1.0, 15.0, 42.0], atol=1e-9)
    hz = np.array([0.0, 123.0, 999.0, 1000.0, 4567.0, 11025.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, rtol=1e-12, atol=1e-9)


def test_filterbank_shape_and_values():
    fb = mel_filterbank(SETTINGS).numpy()
    assert fb.shape == (80, 513) and fb.dtype == np.float32
    assert (fb >= 0).all()
    assert (fb.max(axis=1) > 0).all(), "every filter covers at least one FFT bin"
    assert not fb[:, round(8000 / BIN_HZ) + 1 :].any(), "nothing above fmax"

    # First filter by hand: mel points are 45.2456.../81 mel apart, all below
    # 1 kHz so 200/3 Hz per mel: edges 0, 37.24 and 74.48 Hz, height 2 / 74.48.
    # Bin 1 (21.53 Hz) is on the rising side, bins 2 and 3 (43.07, 64.60 Hz)
    # on the falling side, bin 4 (86.13 Hz) past the end.
    step_hz = (15 + 27 * math.log(8) / math.log(6.4)) / 81 * 200 / 3
    height = 2 / (2 * step_hz)
    rising = [0 * BIN_HZ / step_hz, 1 * BIN_HZ / step_hz]
    falling = [(2 * step_hz - b * BIN_HZ) / step_hz for b in (2, 3)]
    expected = np.array(rising + falling) * height
    np.testing.assert_allclose(fb[0, :4], expected, rtol=1e-5, atol=1e-7)
    assert not fb[0, 4:].any()


def test_each_filter_peaks_at_its_centre_frequency():
    fb = mel_filterbank(SETTINGS).numpy()
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), 82))
    centres_in_bins = edges[1:-1] / BIN_HZ
    assert (np.abs(fb.argmax(axis=1) - centres_in_bins) < 1).all()


def test_slaney_area_normalisation():
    # Each triangle has height 2 / width, so its area in Hz is 1; filters spanning
    # many FFT bins show it in their sum.
    fb = mel_filterbank(SETTINGS).numpy()
    np.testing.assert_allclose(fb[40:].sum(axis=1) * BIN_HZ, 1.0, rtol=0.02)


def test_log_mel_of_a_440_hz_sine_peaks_at_the_right_bin():
    audio = (0.5 * np.sin(2 * np.pi * 440 * np.arange(11025) / 22050)).astype(np.float32)
    mel = log_mel_spectrogram(audio, SETTINGS)
    assert mel.shape == (1 + 11025 // 256, 80) and mel.dtype == np.float32
    # 440 Hz is 6.6 mel; filter m peaks at (m + 1) * 0.5586 mel, nearest for m = 11 (446.9 Hz).
    assert (mel[2:-2].argmax(axis=1) == 11).all()


def test_log_mel_of_silence_is_the_clamp_floor():
    mel = log_mel_spectrogram(np.zeros(2048, np.float32), SETTINGS)
    assert mel.shape == (9, 80)
    np.testing.assert_allclose(mel, np.log(1e-5), rtol=1e-6)


def test_log_mel_rejects_bad_audio():
    with pytest.raises(ValueError, match="1-D float"):
        log_mel_spectrogram(np.zeros((2, 2048), np.float32), SETTINGS)
    with pytest.raises(ValueError, match="n_fft // 2"):
        log_mel_spectrogram(np.zeros(512, np.float32), SETTINGS)


def test_settings_are_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SETTINGS.n_mels = 40
    with pytest.raises(ValueError, match="win_length"):
        dataclasses.replace(SETTINGS, win_length=2048)
    with pytest.raises(ValueError, match="fmax"):
        dataclasses.replace(SETTINGS, fmax=12000)
    with pytest.raises(ValueError, match="hop_length"):
        dataclasses.replace(SETTINGS, hop_length=0)
    assert SETTINGS.n_freqs == 513
