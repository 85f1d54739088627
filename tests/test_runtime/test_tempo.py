"""``resample_time``: streamed resampling equals resampling the whole mel, however it is chunked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ttsstack.runtime.tempo import resample_time


def _whole(mel: np.ndarray, speed: float) -> np.ndarray:
    """The reference: ``np.interp`` of every bin at ``k * speed`` for ``k < N / speed`` (clamped at the end)."""
    positions = np.arange(math.ceil(len(mel) / speed)) * speed
    grid = np.arange(len(mel))
    return np.stack([np.interp(positions, grid, mel[:, b]) for b in range(mel.shape[1])], axis=1)


@pytest.mark.parametrize("speed", [0.37, 0.5, 1.3, 2.0, 3.7])
@pytest.mark.parametrize("sizes", [[50], [1, 1, 1, 47], [7, 0, 13, 30], [32, 18]])
def test_streamed_equals_whole(speed, sizes):
    mel = np.random.default_rng(0).standard_normal((sum(sizes), 4)).astype(np.float32)
    chunks, start = [], 0
    for n in sizes:
        chunks.append(mel[start:start + n])
        start += n
    streamed = np.concatenate(list(resample_time(iter(chunks), speed)))
    np.testing.assert_allclose(streamed, _whole(mel, speed), rtol=1e-5, atol=1e-6)


def test_nothing_in_nothing_out():
    assert list(resample_time(iter([]), 2.0)) == []
