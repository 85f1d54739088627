"""Text frontends: text -> sentence-sized pieces of token ids.

A frontend turns text into the ``tokens`` tensor ``[1, T_text]`` that the
encoders read. Text is first split into sentences (then clauses, then words,
then hard cuts) so that no piece exceeds the largest ``T_text`` the networks
accept; each piece is synthesized in turn, which also bounds memory for long
texts and lets the first audio arrive after the first sentence only.

Before that, :meth:`Frontend.review` decides the fate of every character, so
nothing after a bad character is lost and nothing is dropped silently:

- whitespace of any kind (tabs, newlines, no-break spaces) becomes a space;
- control characters (NUL, ESC, DEL, C1 controls) and invalid code points
  (lone surrogates, noncharacters such as U+FFFE) are removed;
- characters the frontend cannot speak follow its own documented policy
  (:attr:`Frontend.policy`): ``characters`` skips anything outside its symbol
  table (digits, emoji, other scripts); ``phonemes`` lets espeak-ng read out
  whatever its voice knows (digits as numbers, emoji and CJK by name).

Every removed or skipped character is reported with its position in the
input: in the :class:`ReviewedText` (the server puts it in response headers)
and as one :class:`TextWarning` per synthesis call.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from .registry import FRONTENDS
from .words import PieceWord, locate, piece_words

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_CLAUSE_END = re.compile(r"(?<=[,:])\s+")
WORD_BOUNDARIES = frozenset(" \t.,;:!?-\u2013\u2014\u2026")  # symbols after which a piece may be cut


class FrontendError(ValueError):
    """Text that cannot be turned into tokens (empty, or nothing the frontend knows)."""


class TimingsUnavailable(ValueError):
    """Word timings were asked of a voice that cannot give them; the message says why."""


@dataclass(frozen=True)
class TimedPiece:
    """A piece of tokens ``[1, T]`` with its words: each word's characters in the original text and its tokens."""

    tokens: torch.Tensor
    words: tuple[PieceWord, ...]


class TextWarning(UserWarning):
    """Characters of the input were removed or skipped; the message names each one and its position."""


@dataclass(frozen=True)
class SkippedCharacter:
    """One character of the input that is not spoken: which, its index in the input, and why."""

    char: str
    position: int
    reason: str

    def describe(self) -> str:
        """``U+0000 at 3 (control character)``: ASCII only, fit for an HTTP header."""
        return f"U+{ord(self.char):04X} at {self.position} ({self.reason})"


@dataclass(frozen=True)
class ReviewedText:
    """The text a frontend will speak (removed characters gone, whitespace made spaces) and what it skips."""

    text: str
    skipped: tuple[SkippedCharacter, ...]

    def summary(self, limit: int = 20) -> str:
        """The skipped characters, described, the first ``limit`` of them (then how many more)."""
        described = [s.describe() for s in self.skipped[:limit]]
        if len(self.skipped) > limit:
            described.append(f"and {len(self.skipped) - limit} more")
        return ", ".join(described)


CONTROL = "control character"
INVALID = "invalid code point"


def _removed_reason(char: str) -> str | None:
    """Why ``char`` is removed from any text (a control character or an invalid code point), else None."""
    category = unicodedata.category(char)
    if category == "Cc":
        return CONTROL
    code = ord(char)
    if category == "Cs" or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
        return INVALID
    return None


