"""The ``voice`` of a speech request: one of the addon's speakers, or one of OpenAI's names for its default.

An addon that declares ``speaker:`` in its ``addon.yaml`` ships named speaker
embeddings (the first is its default); any other addon has one voice,
``default``. OpenAI's voice names work for every addon, so that clients written
for OpenAI run unchanged; they pick the addon's default speaker. An addon's own
voice of the same name wins over OpenAI's.
"""

from __future__ import annotations

from ..runtime import Voice
from ..runtime.speakers import SpeakerChoice

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")
"""OpenAI's built-in voice names, each served as the addon's default voice."""

DEFAULT_VOICE = "default"
"""The one voice of an addon without speakers."""


class UnknownVoice(ValueError):
    """A ``voice`` that is neither one of the addon's nor one of OpenAI's; the message lists the addon's."""


def voice_names(voice: Voice) -> list[str]:
    """The addon's voices, its default first."""
    speaker = voice.spec.speaker
    return list(speaker.voices) if speaker is not None else [DEFAULT_VOICE]


def speaker_for(voice: Voice, name: str | None) -> SpeakerChoice:
    """The speaker a request's ``voice`` picks (None: the addon's default, or no speaker input at all)."""
    names = voice_names(voice)
    if name is None or name in OPENAI_VOICES and name not in names:
        return None
    if name not in names:
        raise UnknownVoice(
            f"voice: '{name}' is not a voice of {voice.spec.name}; its voices: {', '.join(names)} "
            f"(OpenAI's names, such as alloy, pick {names[0]})"
        )
    return name if voice.spec.speaker is not None else None
