"""FramedSTFT: the same transforms as torch.stft / torch.istft, in frames-major layout."""

import pytest
import torch

from ttsstack.audio.stft import FramedSTFT


@pytest.mark.parametrize("n_fft, hop, win", [(1024, 256, 1024), (512, 160, 400), (64, 16, 48)])
def test_matches_torch_stft_and_istft(n_fft, hop, win):
    frames = 23
    length = frames * hop
    stft = FramedSTFT(n_fft, hop, win)
    signal = torch.randn(length, generator=torch.Generator().manual_seed(0))
    expected = torch.stft(signal, n_fft, hop, win, torch.hann_window(win), center=True,
                          pad_mode="constant", return_complex=True)[:, :frames].T
    spectrum = stft.forward(signal, frames)
    torch.testing.assert_close(spectrum, expected, rtol=0, atol=1e-4)

    rebuilt = stft.inverse(spectrum, length, stft.envelope(frames, length))
    reference = torch.istft(expected.T, n_fft, hop, win, torch.hann_window(win), center=True, length=length)
    torch.testing.assert_close(rebuilt, reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(rebuilt, signal, rtol=0, atol=1e-5)


def test_a_window_with_gaps_is_refused():
    stft = FramedSTFT(64, 64, 64)
    with pytest.raises(ValueError, match="hop_length must be shorter than the window"):
        stft.envelope(10, 640)