class Frontend(ABC):
    """Base class: subclasses turn one piece of text into token ids.

    ``policy`` says, in words, what the frontend does with characters it
    cannot speak; :meth:`unspeakable` applies it to one character.
    ``boundary_ids`` are the token ids after which a piece may be cut
    (spaces, punctuation): see :func:`split_tokens`.
    """

    policy = "characters it cannot speak are skipped"
    boundary_ids: frozenset[int] = frozenset()
    maps_words = False
    """Whether :meth:`encode_positions` maps tokens back to characters (word timings need it)."""

    def __init__(self, config: dict[str, Any]):
        self.config = config

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids for one piece of text (may be empty when nothing is known)."""

    def unspeakable(self, char: str) -> str | None:
        """Why this frontend skips ``char`` (a reason for the report), or None when it speaks it."""
        return None

    def encode_positions(self, text: str) -> tuple[list[int], list[int | None]]:
        """:meth:`encode`'s ids and, for each, the index in ``text`` of the character (or word) it was read
        from (None: from none, like a pause or ``bos``), so word timings can name the words of the text.

        A frontend that cannot tell raises :class:`TimingsUnavailable`.
        """
        raise TimingsUnavailable(f"the {type(self).__name__} does not map its tokens back to the text's words")

    def review(self, text: str) -> ReviewedText:
        """What of ``text`` is spoken: control characters and invalid code points removed, whitespace
        made plain spaces, and every removed or skipped character listed with its position."""
        kept: list[str] = []
        skipped: list[SkippedCharacter] = []
        for position, char in enumerate(text):
            if char.isspace():
                kept.append(" ")
                continue
            reason = _removed_reason(char)
            if reason is None:
                kept.append(char)
                reason = self.unspeakable(char)
            if reason is not None:
                skipped.append(SkippedCharacter(char, position, reason))
        return ReviewedText("".join(kept), tuple(skipped))

    def pieces(self, text: str, max_tokens: int, pack: bool = False) -> Iterator[torch.Tensor]:
        """Split ``text`` and yield ``[1, T]`` int64 token tensors, ``1 <= T <= max_tokens``.

        One piece per sentence, or with ``pack`` as many whole sentences per
        piece as fit (fewer, longer network calls; later first audio).
        Characters are reviewed first (:meth:`review`); removed or skipped ones
        are reported in one :class:`TextWarning`. Raises :class:`FrontendError`
        when the text is empty or yields no token.
        """
        for piece in self._split(text, max_tokens, pack, timed=False):
            yield piece.tokens

    def timed_pieces(self, text: str, max_tokens: int, pack: bool = False) -> Iterator[TimedPiece]:
        """:meth:`pieces` with the words of each: which tokens each word of the original ``text`` became.

        Character offsets are those of ``text`` as given, before review
        removed anything. :class:`TimingsUnavailable` when the frontend cannot
        map tokens to characters (:meth:`encode_positions`).
        """
        yield from self._split(text, max_tokens, pack, timed=True)

    def _split(self, text: str, max_tokens: int, pack: bool, timed: bool) -> Iterator[TimedPiece]:
        if not isinstance(text, str) or not text.strip():
            raise FrontendError("text is empty: nothing to synthesize")
        reviewed = self.review(text)
        if reviewed.skipped:
            warnings.warn(TextWarning(f"frontend: not spoken: {reviewed.summary()}"), stacklevel=4)
        # where each character of the reviewed text stands in ``text``: word timings' offsets (only they need it)
        kept = [i for i, char in enumerate(text) if char.isspace() or _removed_reason(char) is None] if timed else []
        produced = False
        sentences = split_text(reviewed.text.strip(), max_chars=max_tokens)
        searched = 0
        for sentence in pack_sentences(sentences, max_tokens) if pack else sentences:
            if timed:
                ids, origins = self.encode_positions(sentence)
                located, searched = locate(sentence, reviewed.text, searched)
                positions = [kept[i] for i in located]
            else:
                ids, origins, positions = self.encode(sentence), [], []
            for start in range(0, len(ids), max_tokens):
                produced = True
                tokens = torch.tensor([ids[start : start + max_tokens]], dtype=torch.int64)
                words = piece_words(origins[start : start + max_tokens], sentence, positions) if timed else []
                yield TimedPiece(tokens, tuple(words))
        if not produced:
            raise FrontendError(f"text has no character the frontend can speak: {text[:80]!r} ({self.policy})")


def boundaries_of(ids: dict[str, int]) -> frozenset[int]:
    """The ids of the word-boundary symbols (spaces, punctuation) of a symbol table."""
    return frozenset(i for symbol, i in ids.items() if symbol in WORD_BOUNDARIES or symbol.isspace())


def split_tokens(tokens: torch.Tensor, boundary_ids: frozenset[int], parts: int) -> list[torch.Tensor]:
    """Cut a ``[1, T]`` piece into about ``parts`` pieces of similar length, each cut after a boundary token.

    Each cut goes after the boundary token nearest to its even share; a
    piece without boundaries near a share is cut at the share itself. For a
    piece whose frames overflow a network with unbounded context: the parts
    are synthesized one after another, as if the text had been split there.
    """
    length = tokens.shape[1]
    ids = tokens[0].tolist()
    after_boundary = [i + 1 for i, token in enumerate(ids[:-1]) if token in boundary_ids]
    cuts: list[int] = []
    for k in range(1, parts):
        target = round(k * length / parts)
        nearby = [c for c in after_boundary if abs(c - target) <= length / (2 * parts)]
        cut = min(nearby, key=lambda c: abs(c - target)) if nearby else target
        if (cuts[-1] if cuts else 0) < cut < length:
            cuts.append(cut)
    edges = [0, *cuts, length]
    return [tokens[:, a:b] for a, b in zip(edges, edges[1:])]


def split_text(text: str, max_chars: int) -> list[str]:
    """Split text at sentence ends, then at clause ends and spaces where still too long.

    Each returned piece has at most ``max_chars`` characters (a single word
    longer than that is cut hard).
    """
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        pieces.extend(_fit(sentence, max_chars, (_CLAUSE_END, re.compile(r"\s+"))))
    return [p for p in pieces if p.strip()]


def pack_sentences(sentences: list[str], max_chars: int) -> list[str]:
    """Join consecutive sentences into pieces of at most ``max_chars`` characters."""
    packed: list[str] = []
    for sentence in sentences:
        if packed and len(packed[-1]) + 1 + len(sentence) <= max_chars:
            packed[-1] += " " + sentence
        else:
            packed.append(sentence)
    return packed


def _fit(text: str, max_chars: int, separators: tuple[re.Pattern[str], ...]) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    if not separators:
        return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    out: list[str] = []
    current = ""
    for part in separators[0].split(text):
        candidate = f"{current} {part}" if current else part
        if len(candidate) <= max_chars:
            current = candidate
            continue
        if current:
            out.append(current)
        if len(part) <= max_chars:
            current = part
        else:
            out.extend(_fit(part, max_chars, separators[1:]))
            current = ""
    if current:
        out.append(current)
    return out


@FRONTENDS.register("characters")
class CharactersFrontend(Frontend):
    """Lower-cased characters looked up in the ``symbols`` string; characters not in it are skipped.

    Config: ``symbols`` (the table; a character's id is its index), optional
    ``pad`` (a symbol that is never produced from text), optional ``bos``/``eos``
    symbols added around every piece when given. Characters not in the table
    (digits, emoji, other scripts, often punctuation) are skipped, never
    replaced by something else, and reported (:meth:`Frontend.review`): write
    numbers as words for this frontend.
    """

    policy = "characters not in its symbol table (digits, emoji, other scripts) are skipped"
    maps_words = True

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        symbols = config.get("symbols")
        if not isinstance(symbols, str) or not symbols:
            raise FrontendError("frontend.symbols: a non-empty string of symbols is required")
        if len(set(symbols)) != len(symbols):
            raise FrontendError("frontend.symbols: symbols must be unique")
        self.ids = {ch: i for i, ch in enumerate(symbols)}
        pad = config.get("pad")
        if pad is not None:
            self.ids.pop(pad, None)
        self.boundary_ids = boundaries_of(self.ids)
        self.bos = [symbols.index(config["bos"])] if config.get("bos") else []
        self.eos = [symbols.index(config["eos"])] if config.get("eos") else []

    def unspeakable(self, char: str) -> str | None:
        """``not in the symbol table`` when ``char``, lower-cased, is not in ``symbols``."""
        return None if all(c in self.ids for c in char.lower()) else "not in the symbol table"

    def encode(self, text: str) -> list[int]:
        """Ids of the known characters of ``text``, lower-cased (others skipped; :meth:`review` reports them)."""
        return self.encode_positions(text)[0]

    def encode_positions(self, text: str) -> tuple[list[int], list[int | None]]:
        """:meth:`encode` with each id's character index in ``text`` (None for ``bos``/``eos``)."""
        pairs = [(self.ids[c], i) for i, ch in enumerate(text) for c in ch.lower() if c in self.ids]
        if not pairs:
            return [], []
        ids = self.bos + [token for token, _ in pairs] + self.eos
        return ids, [None] * len(self.bos) + [i for _, i in pairs] + [None] * len(self.eos)


def build_frontend(config: dict[str, Any]) -> Frontend:
    """The registered frontend named by ``config['type']``."""
    return FRONTENDS.get(config["type"])(config)


@FRONTENDS.register("phonemes")
class PhonemesFrontend(Frontend):
    """espeak-ng phonemes looked up in a symbol list (``ttsstack.runtime.phonemes``).

    Config: ``symbols`` (a list; a phoneme's id is its index), ``pad`` (never
    produced), ``voice`` (espeak-ng voice, default ``en-us``), and optionally
    ``espeak_version``, the version the table was made with: a different
    installed espeak-ng gets a warning, since its phoneme names may differ.
    Characters are read out as espeak-ng's voice reads them (digits as numbers,
    emoji and CJK by their names, other scripts by its letter rules); phonemes
    it produces that are not in the table are dropped with one warning per new phoneme.
    """

    policy = "espeak-ng reads out every character its voice knows (digits as numbers, emoji and CJK by name)"
    maps_words = True

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        from . import phonemes

        self._phonemize = phonemes.phonemize_positions
        symbols = config.get("symbols")
        if not isinstance(symbols, list) or not symbols:
            raise FrontendError("frontend.symbols: a non-empty list of phoneme symbols is required")
        self.ids = {s: i for i, s in enumerate(symbols) if s != config.get("pad")}
        self.boundary_ids = boundaries_of(self.ids)
        self.voice = config.get("voice", phonemes.DEFAULT_VOICE)
        wanted = config.get("espeak_version")
        installed = phonemes.espeak_info().get("version")
        if wanted and installed != wanted:
            warnings.warn(f"frontend: symbols were made with espeak-ng {wanted}, this host has {installed}", stacklevel=2)
        self._warned: set[str] = set()

    def encode(self, text: str) -> list[int]:
        """Ids of the known phonemes of ``text``."""
        return self.encode_positions(text)[0]

    def encode_positions(self, text: str) -> tuple[list[int], list[int | None]]:
        """:meth:`encode` with, for each phoneme, the index in ``text`` of the word espeak-ng read it from."""
        symbols, characters = self._phonemize(text, self.voice)
        unknown = sorted({s for s in symbols if s not in self.ids} - self._warned)
        if unknown:
            self._warned.update(unknown)
            warnings.warn(f"frontend: dropping phonemes not in the symbol table: {' '.join(unknown)}", stacklevel=4)
        known = [(self.ids[s], c) for s, c in zip(symbols, characters) if s in self.ids]
        return [i for i, _ in known], [c for _, c in known]
