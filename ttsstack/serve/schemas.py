"""The request bodies of ``POST /v1/audio/speech`` (OpenAI's speech API plus the extensions ``stream``,
``sample_rate`` and ``timings``) and of its timed-events alias ``POST /v1/audio/speech/events``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from ..audio.encode import MAX_RATE, MIN_RATE

DEFAULT_FORMAT = "mp3"
"""OpenAI's default ``response_format``, and so ttsstack's."""
ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm", "mulaw"]
StreamFormat = Literal["audio", "sse"]


class SpeechRequest(BaseModel):
    """OpenAI's ``audio.speech.create`` body, restricted to what ttsstack makes, with ``stream`` and ``sample_rate``.

    - ``model``: the name of a served addon (``GET /v1/models``).
    - ``input``: the text; empty is ``400``, longer than the server's limit ``413``.
    - ``voice``: one of the addon's voices (``GET /v1/models`` lists them); OpenAI's
      own names (``alloy``, ...) and no voice at all pick the addon's default voice.
    - ``response_format``: OpenAI's ``mp3`` (the default, as OpenAI's),
      ``opus`` (Ogg), ``aac`` (ADTS), ``flac``, ``wav`` (PCM16 in a RIFF header),
      ``pcm`` (raw PCM16 little-endian mono), plus ``mulaw`` (raw G.711 μ-law,
      telephony's, 8 kHz by default). A format whose encoder this host lacks is
      ``400`` naming those it has.
    - ``sample_rate`` (extension): the rate to send at, 8000 to 96000 Hz, for
      any format whose encoder takes it (``400`` listing the rates otherwise);
      left out: the addon's rate (``pcm``, ``wav``, ``flac``), the nearest rate
      the codec takes (``mp3``, ``aac``, ``opus``), 8000 (``mulaw``). The
      response's ``X-Sample-Rate`` header says which.
    - ``speed``: a JSON number from 0.25 to 4.0; 2.0 speaks twice as fast
      (durations are divided by it). Strings and booleans are ``422``.
    - ``stream_format``: how a streamed body is framed: ``audio`` (the encoded
      bytes as they are made) or OpenAI's ``sse`` (server-sent events
      ``speech.audio.delta`` with base64 audio, then ``speech.audio.done``).
    - ``stream`` (an extension OpenAI-compatible servers such as Kokoro-FastAPI
      accept): ``true`` (default) sends audio as chunked transfer as soon as it
      is made, a ``wav`` starting with a header of unknown size; ``false`` sends
      one complete body with ``Content-Length`` once synthesis is done, a
      ``wav`` whose header has its true sizes: the one to save as a file.
      ``false`` with ``stream_format: "sse"`` is ``422``: events are a stream
      (checked by the route, so that the error names ``stream_format``).
    - ``timings`` (extension): with ``stream_format: "sse"``, word timings as
      they become known: a ``speech.start`` event first (rate, format), a
      ``speech.word_timings`` event after the audio that completed the words
      (``docs/streaming.md``). Without SSE it is ``422``; a model that cannot
      time words is ``400`` (``timings_unavailable``, naming why).

    ``response_format`` and ``sample_rate`` say what the audio is,
    ``stream``/``stream_format``/``timings`` how it is delivered. Unknown fields are
    ``422`` naming them, rather than silently ignored.
    """

    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    input: StrictStr
    voice: StrictStr | None = None
    response_format: ResponseFormat = DEFAULT_FORMAT
    sample_rate: StrictInt | None = Field(None, ge=MIN_RATE, le=MAX_RATE)
    speed: StrictFloat = Field(1.0, ge=0.25, le=4.0)
    stream_format: StreamFormat = "audio"
    stream: StrictBool = True
    timings: StrictBool = False


class SpeechEventsRequest(SpeechRequest):
    """The body of ``POST /v1/audio/speech/events``: the speech body, with the defaults of timed events.

    Raw PCM16 (``response_format: "pcm"``) as server-sent events with word
    timings, for clients that cannot hold a WebSocket; any field of
    :class:`SpeechRequest` may still be given.
    """

    response_format: ResponseFormat = "pcm"
    stream_format: StreamFormat = "sse"
    timings: StrictBool = True

