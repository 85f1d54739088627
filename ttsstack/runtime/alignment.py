"""Which token each output frame of a piece speaks: the alignment that word timings are read from.

Blocks that know it record it while they stream: the Upsampler from the
durations (every frame at once, before the first chunk), an autoregressive
decoder with ``alignment:`` from the argmax of its attention weights, one
step at a time. The Voice puts one :class:`Alignment` per piece in the
utterance tensors under :data:`ALIGNMENT` when the caller asked for timings;
blocks that find none record nothing, so synthesis without timings is
unchanged.

A word spans from the first frame aligned to one of its tokens to the first
frame aligned past its last token. Its end is known once the alignment has
moved past its last token, or when the piece ends: :meth:`Alignment.finished`
gives each word once, as soon as that is so.
"""

from __future__ import annotations

import bisect
from typing import Sequence

import torch

from .words import PieceWord

ALIGNMENT = "ttsstack.alignment"
"""Key of the per-piece :class:`Alignment` in the utterance tensors (absent: nobody asked for timings)."""


class Alignment:
    """The token index of each frame of one piece, recorded as the frames are made, monotonic.

    ``token_offset`` is added to what a block records: the Voice sets it
    when it synthesizes a piece's tokens in parts.
    """

    def __init__(self, words: Sequence[PieceWord]):
        self.words = list(words)
        self.token_offset = 0
        self._frame_tokens: list[int] = []
        self._reported = 0
        self._complete = False

    def durations(self, repeats: torch.Tensor) -> None:
        """Frames per token (int64 ``[T_text]``, the Upsampler's repeats): every frame's token at once."""
        tokens = torch.repeat_interleave(torch.arange(len(repeats)), repeats) + self.token_offset
        self._frame_tokens.extend(tokens.tolist())

    def attention(self, weights: torch.Tensor, frames: int) -> None:
        """One decoder step's attention weights over the tokens (``[..., T_text]``): its ``frames`` frames
        speak the token of the largest weight, never one before the token already reached."""
        token = int(weights.reshape(-1, weights.shape[-1]).sum(0).argmax()) + self.token_offset
        if self._frame_tokens:
            token = max(token, self._frame_tokens[-1])
        self._frame_tokens.extend([token] * frames)

    def complete(self) -> None:
        """The piece has ended: every word left is finished."""
        self._complete = True

    @property
    def frames(self) -> int:
        """Frames recorded so far."""
        return len(self._frame_tokens)

    def finished(self) -> list[tuple[PieceWord, int, int]]:
        """``(word, start frame, end frame)`` of each word not reported before whose end is now known."""
        out = []
        reached = self._frame_tokens[-1] if self._frame_tokens else -1
        while self._reported < len(self.words):
            word = self.words[self._reported]
            if not (self._complete or reached > word.last_token):
                break
            out.append((word, self._first_frame(word.first_token), self._first_frame(word.last_token + 1)))
            self._reported += 1
        return out

    def _first_frame(self, token: int) -> int:
        """The first frame aligned to ``token`` or a later one (the frame count when none is)."""
        return bisect.bisect_left(self._frame_tokens, token)
