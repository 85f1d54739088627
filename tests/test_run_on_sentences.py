"""A run-on sentence whose frames exceed the largest bucket of an unbounded frame-level network streams anyway.

The tiny transformer addon's decoder has unbounded context and frame buckets
32 and 64 on static backends. A piece whose frames overflow them is cut
after word boundaries into parts that fit, each synthesized as if the text had
been split there: the result equals the reference run on those parts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ttsstack
from ttsstack.runtime.frontend import split_tokens
from ttsstack.runtime.voice import _call_controls
from ttsstack.tolerances import for_backend

RUN_ON = "and then the wind came up over the low hills and the rain went on and on without a pause"


def _mel(voice, tokens: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat(list(voice.root.stream({"tokens": tokens, **_call_controls(1.0)}, None)), dim=1)[0].numpy()


@pytest.mark.parametrize("backend", ["onnx-static", "neuron"])
def test_run_on_sentence_beyond_the_largest_frame_bucket_is_split_at_words(transformer_compiled, backend):
    static = ttsstack.load(transformer_compiled, backend=backend)
    eager = ttsstack.load(transformer_compiled, backend="eager")
    (tokens,) = list(eager.frontend.pieces(RUN_ON, eager.max_tokens))
    whole = _mel(eager, tokens)
    largest = static.runners["decoder"].static_lengths["T_frames"][-1]
    assert whole.shape[0] > 2 * largest  # the sentence overflows the largest bucket more than twice
    symbols = eager.spec.frontend.model_dump()["symbols"]
    cuts = []

    def fitted(piece: torch.Tensor) -> list[np.ndarray]:
        mel = _mel(eager, piece)
        if mel.shape[0] <= largest:
            return [mel]
        cuts.append(piece)
        parts = split_tokens(piece, eager.frontend.boundary_ids, math.ceil(mel.shape[0] / largest))
        assert all(symbols[int(part[0, -1])] == " " for part in parts[:-1])  # every cut follows a space
        return [m for part in parts for m in fitted(part)]

    want = np.concatenate(fitted(tokens))
    got = static.synthesize(RUN_ON)
    tol = for_backend(backend)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= tol.atol + tol.rtol * np.abs(want).max()


def test_a_long_word_without_boundaries_is_cut_hard_and_still_speaks(transformer_compiled):
    static = ttsstack.load(transformer_compiled, backend="onnx-static")
    mel = static.synthesize("w" * 40)  # one 40-token word, 80 frames or more: no boundary to cut after
    assert mel.shape[0] >= 80 and np.isfinite(mel).all()


def test_a_piece_beyond_the_dims_max_is_split_on_a_dynamic_backend(transformer_compiled):
    """The dynamic path: more frames than ``T_frames.max`` (512) for an unbounded decoder are cut the same way."""
    eager = ttsstack.load(transformer_compiled, backend="eager")
    text = f"{RUN_ON} {RUN_ON} and the sea came in over the sand and the"  # one piece of 240 tokens
    assert len(list(eager.frontend.pieces(text, eager.max_tokens))) == 1
    mel = eager.synthesize(text)
    assert mel.shape[0] > eager.spec.dims["T_frames"].max and np.isfinite(mel).all()  # more than one run could hold
