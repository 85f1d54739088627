"""Alignments (durations, attention) to word frames, and clauses cut out of text as it is written."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml

import ttsstack
from ttsstack.compiler import compile_addon
from ttsstack.runtime.alignment import Alignment
from ttsstack.runtime.clauses import Clause, ClauseBuffer
from ttsstack.runtime.words import PieceWord

WORDS = [PieceWord(0, 5, 1, 2), PieceWord(6, 11, 4, 5)]  # tokens: pause, w1, w1, pause, w2, w2, pause


def test_durations_give_each_word_its_frames_at_once():
    alignment = Alignment(WORDS)
    alignment.durations(torch.tensor([2, 3, 1, 4, 0, 2, 5]))
    assert alignment.finished() == [(WORDS[0], 2, 6), (WORDS[1], 10, 12)]
    assert alignment.finished() == []  # each word once


def test_attention_words_finish_when_attention_has_passed_them():
    alignment = Alignment(WORDS)

    def step(token: int) -> None:
        weights = torch.full((1, 7), 0.01)
        weights[0, token] = 1.0
        alignment.attention(weights, frames=2)

    for token in [0, 1, 2, 1, 3]:  # the step back to token 1 is held at 2: alignments are monotonic
        step(token)
    assert alignment.finished() == [(WORDS[0], 2, 8)]
    step(4)
    assert alignment.finished() == []  # the second word is not passed yet
    alignment.complete()
    assert alignment.finished() == [(WORDS[1], 10, 12)]


def test_autoregressive_decoder_with_alignment_gives_timings(tiny_tacotron_compiled, tmp_path):
    folder = tmp_path / "compiled"
    shutil.copytree(tiny_tacotron_compiled, folder)
    data = yaml.safe_load((folder / "addon.yaml").read_text())
    decoder = data["stack"][0]["streamable_block"]["stack"][0]
    assert decoder["type"] == "AutoregressiveDecoder"
    decoder["alignment"] = "new_attention"
    (folder / "addon.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    compile_addon(folder, folder, [], progress=False)  # re-hash the edited config
    voice = ttsstack.load(folder, backend="eager", compile_if_needed=False)
    text = "hi there, you"
    items = list(voice.stream(text, timings=True))
    frames = np.concatenate([i.chunk for i in items])
    np.testing.assert_array_equal(frames, voice.synthesize(text))
    words = [w for i in items for w in i.words]
    assert [w.text for w in words] == ["hi", "there", "you"]
    assert all(a.end_s <= b.start_s for a, b in zip(words, words[1:]))
    assert words[-1].end_s == pytest.approx(len(frames) * voice.spec.audio.hop_length / voice.sample_rate)


def test_clauses_end_at_punctuation_followed_by_whitespace():
    buffer = ClauseBuffer()
    assert buffer.feed("It costs 3.5 dollars, e.g. today") == [Clause("It costs 3.5 dollars,", 0), Clause("e.g.", 22)]
    assert buffer.feed(".") == []  # the end of a clause shows only with the whitespace after it
    assert buffer.feed('  "Next!" one') == [Clause("today.", 27), Clause('"Next!"', 35)]
    buffer.clear()  # " one" is dropped
    assert buffer.feed(" after") == [] and buffer.flush() == Clause("after", 47)
    assert buffer.flush() is None
