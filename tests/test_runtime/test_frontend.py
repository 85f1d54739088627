"""Text frontend and text edge cases: empty, unknown-only, very long."""

from __future__ import annotations

import pytest

import ttsstack
from ttsstack.runtime import RuntimeOptions
from ttsstack.runtime.frontend import CharactersFrontend, FrontendError, TextWarning, split_text

SYMBOLS = "_ abc."


def test_characters_lowercase_and_skip_unknown_reporting_each():
    frontend = CharactersFrontend({"type": "characters", "symbols": SYMBOLS, "pad": "_"})
    assert frontend.encode("ABz#c") == [2, 3, 4]
    assert frontend.encode("__a") == [2]  # the pad symbol is never produced from text
    reviewed = frontend.review("ABz#c")
    assert reviewed.summary() == "U+007A at 2 (not in the symbol table), U+0023 at 3 (not in the symbol table)"
    with pytest.warns(TextWarning, match=r"not spoken: U\+007A at 2 .*U\+0023 at 3"):
        assert [t.tolist() for t in frontend.pieces("ABz#c", 16)] == [[[2, 3, 4]]]


def test_split_text_keeps_every_piece_under_the_limit():
    text = "One two three. " + "word " * 50 + "and a clause, then more, then the end!"
    pieces = split_text(text, max_chars=20)
    assert all(len(p) <= 20 for p in pieces)
    assert " ".join(pieces).split() == text.split()
    assert split_text("x" * 45, max_chars=20) == ["x" * 20, "x" * 20, "x" * 5]


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_a_clear_error(tiny_compiled, text):
    voice = ttsstack.load(tiny_compiled, backend="cpu")
    with pytest.raises(FrontendError, match="text is empty"):
        voice.synthesize(text)


def test_only_unknown_characters_is_a_clear_error(tiny_compiled):
    voice = ttsstack.load(tiny_compiled, backend="cpu")
    with pytest.warns(UserWarning), pytest.raises(FrontendError, match="no character the frontend can speak"):
        voice.synthesize("###%%%")


