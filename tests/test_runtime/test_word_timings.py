"""Word timings of the demo voice against espeak-ng's own word timings, and what a voice without them says."""

from __future__ import annotations

import numpy as np
import pytest

import ttsstack
from ttsstack.runtime.blocks.encoders import NetworkBlock
from ttsstack.runtime.frontend import TimingsUnavailable, split_text
from ttsstack.runtime.phonemes import render, word_starts
from ttsstack.tolerances import WORD_TIMINGS_DEMO_PREDICTED, WORD_TIMINGS_FROM_ESPEAK_DURATIONS

SENTENCES = [
    "Hello there, world: forty two times.",
    "The quick brown fox jumps over the lazy dog.",
    "Speech streams while it is made; every word gets a time!",
    "Don't stop me now, I'm having such a good time.",
]
NOISE = "\x00\x1b"
"""Control characters, removed by the frontend's review: the offsets must still be the input's."""


@pytest.fixture(scope="module")
def demo(demo_compiled):
    return ttsstack.load(demo_compiled, backend="cpu")


@pytest.fixture
def espeak_durations(demo):
    """The demo's duration network still runs, but the Upsampler gets the durations of espeak-ng's own audio."""
    encoder = next(b for _, b in demo.tree() if isinstance(b, NetworkBlock) and "durations" in b.writes())
    real = encoder.runner
    queue: list[list[int]] = []

    def forced(inputs):
        outputs = dict(real(inputs))
        wanted = queue.pop(0)
        assert outputs["durations"].shape[1] == len(wanted)
        outputs["durations"] = outputs["durations"].new_tensor([wanted])
        return outputs

    encoder.runner = forced
    yield queue
    encoder.runner = real


def _timed(voice, text, audio=False):
    items = list((voice.stream_audio if audio else voice.stream)(text, timings=True))
    return np.concatenate([i.chunk for i in items]), [w for i in items for w in i.words]


def _errors(voice, text: str, pieces: list[str], piece_frames: list[int], words) -> list[float]:
    """Frames between each word's start and espeak-ng's start of it (:func:`word_starts`), piece by piece (as spoken);
    ``piece_frames``: the frames of each piece in the stream."""
    hop, rate = voice.spec.audio.hop_length, voice.sample_rate
    errors, offset, at = [], 0, 0
    for piece, frames in zip(pieces, piece_frames):
        start = text.index(piece[:5], at)
        events, espeak_rate = word_starts(piece)
        assert espeak_rate == rate
        for word in (w for w in words if start <= w.char_start < start + len(piece)):
            sample = min(s for c, s in events if word.char_start - start <= c < word.char_end - start)
            errors.append(word.start_s * rate / hop - offset - sample / hop)
        offset += frames
        at = start + len(piece)
    return errors


def _assert_bar(errors, bar):
    error = np.abs(errors)
    assert np.median(error) <= bar.median_frames and np.percentile(error, 95) <= bar.p95_frames, (
        f"word start error: median {np.median(error):.2f}, p95 {np.percentile(error, 95):.2f} frames; "
        f"allowed {bar}; errors {np.round(errors, 2).tolist()}"
    )


def _pieces(voice, text: str) -> list[str]:
    """The pieces the frontend speaks one by one (sentences, split at ``;`` too)."""
    return split_text(voice.frontend.review(text).text.strip(), voice.max_tokens)


def test_word_timings_from_espeak_durations_land_on_espeak_words(demo, espeak_durations):
    text = NOISE + "  ".join(SENTENCES)
    pieces = _pieces(demo, text)
    durations = [render(p).frame_durations(demo.spec.audio.hop_length) for p in pieces]
    espeak_durations.extend(durations)
    mel, words = _timed(demo, text)
    assert [w.text for w in words[:4]] == ["Hello", "there", "world", "forty"]
    assert all(text[w.char_start:w.char_end] == w.text for w in words)
    assert len(words) == sum(len(s.split()) for s in SENTENCES)
    assert words[-1].end_s <= len(mel) * demo.spec.audio.hop_length / demo.sample_rate
    _assert_bar(_errors(demo, text, pieces, [sum(d) for d in durations], words), WORD_TIMINGS_FROM_ESPEAK_DURATIONS)


def test_demo_word_timings(demo):
    text = " ".join(SENTENCES)
    mel, words = _timed(demo, text)
    starts = [w.start_s for w in words]
    assert starts == sorted(starts) and all(w.end_s > w.start_s for w in words)
    pieces = _pieces(demo, text)
    frames = [len(demo.synthesize(p)) for p in pieces]  # each piece is synthesized on its own
    _assert_bar(_errors(demo, text, pieces, frames, words), WORD_TIMINGS_DEMO_PREDICTED)


def test_audio_with_timings_is_the_audio_without(tiny_compiled):
    voice = ttsstack.load(tiny_compiled, backend="cpu", compile_if_needed=False)  # the characters frontend
    text = "Audio,\twith  timings!"
    audio, words = _timed(voice, text, audio=True)
    np.testing.assert_array_equal(audio, voice.synthesize_audio(text))
    assert [(w.text, w.char_start) for w in words] == [("Audio", 0), ("with", 7), ("timings", 13)]
    assert words == _timed(voice, text)[1]


def test_voice_without_alignment_says_so(tiny_tacotron_compiled):
    voice = ttsstack.load(tiny_tacotron_compiled, backend="eager", compile_if_needed=False)
    assert "alignment" in voice.timings_unavailable
    with pytest.raises(TimingsUnavailable, match="cannot give word timings.*alignment"):
        next(voice.stream_audio("hello there", timings=True))
