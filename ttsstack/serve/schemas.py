"""The request body of ``POST /v1/audio/speech``: OpenAI's speech API plus one common extension, ``stream``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictStr


class SpeechRequest(BaseModel):
    """OpenAI's ``audio.speech.create`` body, restricted to what ttsstack makes, with ``stream``.

    - ``model``: the name of a served addon (``GET /v1/models``).
    - ``input``: the text; empty is ``400``, longer than the server's limit ``413``.
    - ``voice``: accepted for compatibility and ignored: an addon has one voice.
    - ``response_format``: ``wav`` (PCM16 in a RIFF header) or ``pcm`` (raw
      PCM16 little-endian mono at the addon's sample rate, given in the
      ``X-Sample-Rate`` header). Compressed formats are ``422`` (for now).
    - ``speed``: a JSON number from 0.25 to 4.0; 2.0 speaks twice as fast
      (durations are divided by it). Strings and booleans are ``422``.
    - ``stream_format``: how a streamed body is framed; only ``audio`` (raw
      audio bytes as they are made). Room for OpenAI's ``sse``.
    - ``stream`` (an extension OpenAI-compatible servers such as Kokoro-FastAPI
      accept): ``true`` (default) sends audio as chunked transfer as soon as it
      is made, a ``wav`` starting with a header of unknown size; ``false`` sends
      one complete body with ``Content-Length`` once synthesis is done, a
      ``wav`` whose header has its true sizes: the one to save as a file.

    ``response_format`` says what the audio is, ``stream``/``stream_format``
    how it is delivered; each new format or framing is one more value of one
    field. Unknown fields are ``422`` naming them, rather than silently ignored.
    """

    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    input: StrictStr
    voice: StrictStr | None = None
    response_format: Literal["wav", "pcm"] = "wav"
    speed: StrictFloat = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio"] = "audio"
    stream: StrictBool = True
