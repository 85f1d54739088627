"""The addons a server holds: each a loaded Voice under its addon name, with its own admission gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..audio.encode import available_formats
from ..runtime import Voice
from .concurrency import AdmissionGate
from .config import Limits, require_unique_names
from .voices import voice_names


@dataclass(frozen=True)
class ServedModel:
    """One served addon: the ``model`` name clients ask for, its Voice and its gate."""

    name: str
    voice: Voice
    gate: AdmissionGate

    def card(self) -> dict[str, Any]:
        """Its entry in ``GET /v1/models`` (OpenAI's model object plus what ttsstack knows)."""
        return {
            "id": self.name,
            "object": "model",
            "created": 0,
            "owned_by": "ttsstack",
            "backend": self.voice.backend,
            "sample_rate": self.voice.sample_rate,
            "response_formats": available_formats(),
            "voices": voice_names(self.voice),
            "word_timings": self.voice.timings_unavailable is None,
            "max_concurrent": self.gate.max_concurrent,
            "max_queue": self.gate.max_queue,
        }


def served_models(voices: Sequence[Voice], limits: Limits) -> dict[str, ServedModel]:
    """Name each voice by its addon's name; two voices of one name are an error."""
    require_unique_names([(v.spec.name, f"voice #{i} ({v.backend} backend)") for i, v in enumerate(voices)])
    return {
        v.spec.name: ServedModel(v.spec.name, v, AdmissionGate(limits.max_concurrent, limits.max_queue))
        for v in voices
    }
