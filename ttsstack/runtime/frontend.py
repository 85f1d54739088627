"""Text frontends: text -> sentence-sized pieces of token ids.

A frontend turns text into the ``tokens`` tensor ``[1, T_text]`` that the
encoders read. Text is first split into sentences (then clauses, then words,
then hard cuts) so that no piece exceeds the largest ``T_text`` the networks
accept; each piece is synthesized in turn, which also bounds memory for long
texts and lets the first audio arrive after the first sentence only.
"""

from __future__ import annotations

import re
import warnings
from abc import ABC, abstractmethod
from typing import Any, Iterator

import torch

from .registry import FRONTENDS

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_CLAUSE_END = re.compile(r"(?<=[,:])\s+")
WORD_BOUNDARIES = frozenset(" \t.,;:!?-\u2013\u2014\u2026")  # symbols after which a piece may be cut


class FrontendError(ValueError):
    """Text that cannot be turned into tokens (empty, or nothing the frontend knows)."""


class Frontend(ABC):
    """Base class: subclasses turn one piece of text into token ids.

    ``boundary_ids`` are the token ids after which a piece may be cut
    (spaces, punctuation): see :func:`split_tokens`.
    """

    boundary_ids: frozenset[int] = frozenset()

    def __init__(self, config: dict[str, Any]):
        self.config = config

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids for one piece of text (may be empty when nothing is known)."""

    def pieces(self, text: str, max_tokens: int, pack: bool = False) -> Iterator[torch.Tensor]:
        """Split ``text`` and yield ``[1, T]`` int64 token tensors, ``1 <= T <= max_tokens``.

        One piece per sentence, or with ``pack`` as many whole sentences per
        piece as fit (fewer, longer network calls; later first audio).
        Raises :class:`FrontendError` when the text is empty or yields no token.
        """
        if not isinstance(text, str) or not text.strip():
            raise FrontendError("text is empty: nothing to synthesize")
        produced = False
        sentences = split_text(text.strip(), max_chars=max_tokens)
        for sentence in pack_sentences(sentences, max_tokens) if pack else sentences:
            ids = self.encode(sentence)
            for start in range(0, len(ids), max_tokens):
                produced = True
                yield torch.tensor([ids[start : start + max_tokens]], dtype=torch.int64)
        if not produced:
            raise FrontendError(f"text has no character the frontend knows: {text[:80]!r}")


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
    """Lower-cased characters looked up in the ``symbols`` string; unknown ones dropped.

    Config: ``symbols`` (the table; a character's id is its index), optional
    ``pad`` (a symbol that is never produced from text), optional ``bos``/``eos``
    symbols added around every piece when given. Characters not in the table
    are dropped with one warning per new character.
    """

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
        self._warned: set[str] = set()

    def encode(self, text: str) -> list[int]:
        """Ids of the known characters of ``text``, lower-cased."""
        text = text.lower()
        unknown = sorted({ch for ch in text if ch not in self.ids} - self._warned)
        if unknown:
            self._warned.update(unknown)
            warnings.warn(f"frontend: dropping characters not in the symbol table: {''.join(unknown)!r}", stacklevel=3)
        ids = [self.ids[ch] for ch in text if ch in self.ids]
        return self.bos + ids + self.eos if ids else []


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
    Phonemes not in the table are dropped with one warning per new phoneme.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        from . import phonemes

        self._phonemize = phonemes.phonemize
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
        symbols = self._phonemize(text, self.voice)
        unknown = sorted({s for s in symbols if s not in self.ids} - self._warned)
        if unknown:
            self._warned.update(unknown)
            warnings.warn(f"frontend: dropping phonemes not in the symbol table: {' '.join(unknown)}", stacklevel=3)
        return [self.ids[s] for s in symbols if s in self.ids]
