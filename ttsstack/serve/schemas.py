"""The request body of ``POST /v1/audio/speech``, as in OpenAI's speech API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class SpeechRequest(BaseModel):
    """OpenAI's ``audio.speech.create`` body, restricted to what ttsstack streams.

    - ``model``: the name of a served addon (``GET /v1/models``).
    - ``input``: the text; empty is ``400``, longer than the server's limit ``413``.
    - ``voice``: accepted for compatibility and ignored: an addon has one voice.
    - ``response_format``: ``wav`` (a streaming header, then PCM16) or ``pcm``
      (raw PCM16 little-endian mono at the addon's sample rate, given in the
      ``X-Sample-Rate`` header). Compressed formats are ``422``.
    - ``speed``: 0.25 to 4.0, 2.0 speaks twice as fast (durations are divided by it).
    - ``stream_format``: only ``audio`` (raw audio bytes as they are made).

    Unknown fields are ``422`` naming them, rather than silently ignored.
    """

    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    input: StrictStr
    voice: StrictStr | None = None
    response_format: Literal["wav", "pcm"] = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio"] = "audio"
