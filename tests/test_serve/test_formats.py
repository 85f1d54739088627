"""Every response format over real HTTP, decoded by standard decoders and compared with the voice's own samples.

The demo voice (speech at 22,050 Hz) is served; each response is decoded
with PyAV (FFmpeg's decoders) and, where libsndfile reads the format, with
soundfile. Its duration must be the voice's within the codec's padding
(``ttsstack.tolerances.CODEC_PADDING_SAMPLES``), and its content must correlate
with the voice's samples (resampled to the decoded rate by an FFT, a resampler
independent of the server's) at the best lag within that padding.
"""

from __future__ import annotations

import base64
import io
import json

import av
import httpx
import numpy as np
import pytest
import soundfile

import ttsstack
from ttsstack.audio import encode
from ttsstack.serve import create_app
from ttsstack.tolerances import (
    CODEC_PADDING_SAMPLES,
    LOSSLESS_CORRELATION,
    LOSSY_CORRELATION,
    RESAMPLED_CORRELATION,
    RESAMPLING_SLACK_SAMPLES,
)

from .conftest import running_server

TEXT = "Hello there. It streams."
MODEL = "fastpitch-demo"
LOSSY = {"mp3", "aac", "opus"}
RAW_DECODING = {"mulaw": ("mulaw", "s16le"), "pcm": ("s16le", "s16le")}
"""Formats without a header: the demuxer PyAV reads them with (the rate comes from ``X-Sample-Rate``)."""
SOUNDFILE_READS = {"mp3", "opus", "flac", "wav"}
"""What libsndfile decodes (not AAC); a streamed FLAC, whose header cannot say its length, it refuses (PyAV reads it)."""


@pytest.fixture(scope="module")
def demo(demo_compiled):
    """The demo voice and its samples for TEXT, clipped as every encoder clips them."""
    voice = ttsstack.load(demo_compiled, backend="cpu", compile_if_needed=False)
    return voice, np.clip(voice.synthesize_audio(TEXT), -1, 1).astype(np.float64)


@pytest.fixture(scope="module")
def url(demo):
    """A server of the demo voice."""
    with running_server(create_app([demo[0]])) as url:
        yield url


def _post(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json={"model": MODEL, "input": TEXT, **body}, timeout=120)


def _streamed(url: str, **body) -> tuple[httpx.Response, list[bytes]]:
    """A streamed response and its body as the pieces that arrived."""
    with httpx.stream("POST", f"{url}/v1/audio/speech", json={"model": MODEL, "input": TEXT, **body}, timeout=120) as r:
        return r, list(r.iter_raw())


def _decode(data: bytes, fmt: str, rate: int) -> tuple[np.ndarray, int]:
    """Decode with PyAV (FFmpeg): float mono samples and their rate."""
    demuxer, _ = RAW_DECODING.get(fmt, (None, None))
    options = {"sample_rate": str(rate), "ch_layout": "mono"} if demuxer else {}
    with av.open(io.BytesIO(data), format=demuxer, options=options) as container:
        resampler = av.AudioResampler(format="flt", layout="mono")
        frames = [f for frame in container.decode(audio=0) for f in resampler.resample(frame)]
        decoded_rate = container.streams.audio[0].sample_rate
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float64), decoded_rate


