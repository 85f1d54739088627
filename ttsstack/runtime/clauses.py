"""Text that arrives in fragments (an LLM's tokens) cut into clauses as soon as each is complete.

A clause ends at ``, ; : . ! ?`` (or a dash, an ellipsis, a closing quote
after one of them) followed by whitespace: the whitespace is what shows the
clause is over (``3.5`` and ``e.g.`` inside a word do not end one). What is
left when the text ends, or when no fragment came for a while, is flushed as
a clause of its own. Each clause keeps its offset in the whole text received,
so word timings name characters of that text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FLUSH_AFTER_S = 0.5
"""Seconds without a fragment after which the text pending is spoken as a clause (an LLM that paused)."""

_CLAUSE_END = re.compile(r"[,;:.!?\u2026\u2013\u2014]+[\"'\u2019\u201d)\]]*(?=\s)")


@dataclass(frozen=True)
class Clause:
    """A complete clause: its text (as received, stripped) and the offset of its first character in the whole text."""

    text: str
    char_start: int


class ClauseBuffer:
    """Collects fragments; :meth:`feed` returns the clauses they complete, :meth:`flush` the rest."""

    def __init__(self) -> None:
        self.received = 0
        """Characters received in all (the offset of the next fragment)."""
        self._pending = ""
        self._pending_start = 0

    @property
    def pending(self) -> str:
        """Text received that is not yet part of a clause."""
        return self._pending

    def feed(self, fragment: str) -> list[Clause]:
        """Add ``fragment``; the clauses it completes, in order."""
        self._pending += fragment
        self.received += len(fragment)
        clauses = []
        while True:
            end = _CLAUSE_END.search(self._pending)
            if end is None:
                return clauses
            clause = self._take(end.end())
            if clause is not None:
                clauses.append(clause)

    def flush(self) -> Clause | None:
        """Everything pending as one clause (None when only whitespace is pending)."""
        return self._take(len(self._pending))

    def clear(self) -> None:
        """Forget what is pending (a barge-in): later fragments still count from :attr:`received`."""
        self._pending, self._pending_start = "", self.received

    def _take(self, length: int) -> Clause | None:
        text, start = self._pending[:length], self._pending_start
        self._pending, self._pending_start = self._pending[length:], start + length
        stripped = text.lstrip()
        if not stripped.strip():
            return None
        return Clause(stripped.rstrip(), start + len(text) - len(stripped))
