"""Word timings: when each word of the input is spoken, in the audio a Voice streams.

:func:`timed_frames` synthesizes like ``Voice.stream`` and, for each piece,
records which token every frame speaks (:mod:`~ttsstack.runtime.alignment`);
each word's frames then become seconds in the whole stream (frame ``t``
starts at sample ``t * hop_length``), and its characters are those of the
text as the caller gave it. A word is reported once, as soon as its end is
known: with durations, when its piece starts; with attention, when the
decoder has moved past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from .alignment import ALIGNMENT, Alignment
from .blocks.windows import PRIOR_FRAMES
from .frontend import TimingsUnavailable

if TYPE_CHECKING:
    from .voice import Voice


@dataclass(frozen=True)
class WordTiming:
    """One word of the input: its text, its characters ``[char_start, char_end)`` in the input, and when
    it is spoken, ``[start_s, end_s)`` seconds from the start of the audio."""

    text: str
    char_start: int
    char_end: int
    start_s: float
    end_s: float

    def as_dict(self) -> dict:
        """JSON-ready: ``{"word", "start_char", "end_char", "start", "end"}`` (seconds, to the microsecond)."""
        return {"word": self.text, "start_char": self.char_start, "end_char": self.char_end,
                "start": round(self.start_s, 6), "end": round(self.end_s, 6)}


@dataclass(frozen=True)
class TimedChunk:
    """A chunk (audio samples, or frames ``[frames, C]``) and the words whose timings became known while it was made."""

    chunk: np.ndarray
    words: tuple[WordTiming, ...]


def with_words(chunks: Iterator[np.ndarray], found: list[WordTiming], empty: np.ndarray) -> Iterator[TimedChunk]:
    """Each of ``chunks`` with the words added to ``found`` since the previous one; words found after the
    last chunk come with ``empty``."""
    for chunk in chunks:
        words, found[:] = tuple(found), []
        yield TimedChunk(chunk, words)
    if found:
        yield TimedChunk(empty, tuple(found))


def timings_support(voice: "Voice") -> str | None:
    """Why ``voice`` cannot give word timings, or None when it can."""
    if not voice.frontend.maps_words:
        return f"its {type(voice.frontend).__name__} does not map tokens back to the text's words"
    if not any(block.records_alignment() for _, block in voice.tree()):
        return ("no block of its stack records which token each frame speaks (an Upsampler does; an "
                "AutoregressiveDecoder does with `alignment:` naming its attention weights output)")
    return None


@torch.inference_mode()
def timed_frames(voice: "Voice", text: str, speed: float, speaker, found: list[WordTiming]) -> Iterator[np.ndarray]:
    """``voice.stream(text)``'s frame chunks; the timings of finished words are appended to ``found`` as they are known."""
    reason = timings_support(voice)
    if reason is not None:
        raise TimingsUnavailable(f"addon '{voice.spec.name}' cannot give word timings: {reason}")
    seconds_per_frame = voice.spec.audio.hop_length / voice.sample_rate
    if not voice.stack_reads_speed:
        seconds_per_frame /= speed  # the Voice resamples the frames along time (tempo.resample_time)
    controls = voice._call_controls(speed, speaker)
    before = 0  # frames of the pieces before this one
    for piece in voice.frontend.timed_pieces(text, voice.max_tokens, pack=not voice.options.sentence_split):
        alignment = Alignment(piece.words)
        frames = 0
        for chunk in voice._piece(piece.tokens, {**controls, ALIGNMENT: alignment, PRIOR_FRAMES: before}):
            frames += chunk.shape[1]
            yield chunk[0].numpy()
            found.extend(_seconds(text, alignment.finished(), before, seconds_per_frame))
        alignment.complete()
        found.extend(_seconds(text, alignment.finished(), before, seconds_per_frame))
        before += frames


def _seconds(text: str, finished, before: int, seconds_per_frame: float) -> list[WordTiming]:
    """Finished words (:meth:`Alignment.finished`) of a piece starting at frame ``before``, in seconds."""
    return [
        WordTiming(text[w.char_start:w.char_end], w.char_start, w.char_end,
                   (before + start) * seconds_per_frame, (before + end) * seconds_per_frame)
        for w, start, end in finished
    ]
