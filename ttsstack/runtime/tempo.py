"""Speaking rate for stacks whose blocks do not read ``speed``: the mel stream resampled along time.

A duration model applies ``speed`` where it belongs (the Upsampler divides
durations by it). An attention decoder has no durations to divide, so the
Voice resamples its mel instead: output frame ``k`` is the linear
interpolation of the input at time ``k * speed``, which shortens or lengthens
the speech and keeps its pitch (each frame is still a spectrum of the voice).
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np


def resample_time(chunks: Iterable[np.ndarray], speed: float) -> Iterator[np.ndarray]:
    """Mel chunks ``[frames, n_mels]`` at ``speed`` times the rate: ``ceil(N / speed)`` frames for ``N`` in.

    Streams: each output frame is yielded as soon as both input frames it
    interpolates have arrived, so the result equals resampling the whole mel.
    """
    previous: np.ndarray | None = None  # the last input frame, [1, n_mels]
    first_index = 0  # global index of the first frame of the current window
    k = 0  # next output frame
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        frames = chunk if previous is None else np.concatenate([previous, chunk])
        last = first_index + len(frames) - 1  # global index of the newest frame
        stop = math.ceil(last / speed)  # outputs whose two input frames have both arrived: k * speed < last
        if stop > k:
            positions = np.arange(k, stop) * speed
            yield _interpolate(frames, positions - first_index)
            k = stop
        previous, first_index = frames[-1:], last
    if previous is not None:
        remaining = math.ceil((first_index + 1) / speed) - k  # positions in [N - 1, N): the last frame
        if remaining > 0:
            yield np.repeat(previous, remaining, axis=0)


def _interpolate(frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Rows of ``frames`` at fractional ``positions`` (each below ``len(frames) - 1``), linearly interpolated."""
    index = np.floor(positions).astype(np.int64)
    frac = (positions - index)[:, None].astype(frames.dtype)
    return (1 - frac) * frames[index] + frac * frames[index + 1]