def _fft_resample(x: np.ndarray, source: int, rate: int) -> np.ndarray:
    """``x`` at ``rate`` by zero-padding or truncating its spectrum (band-limited, independent of FFmpeg)."""
    if source == rate:
        return x
    n = int(round(len(x) * rate / source))
    spectrum = np.fft.rfft(x)
    kept = np.zeros(n // 2 + 1, dtype=complex)
    k = min(len(kept), len(spectrum))
    kept[:k] = spectrum[:k]
    return np.fft.irfft(kept, n) * n / len(x)


def _best_correlation(decoded: np.ndarray, reference: np.ndarray, max_lag: int) -> float:
    """Normalized correlation of ``decoded`` and ``reference`` at the best lag from 0 to ``max_lag`` (decoder delay)."""
    n = len(decoded) + len(reference)
    cross = np.fft.irfft(np.fft.rfft(decoded, n) * np.conj(np.fft.rfft(reference, n)), n)[: max_lag + 1]
    return float(cross.max() / np.linalg.norm(decoded) / np.linalg.norm(reference))


def _assert_same_speech(decoded: np.ndarray, rate: int, fmt: str, reference: np.ndarray, source_rate: int) -> None:
    """The duration within the codec's padding, the content by correlation."""
    want = _fft_resample(reference, source_rate, rate)
    padding = CODEC_PADDING_SAMPLES.get(fmt, 0) * rate // _encoded_rate(fmt, source_rate)
    slack = RESAMPLING_SLACK_SAMPLES if rate != source_rate else 0
    assert len(want) - slack <= len(decoded) <= len(want) + padding + slack, (fmt, len(decoded), len(want))
    correlation = _best_correlation(decoded, want, padding)
    floor = LOSSY_CORRELATION if fmt in LOSSY else RESAMPLED_CORRELATION if slack else LOSSLESS_CORRELATION
    assert correlation >= floor, (fmt, correlation)


def _encoded_rate(fmt: str, source_rate: int) -> int:
    return encode.output_rate(encode.FORMATS[fmt], source_rate)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm", "mulaw"])
def test_each_format_streams_decodable_audio_of_the_utterance(url, demo, fmt):
    voice, reference = demo
    r, pieces = _streamed(url, response_format=fmt)
    assert r.status_code == 200, r.read()
    assert r.headers["content-type"] == encode.FORMATS[fmt].media_type and r.headers["x-audio-format"] == fmt
    rate = int(r.headers["x-sample-rate"])
    assert rate == _encoded_rate(fmt, voice.sample_rate)
    assert len(pieces) > 2  # encoded and sent chunk by chunk
    decoded, decoded_rate = _decode(b"".join(pieces), fmt, rate)
    _assert_same_speech(decoded, decoded_rate, fmt, reference, voice.sample_rate)
    if fmt in SOUNDFILE_READS - {"flac"}:  # the streamed body, saved as it came
        blocks = soundfile.blocks(io.BytesIO(b"".join(pieces)), blocksize=4096, dtype="float64")
        samples = np.concatenate(list(blocks))
        _assert_same_speech(samples, soundfile.info(io.BytesIO(b"".join(pieces))).samplerate, fmt, reference, voice.sample_rate)
    # While it streams: what arrived so far already decodes to the start of the utterance.
    head, _ = _decode(b"".join(pieces[: len(pieces) // 2]), fmt, rate)
    assert 0 < len(head) < len(decoded)
    prefix = _fft_resample(reference, voice.sample_rate, decoded_rate)[: len(head)]
    lag = CODEC_PADDING_SAMPLES.get(fmt, 0) * decoded_rate // rate
    assert _best_correlation(head, prefix, lag) >= LOSSY_CORRELATION


@pytest.mark.parametrize("fmt", ["mp3", "flac", "wav"])  # those whose headers differ when complete (Ogg, ADTS do not)
def test_stream_false_sends_a_complete_file(url, demo, fmt):
    voice, reference = demo
    r = _post(url, response_format=fmt, stream=False)
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    decoded, rate = _decode(r.content, fmt, int(r.headers["x-sample-rate"]))
    _assert_same_speech(decoded, rate, fmt, reference, voice.sample_rate)
    assert len(decoded) == len(reference)  # its header holds the true length: exact, even for MP3 (gapless header)
    if fmt in SOUNDFILE_READS:
        samples, rate = soundfile.read(io.BytesIO(r.content), dtype="float64")
        _assert_same_speech(samples, rate, fmt, reference, voice.sample_rate)


def test_without_a_response_format_the_default_is_mp3_as_openais(url):
    r = _post(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/mpeg" and r.headers["x-audio-format"] == "mp3"


@pytest.mark.parametrize(("fmt", "rate"), [("mulaw", None), ("pcm", 16000), ("opus", 48000)])
def test_a_requested_sample_rate_is_resampled(url, demo, fmt, rate):
    voice, reference = demo
    body = {"response_format": fmt, "stream": fmt != "pcm"}
    if rate is not None:
        body["sample_rate"] = rate
    r = _post(url, **body)
    assert r.status_code == 200, r.text
    assert int(r.headers["x-sample-rate"]) == (rate or 8000)  # mu-law: telephony's 8 kHz unless asked otherwise
    decoded, decoded_rate = _decode(r.content, fmt, rate or 8000)
    _assert_same_speech(decoded, decoded_rate, fmt, reference, voice.sample_rate)


def _events(body: bytes) -> list[dict]:
    assert body.endswith(b"\n\n")
    return [json.loads(e.removeprefix(b"data: ")) for e in body[:-2].split(b"\n\n")]


def test_sse_sends_the_same_audio_as_base64_deltas(url):
    r, pieces = _streamed(url, response_format="mp3", stream_format="sse")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(b"".join(pieces))
    assert [e["type"] for e in events] == ["speech.audio.delta"] * (len(events) - 1) + ["speech.audio.done"]
    assert len(events) > 3 and set(events[-1]["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio == _post(url, response_format="mp3").content  # the encoder is deterministic


def test_timings_add_word_events_to_the_same_sse(url, demo):
    r, pieces = _streamed(url, response_format="mp3", stream_format="sse", timings=True)
    assert r.status_code == 200
    events = _events(b"".join(pieces))
    assert events[0] == {"type": "speech.start", "format": "mp3", "sample_rate": int(r.headers["x-sample-rate"]),
                         "channels": 1}
    assert events[-1]["type"] == "speech.audio.done"
    assert {e["type"] for e in events[1:-1]} == {"speech.audio.delta", "speech.word_timings"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert audio == _post(url, response_format="mp3").content  # the audio of the request without timings
    words = [w for e in events if e["type"] == "speech.word_timings" for w in e["words"]]
    assert [w["word"] for w in words] == ["Hello", "there", "It", "streams"]
    assert words == [w.as_dict() for item in demo[0].stream_audio(TEXT, timings=True) for w in item.words]


@pytest.mark.parametrize(("body", "status", "param", "names"), [
    ({"response_format": "ogg"}, 422, "response_format", "'mp3', 'opus', 'aac', 'flac', 'wav', 'pcm' or 'mulaw'"),
    ({"response_format": "mp3", "sample_rate": 96000}, 400, "sample_rate", "mp3 takes 8000, 11025"),
    ({"response_format": "opus", "sample_rate": 22050}, 400, "sample_rate", "opus takes 8000, 12000, 16000, 24000, 48000"),
    ({"response_format": "pcm", "sample_rate": 4000}, 422, "sample_rate", "greater than or equal to 8000"),
    ({"response_format": "pcm", "sample_rate": "8000"}, 422, "sample_rate", "valid integer"),
    ({"stream_format": "sse", "stream": False}, 422, "stream_format", '"stream": false'),
    ({"stream_format": "json"}, 422, "stream_format", "'audio' or 'sse'"),
    ({"timings": True}, 422, "timings", '"stream_format": "sse"'),
])
def test_a_format_or_rate_it_cannot_make_is_refused_naming_what_it_can(url, body, status, param, names):
    r = _post(url, **body)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["param"] == param and names in error["message"]


def test_a_codec_missing_on_the_host_is_400_naming_the_available_formats(url, monkeypatch):
    without_lame = encode._pyav_codecs() - {"libmp3lame"}
    monkeypatch.setattr(encode, "_pyav_codecs", lambda: without_lame)
    r = _post(url, response_format="mp3")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "response_format"
    assert "libmp3lame is missing" in error["message"] and "available: opus, aac, flac, wav, pcm, mulaw" in error["message"]
    assert "mp3" not in httpx.get(f"{url}/v1/models").json()["data"][0]["response_formats"]