def test_twenty_thousand_characters_stream_in_bounded_chunks(tiny_compiled):
    voice = ttsstack.load(tiny_compiled, backend="cpu", options=RuntimeOptions(chunk_frames=256, first_chunk_frames=32))
    sentence = "the quick brown fox jumps over the lazy dog and keeps running far away. "
    text = (sentence * (20_000 // len(sentence) + 1))[:20_000]
    pieces = list(voice.frontend.pieces(text, voice.max_tokens))
    assert max(p.shape[1] for p in pieces) <= voice.max_tokens
    frames = 0
    largest = 0
    for chunk in voice.stream(text):
        frames += len(chunk)
        largest = max(largest, len(chunk))
    assert largest <= 256  # memory is bounded by the chunk size, not the text length
    assert frames >= 2 * 20_000 * 0.8  # every symbol spoke (>= 2 frames each; spaces and dots included)


def test_sentence_longer_than_max_tokens_is_split(tiny_compiled):
    voice = ttsstack.load(tiny_compiled, backend="cpu")
    text = "abc " * 200  # 800 characters, one sentence, T_text max is 256
    pieces = list(voice.frontend.pieces(text, voice.max_tokens))
    assert len(pieces) >= 4 and all(p.shape[1] <= voice.max_tokens for p in pieces)
    assert len(voice.synthesize(text)) > 0


def test_packing_joins_sentences_up_to_the_limit():
    from ttsstack.runtime.frontend import pack_sentences

    assert pack_sentences(["ab.", "cd.", "efghij.", "k."], 7) == ["ab. cd.", "efghij.", "k."]


def test_unsplit_synthesis_runs_fewer_longer_pieces(tiny_compiled):
    split = ttsstack.load(tiny_compiled, backend="cpu")
    packed = ttsstack.load(tiny_compiled, backend="cpu", options=RuntimeOptions(sentence_split=False))
    text = "Abc def. Ghi jk! Lmn op?"
    assert len(list(split.frontend.pieces(text, 256))) == 3
    assert len(list(packed.frontend.pieces(text, 256, pack=True))) == 1
    assert len(packed.synthesize(text)) > 0


def test_phoneme_frontend_uses_the_trained_table():
    import json
    from pathlib import Path

    from ttsstack.runtime.frontend import PhonemesFrontend

    pytest.importorskip("espeakng_loader", reason="espeak-ng comes with the [espeak] extra")
    table = json.loads((Path(__file__).resolve().parents[2] / "addons" / "fastpitch-demo" / "symbols.json").read_text())
    frontend = PhonemesFrontend({"type": "phonemes", "symbols": table["symbols"], "pad": table["pad"]})
    ids = frontend.encode("Hello world.")
    assert [table["symbols"][i] for i in ids] == ["_", "h", "@", "l", "'oU", "w", "'3:", "l", "d", "_:"]
    assert 0 not in ids  # the pad id is never produced
    with pytest.warns(UserWarning, match="dropping phonemes not in the symbol table: 'A: _: h"):
        assert PhonemesFrontend({"type": "phonemes", "symbols": ["<pad>", "_", "@"], "pad": "<pad>"}).encode("ha") == [1]


def test_phonemize_at_its_fast_rate_gives_the_tokens_of_training_speech():
    pytest.importorskip("espeakng_loader", reason="espeak-ng comes with the [espeak] extra")
    from ttsstack.runtime import phonemes

    texts = ["Hello world.", "Well, it's 3:45 on May 2nd; Dr. Smith (the vet) isn't here!",
             "A voice assistant that waits for a whole paragraph before it speaks feels slow, even when its total time is short."]
    before = phonemes.render(texts[0])
    for text in texts:
        assert phonemes.phonemize(text) == phonemes.render(text).phonemes, text
    # the training rate is back after a phonemize call (espeak-ng's length varies by a few samples per call)
    after = phonemes.render(texts[0])
    assert abs(len(after.audio) - len(before.audio)) < 0.01 * len(before.audio)
    assert len(phonemes.render(texts[0], rate=phonemes.PHONEMIZE_RATE).audio) < 0.7 * len(before.audio)


@pytest.mark.parametrize("text, spoken, skipped", [
    ("\x00Hello world", "Hello world", ["U+0000 at 0 (control character)"]),
    ("Hello\ud800 world", "Hello world", ["U+D800 at 5 (invalid code point)"]),
    ("Hello\ufffe\x7f world", "Hello world", ["U+FFFE at 5 (invalid code point)", "U+007F at 6 (control character)"]),
    ("Hello\tnew\nline\u00a0here", "Hello new line here", []),
])
def test_control_and_invalid_characters_are_removed_and_named(text, spoken, skipped):
    frontend = CharactersFrontend({"type": "characters", "symbols": "_ abcdefghijklmnopqrstuvwxyz", "pad": "_"})
    reviewed = frontend.review(text)
    assert reviewed.text == spoken
    assert [s.describe() for s in reviewed.skipped] == skipped


def test_nul_and_surrogate_lose_nothing_through_the_api(tiny_compiled):
    voice = ttsstack.load(tiny_compiled, backend="cpu")
    reference = voice.synthesize_audio("Hello world")
    for bad in ["\x00", "\ud800"]:
        with pytest.warns(TextWarning, match=rf"U\+{ord(bad):04X} at 0"):
            audio = voice.synthesize_audio(bad + "Hello world")
        assert audio.shape == reference.shape and abs(audio - reference).max() == 0


def test_phonemes_frontend_reads_out_what_espeak_knows_and_survives_bad_characters():
    pytest.importorskip("espeakng_loader")
    from ttsstack.runtime.frontend import PhonemesFrontend
    from ttsstack.runtime.phonemes import phonemize

    symbols = ["<pad>"] + sorted({s for t in ["Hello world", "forty two", "grinning face"] for s in phonemize(t)})
    frontend = PhonemesFrontend({"type": "phonemes", "symbols": symbols, "pad": "<pad>"})
    assert frontend.review("Hello 42 😀 你").skipped == ()  # espeak-ng reads them out: nothing skipped
    hello = frontend.encode("Hello world")
    for bad in ["\x00", "\ud800"]:
        with pytest.warns(TextWarning):
            pieces = [p[0].tolist() for p in frontend.pieces(bad + "Hello world", 64)]
        assert pieces == [hello]  # a NUL no longer cuts the text; a surrogate is no UnicodeEncodeError
    with pytest.raises(ValueError, match="U\\+0000 at 5"):
        phonemize("Hello\x00 world")


def test_whole_result_calls_refuse_text_over_their_limit(tiny_compiled):
    voice = ttsstack.load(tiny_compiled, backend="cpu")
    with pytest.raises(ValueError, match="over the whole-result limit of 50: iterate Voice.stream_audio"):
        voice.synthesize_audio("a" * 51, max_chars=50)
    with pytest.raises(ValueError, match="whole-result limit of 10000"):
        voice.synthesize("a" * 10_001)
    assert len(voice.synthesize_audio("abc " * 20, max_chars=None)) > 0
