"""A centred STFT and its inverse, frames-major, built for Griffin-Lim's inner loop.

``torch.istft`` rebuilds the window envelope by a general col2im overlap-add and
checks it on every call; inside Griffin-Lim (two transforms per iteration, 32
iterations per block) that made the inverse four times the cost of the forward
transform and the largest share of the vocoder. Here the window is fixed once,
overlap-add is ``ceil(n_fft / hop)`` strided additions, and the envelope is
computed once per block and reused by every iteration. The results equal
``torch.stft(center=True, pad_mode="constant")`` and ``torch.istft(center=True)``
to float32 rounding, in ``[frames, n_freqs]`` layout.
"""

from __future__ import annotations

import math

import torch

_NOLA_FLOOR = 1e-11
"""Smallest window envelope the inverse divides by (torch.istft's own threshold)."""


class FramedSTFT:
    """Centred, zero-padded STFT and overlap-add inverse with a Hann window.

    The window (``win_length`` samples, periodic Hann) is centred in ``n_fft``
    samples, as ``torch.stft`` does. Frame ``i`` is centred on sample
    ``i * hop_length``.
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: int) -> None:
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.overlaps = math.ceil(n_fft / hop_length)
        left = (n_fft - win_length) // 2
        self.window = torch.nn.functional.pad(torch.hann_window(win_length), (left, n_fft - win_length - left))

    def forward(self, signal: torch.Tensor, frames: int) -> torch.Tensor:
        """The first ``frames`` frames of the signal's spectrum, complex ``[frames, n_fft // 2 + 1]``."""
        half = self.n_fft // 2
        needed = (frames - 1) * self.hop_length + self.n_fft
        padded = torch.nn.functional.pad(signal, (half, max(0, needed - half - signal.shape[0])))[:needed]
        return torch.fft.rfft(padded.unfold(0, self.n_fft, self.hop_length) * self.window, dim=1)

    def envelope(self, frames: int, length: int) -> torch.Tensor:
        """The squared-window overlap-add that `inverse` divides by, ``[length]`` samples.

        Raises ValueError where it falls below torch.istft's threshold, as
        there the inverse would divide by (almost) zero.
        """
        squared = (self.window * self.window).expand(frames, self.n_fft)
        envelope = self._overlap_add(squared, length)
        if length and envelope.min() < _NOLA_FLOOR:
            raise ValueError(
                f"the window envelope falls below {_NOLA_FLOOR} (n_fft {self.n_fft}, hop_length "
                f"{self.hop_length}): hop_length must be shorter than the window"
            )
        return envelope

    def inverse(self, spectrum: torch.Tensor, length: int, envelope: torch.Tensor) -> torch.Tensor:
        """The signal of a complex ``[frames, n_freqs]`` spectrum, ``length`` samples from frame 0's centre."""
        frames = torch.fft.irfft(spectrum, n=self.n_fft, dim=1) * self.window
        return self._overlap_add(frames, length) / envelope

    def _overlap_add(self, frames: torch.Tensor, length: int) -> torch.Tensor:
        """Sum of ``[m, n_fft]`` frames placed ``hop_length`` apart, cropped to ``length`` samples after ``n_fft // 2``."""
        hop, count = self.hop_length, frames.shape[0]
        if self.overlaps * hop != self.n_fft:
            frames = torch.nn.functional.pad(frames, (0, self.overlaps * hop - self.n_fft))
        pieces = frames.view(count, self.overlaps, hop)
        half = self.n_fft // 2
        rows = max(count + self.overlaps - 1, -(-(half + length) // hop))
        out = torch.zeros(rows, hop)
        for j in range(self.overlaps):
            out[j : j + count] += pieces[:, j]
        return out.view(-1)[half : half + length]
