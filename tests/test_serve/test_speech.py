"""Speech over real HTTP: streamed WAV/PCM equal to the whole-utterance audio, models, health, metrics."""

from __future__ import annotations

import io
import json
import struct
import wave

import httpx
import numpy as np
import pytest

from ttsstack.audio import UNKNOWN_SIZE
from ttsstack.tolerances import PCM16

from .conftest import metric

TEXT = "Hello there. Streaming speech arrives while it is made."


def _speech(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json={"model": "tiny", "input": TEXT, **body}, timeout=60)


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32767.0


def _assert_same_audio(received: np.ndarray, reference: np.ndarray) -> None:
    assert received.shape == reference.shape
    assert np.abs(received - np.clip(reference, -1, 1)).max() <= PCM16.atol + 1e-7


def test_wav_streams_the_header_then_the_whole_utterance_audio(server, tiny_voice):
    with httpx.stream("POST", f"{server}/v1/audio/speech", json={"model": "tiny", "input": TEXT, "voice": "alloy",
                                                                 "response_format": "wav"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        assert r.headers["transfer-encoding"] == "chunked"
        pieces = list(r.iter_raw())
    body = b"".join(pieces)
    riff, riff_size, wave, _, _, fmt, channels, rate, _, _, bits, data, data_size = struct.unpack("<4sI4s4sIHHIIHH4sI", body[:44])
    assert (riff, wave, data, fmt, channels, bits) == (b"RIFF", b"WAVE", b"data", 1, 1, 16)
    assert rate == tiny_voice.sample_rate and riff_size == data_size == UNKNOWN_SIZE
    assert len(pieces) > 2  # header with the first chunk, then audio chunk by chunk
    _assert_same_audio(_samples(body[44:]), tiny_voice.synthesize_audio(TEXT))


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_stream_false_sends_one_body_with_its_true_sizes(server, tiny_voice, fmt):
    r = _speech(server, response_format=fmt, stream=False)
    assert r.status_code == 200
    assert "transfer-encoding" not in r.headers and int(r.headers["content-length"]) == len(r.content)
    reference = tiny_voice.synthesize_audio(TEXT)
    if fmt == "pcm":
        _assert_same_audio(_samples(r.content), reference)
        return
    with wave.open(io.BytesIO(r.content)) as wav:  # the header's sizes are the audio's
        assert (wav.getnframes(), wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (
            len(reference), tiny_voice.sample_rate, 1, 2)
        _assert_same_audio(_samples(wav.readframes(wav.getnframes())), reference)
    riff_size, data_size = struct.unpack("<I", r.content[4:8])[0], struct.unpack("<I", r.content[40:44])[0]
    assert (riff_size, data_size) == (len(r.content) - 8, len(r.content) - 44)


def test_pcm_is_raw_samples_at_the_addon_rate(server, tiny_voice):
    r = _speech(server, response_format="pcm")
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/pcm"
    assert r.headers["x-sample-rate"] == str(tiny_voice.sample_rate)
    _assert_same_audio(_samples(r.content), tiny_voice.synthesize_audio(TEXT))


def test_speed_is_applied_per_request(server, tiny_voice):
    fast = _speech(server, response_format="pcm", speed=2.0)
    assert fast.status_code == 200
    _assert_same_audio(_samples(fast.content), tiny_voice.synthesize_audio(TEXT, speed=2.0))
    assert len(fast.content) < len(_speech(server, response_format="pcm").content) * 0.6


def test_models_lists_each_addon_with_its_backend(server):
    data = httpx.get(f"{server}/v1/models").json()
    assert data["object"] == "list"
    assert {(m["id"], m["backend"]) for m in data["data"]} == {("tiny", "cpu"), ("tiny-faulty", "eager")}


def test_healthz_and_readyz(server):
    r = httpx.get(f"{server}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "models": ["tiny", "tiny-faulty"]}
    r = httpx.get(f"{server}/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "models": ["tiny", "tiny-faulty"]}


def test_metrics_count_requests_latency_and_speed(server):
    before = metric(server, "ttsstack_requests_total", model="tiny", status="200")
    completed = metric(server, "ttsstack_streams_total", model="tiny", outcome="completed")
    assert _speech(server).status_code == 200
    assert _speech(server, model="nobody").status_code == 404
    assert metric(server, "ttsstack_requests_total", model="tiny", status="200") == before + 1
    assert metric(server, "ttsstack_requests_total", model="", status="404") >= 1
    assert metric(server, "ttsstack_streams_total", model="tiny", outcome="completed") == completed + 1
    assert metric(server, "ttsstack_time_to_first_audio_seconds_count", model="tiny") >= 1
    assert metric(server, "ttsstack_real_time_factor_count", model="tiny") >= 1  # deprecated, kept one release
    rtf_sum, multiple_sum = (metric(server, f"ttsstack_{m}_sum", model="tiny") for m in ("rtf", "speed_multiple"))
    assert metric(server, "ttsstack_rtf_count", model="tiny") == metric(server, "ttsstack_speed_multiple_count", model="tiny") >= 1
    assert rtf_sum > 0 and multiple_sum > 0
    assert metric(server, "ttsstack_real_time_factor_sum", model="tiny") == pytest.approx(multiple_sum)
    assert metric(server, "ttsstack_active_streams", model="tiny") == 0
    assert metric(server, "ttsstack_queue_depth", model="tiny-faulty") == 0
    text = httpx.get(f"{server}/metrics").text
    assert "ttsstack_time_to_first_audio_seconds_bucket" in text


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_a_failing_stream_ends_with_an_error_and_the_rest_goes_on(server, tiny_voice, fmt):
    failed = metric(server, "ttsstack_streams_total", model="tiny-faulty", outcome="failed")
    body = {"input": TEXT, "response_format": "pcm"}
    with httpx.Client(timeout=60) as healthy, httpx.Client(timeout=60) as faulty:
        with healthy.stream("POST", f"{server}/v1/audio/speech", json={"model": "tiny", **body}) as good:
            pieces = good.iter_raw()
            received = [next(pieces)]  # a healthy stream is under way
            with faulty.stream("POST", f"{server}/v1/audio/speech",
                               json={"model": "tiny-faulty", "input": TEXT, "response_format": fmt}) as bad:
                assert bad.status_code == 200  # audio had started when the fault came
                with pytest.raises(httpx.RemoteProtocolError):
                    bad.read()
            received.extend(pieces)
    _assert_same_audio(_samples(b"".join(received)), tiny_voice.synthesize_audio(TEXT))
    assert metric(server, "ttsstack_streams_total", model="tiny-faulty", outcome="failed") == failed + 1
    assert _speech(server).status_code == 200
    assert httpx.get(f"{server}/healthz").status_code == 200


def test_a_failing_sse_stream_ends_with_an_error_event(server):
    received = []
    with httpx.stream("POST", f"{server}/v1/audio/speech", timeout=60,
                      json={"model": "tiny-faulty", "input": TEXT, "response_format": "pcm", "stream_format": "sse"}) as r:
        assert r.status_code == 200  # audio had started when the fault came
        with pytest.raises(httpx.RemoteProtocolError):  # and the body ends without its final chunk
            for piece in r.iter_raw():
                received.append(piece)
    events = [json.loads(e.removeprefix(b"data: ")) for e in b"".join(received).split(b"\n\n") if e]
    assert events[0]["type"] == "speech.audio.delta" and events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "synthesis_failed" and "injected fault" in events[-1]["error"]["message"]
