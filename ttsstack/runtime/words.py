"""Words of a text and where each token of a piece came from, for word timings.

A frontend normalizes the text before it is spoken (:meth:`Frontend.review`
removes control characters, sentences are cut out of it and joined with
single spaces), then turns each piece into tokens. Word timings must name
the words of the *original* text, so this module keeps, for every character
of a piece, its index in the original text (:func:`locate`), splits a piece
into words (:func:`word_spans`), and groups a piece's tokens by the word they
were read from (:func:`piece_words`).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Sequence

_WORD = re.compile(r"\S+")
_EDGE_PUNCTUATION = "\"'()[]{}<>.,;:!?\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026-\u2013\u2014*_/\\"


@dataclass(frozen=True)
class PieceWord:
    """One word of a piece: its characters ``[char_start, char_end)`` in the original text and its tokens
    ``[first_token, last_token]`` (inclusive) in the piece."""

    char_start: int
    char_end: int
    first_token: int
    last_token: int


def word_spans(text: str) -> list[tuple[int, int, int, int]]:
    """Each word of ``text``: ``(run_start, run_end, start, end)``, the run of non-spaces it is in and the word
    itself, the run with its edge punctuation trimmed.

    ``"Hello, (world)!"`` has the words ``Hello`` and ``world`` (runs
    ``Hello,`` and ``(world)!``); a run of punctuation only (``--``) is no word.
    """
    spans = []
    for match in _WORD.finditer(text):
        start, end = match.span()
        word_start, word_end = start, end
        while word_start < word_end and text[word_start] in _EDGE_PUNCTUATION:
            word_start += 1
        while word_end > word_start and text[word_end - 1] in _EDGE_PUNCTUATION:
            word_end -= 1
        if word_start < word_end:
            spans.append((start, end, word_start, word_end))
    return spans


def locate(piece: str, text: str, start: int) -> tuple[list[int], int]:
    """The index in ``text`` of each character of ``piece``, found from ``start`` on; and where the search ends.

    Pieces are cut out of ``text`` and may have had runs of whitespace
    joined into one space, so a space of the piece matches one or more
    whitespace characters of the text; any other character must match itself.
    """
    positions: list[int] = []
    at = start
    while at < len(text) and text[at].isspace():
        at += 1
    for char in piece:
        if char.isspace():
            positions.append(at)
            while at < len(text) and text[at].isspace():
                at += 1
            continue
        if at >= len(text) or text[at] != char:
            raise ValueError(f"piece {piece!r} is not in the text at {at}")
        positions.append(at)
        at += 1
    return positions, at


def piece_words(
    origins: Sequence[int | None], piece: str, positions: Sequence[int], first_token: int = 0
) -> list[PieceWord]:
    """Group tokens by the word of ``piece`` each was read from.

    ``origins[i]`` is the index in ``piece`` of the character token ``i``
    came from (None: no character, like a pause or a boundary token);
    ``positions`` maps piece indices to the original text (:func:`locate`).
    Tokens count from ``first_token``. Words with no token (nothing the
    frontend spoke) are left out.
    """
    spans = word_spans(piece)
    starts = [span[0] for span in spans]
    found: dict[int, list[int]] = {}
    for token, origin in enumerate(origins):
        if origin is None:
            continue
        index = _span_at(spans, starts, origin)
        if index is not None:
            found.setdefault(index, []).append(token + first_token)
    return [
        PieceWord(positions[spans[i][2]], positions[spans[i][3] - 1] + 1, tokens[0], tokens[-1])
        for i, tokens in sorted(found.items())
    ]


def _span_at(spans: list[tuple[int, int, int, int]], starts: list[int], index: int) -> int | None:
    """The word whose run holds character ``index``, or None."""
    at = bisect.bisect_right(starts, index) - 1
    if at >= 0 and spans[at][0] <= index < spans[at][1]:
        return at
    return None
