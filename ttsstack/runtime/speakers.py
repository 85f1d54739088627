"""The per-call speaker embedding of addons that declare ``speaker:``: a named voice or the caller's own vector."""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch

from ..addon import SpeakerSpec

SpeakerChoice = Union[str, Sequence[float], np.ndarray, torch.Tensor, None]
"""A voice name of the addon, an embedding of ``speaker.dim`` values, or None for the addon's first voice."""


def speaker_tensors(spec: SpeakerSpec | None, choice: SpeakerChoice) -> dict[str, torch.Tensor]:
    """The utterance tensor for ``choice``: ``{spec.input: [1, dim] float32}`` (nothing when the addon has no speaker).

    Raises ValueError naming the problem: a speaker for an addon without one,
    an unknown voice name, or an embedding of the wrong size or with
    non-finite values.
    """
    if spec is None:
        if choice is not None:
            raise ValueError("speaker: this addon takes no speaker embedding (its addon.yaml declares no `speaker:`)")
        return {}
    if choice is None:
        choice = next(iter(spec.voices))
    if isinstance(choice, str):
        if choice not in spec.voices:
            raise ValueError(f"speaker: unknown voice {choice!r}; the addon's voices: {', '.join(spec.voices)}")
        values = torch.tensor(spec.voices[choice], dtype=torch.float32)
    else:
        try:
            values = torch.as_tensor(np.asarray(choice, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"speaker: expected a voice name or {spec.dim} numbers, got {type(choice).__name__}: {exc}") from None
        if values.numel() != spec.dim or values.dim() > 2 or (values.dim() == 2 and values.shape[0] != 1):
            raise ValueError(f"speaker: the embedding must have {spec.dim} values ([{spec.dim}] or [1, {spec.dim}]), got shape {list(values.shape)}")
        if not all(math.isfinite(v) for v in values.flatten().tolist()):
            raise ValueError("speaker: the embedding holds non-finite values (NaN or infinity)")
    return {spec.input: values.reshape(1, spec.dim)}
