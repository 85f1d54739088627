"""The demo's neural vocoder (``addons/fastpitch-demo/vocoder.py``): an exact inverse STFT, its true context, exact padding."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ttsstack.addon import load_addon
from ttsstack.tolerances import STREAMING

from .conftest import DEMO_ADDON
from .tiny_vocoder import receptive_radius

SCRIPT = Path(__file__).resolve().parents[1] / "addons" / "fastpitch-demo" / "vocoder.py"
N_MELS, N_FFT, HOP = 8, 64, 16


def _module():
    spec = importlib.util.spec_from_file_location("fastpitch_demo_vocoder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VOCODER = _module()


def small_vocoder() -> torch.nn.Module:
    """The demo's architecture at toy sizes, seeded (random weights: every frame moves the samples it reaches)."""
    torch.manual_seed(0)
    return VOCODER.VocosDemo(n_mels=N_MELS, n_fft=N_FFT, hop=HOP, dim=16, hidden=32, blocks=2, kernel=5).eval()


def test_inverse_stft_undoes_torch_stft():
    signal = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    spectrum = torch.stft(signal, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, return_complex=True)
    frames = spectrum.shape[1]
    audio = VOCODER.InverseSTFT(N_FFT, HOP)(torch.cat([spectrum.real, spectrum.imag])[None], torch.ones(1, 1, frames))
    assert audio.shape == (1, frames * HOP)
    assert torch.allclose(audio[0, : len(signal)], signal, atol=1e-5)


def test_declared_context_is_the_true_receptive_radius():
    model = small_vocoder()
    with torch.no_grad():
        radius = receptive_radius(lambda mel: model(mel, torch.ones(mel.shape[:2])), 24, N_MELS, HOP)
    assert radius == model.context() == 3 * 2 + 2  # three convolutions of kernel 5, overlap-add of 64/16 samples


def test_padded_frames_leave_the_real_samples_unchanged():
    model = small_vocoder()
    mel = torch.randn(1, 20, N_MELS)
    padded = torch.cat([mel, torch.randn(1, 12, N_MELS)], dim=1)
    mask = torch.cat([torch.ones(1, 20), torch.zeros(1, 12)], dim=1)
    with torch.no_grad():
        whole, run_padded = model(mel, torch.ones(1, 20)), model(padded, mask)
    assert (run_padded[:, : 20 * HOP] - whole).abs().max() <= STREAMING.atol


def test_the_demo_speaks_through_its_trained_vocoder_network():
    spec = load_addon(DEMO_ADDON).spec
    assert spec.vocoder == {"type": "Network", "network": "vocoder"}
    trained = VOCODER.load_trained(SCRIPT.parent / "vocoder.safetensors")
    assert spec.networks["vocoder"].context == trained.context()
