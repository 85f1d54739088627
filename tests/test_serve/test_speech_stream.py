"""The speech WebSocket: text fragments in as an LLM writes them, clause audio out before the text is done."""

from __future__ import annotations

import base64
import json

import anyio
import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import ttsstack
from ttsstack.serve import Limits, create_app
from ttsstack.tolerances import PCM16

from .conftest import metric, running_server, wait_for

TOKENS = ["Hello", " there", ",", " voice", " agent", ".", " The", " rest", " comes", " later", "."]
CLAUSES = ["Hello there,", "voice agent.", "The rest comes later."]


@pytest.fixture(scope="module")
def ws_server(tiny_voice):
    limits = Limits(max_input_chars=200, ws_idle_timeout_s=1.5, ws_flush_after_s=5.0)
    with running_server(create_app([tiny_voice], limits), limits) as url:
        yield url.replace("http://", "ws://") + "/v1/audio/speech/stream"


def _open(url: str, **start):
    ws = connect(url, open_timeout=10)
    ws.send(json.dumps({"type": "start", "model": "tiny", **start}))
    first = json.loads(ws.recv(timeout=10))
    assert first["type"] == "start" and first["format"] == "pcm_s16le", first
    return ws, first


def _read_until(ws, kind: str) -> tuple[bytes, list[dict]]:
    """Audio bytes and JSON events up to and including the first event of type ``kind``."""
    audio, events = bytearray(), []
    while True:
        message = ws.recv(timeout=30)
        if isinstance(message, bytes):
            audio += message
            continue
        events.append(json.loads(message))
        if events[-1]["type"] == kind:
            return bytes(audio), events


def _pcm(audio: bytes) -> np.ndarray:
    return np.frombuffer(audio, "<i2").astype(np.float32) / 32767


def _assert_same_audio(received: np.ndarray, expected: np.ndarray) -> None:
    assert len(received) == len(expected)
    assert np.max(np.abs(received - np.clip(expected, -1, 1))) <= PCM16.atol + 1e-7


def test_audio_starts_before_the_last_token_and_equals_clause_by_clause(ws_server, tiny_voice):
    ws, start = _open(ws_server, timings=True)
    with ws:
        sent = 0
        for token in TOKENS[:4]:  # "Hello there, voice": the first clause is complete
            ws.send(json.dumps({"type": "text", "text": token}))
            sent += 1
        first = ws.recv(timeout=30)  # speech of the first clause, while most tokens are unsent
        assert json.loads(first)["type"] == "audio" and json.loads(first)["text"] == CLAUSES[0]
        assert sent < len(TOKENS)
        for token in TOKENS[4:]:
            ws.send(json.dumps({"type": "text", "text": token}))
        ws.send(json.dumps({"type": "end"}))
        audio, events = _read_until(ws, "end")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert ws.close_code == 1000
    expected = np.concatenate([tiny_voice.synthesize_audio(c) for c in CLAUSES])
    _assert_same_audio(_pcm(audio), expected)
    assert [e["text"] for e in events if e["type"] == "audio"] == CLAUSES[1:]
    assert events[-1]["samples"] == len(expected)
    text = "".join(TOKENS)
    words = [w for e in events if e["type"] == "timings" for w in e["words"]]
    assert [w["word"] for w in words][-4:] == ["The", "rest", "comes", "later"]
    assert all(text[w["start_char"]:w["end_char"]] == w["word"] for w in words)
    assert all(0 <= w["start"] < w["end"] <= len(expected) / start["sample_rate"] + 1e-6 for w in words)


def test_clear_drops_what_is_queued_and_playing(ws_server, tiny_voice):
    ws, _ = _open(ws_server)
    with ws:
        ws.send(json.dumps({"type": "text", "text": "A long first clause that keeps going, and a second one, and a third. "}))
        assert json.loads(ws.recv(timeout=30))["type"] == "audio"
        ws.send(json.dumps({"type": "clear"}))
        _read_until(ws, "cleared")
        ws.send(json.dumps({"type": "text", "text": "New words."}))
        ws.send(json.dumps({"type": "end"}))
        audio, events = _read_until(ws, "end")
    assert [e["text"] for e in events if e["type"] == "audio"] == ["New words."]
    _assert_same_audio(_pcm(audio), tiny_voice.synthesize_audio("New words."))


def test_bad_messages_and_text_over_the_limit_lose_nothing_spoken(ws_server, tiny_voice):
    ws, _ = _open(ws_server)
    with ws:
        ws.send(b"\x00binary")
        assert json.loads(ws.recv(timeout=10))["code"] == "invalid_message"
        ws.send(json.dumps({"type": "text", "text": 5}))
        error = json.loads(ws.recv(timeout=10))
        assert error["code"] == "invalid_message" and "text" in error["message"]
        ws.send(json.dumps({"type": "text", "text": "Kept words, "}))
        ws.send(json.dumps({"type": "text", "text": "x" * 200}))
        audio, events = _read_until(ws, "error")
        assert events[-1]["code"] == "input_too_long" and "200" not in events[-1]["message"][:3]
        ws.send(json.dumps({"type": "end"}))
        rest, events = _read_until(ws, "end")
    _assert_same_audio(_pcm(audio + rest), tiny_voice.synthesize_audio("Kept words,"))


def test_idle_client_is_closed_with_a_reason(ws_server):
    ws, _ = _open(ws_server)
    with ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    assert ws.close_code == 1008 and "idle" in ws.close_reason


@pytest.mark.parametrize("start, code", [
    ({"type": "start", "model": "nope"}, "model_not_found"),
    ({"type": "start", "model": "tiny", "speed": "fast"}, "invalid_start"),
    ({"type": "text", "text": "no start"}, "invalid_start"),
])
def test_bad_start_is_refused_with_a_reason(ws_server, start, code):
    with connect(ws_server, open_timeout=10) as ws:
        ws.send(json.dumps(start))
        assert json.loads(ws.recv(timeout=10))["code"] == code
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert ws.close_code == 1008


def test_python_api_speaks_fragments_as_they_come(tiny_voice):
    produced: list[str] = []
    heard_after: list[int] = []

    async def main():
        heard = anyio.Event()

        async def tokens():
            for token in TOKENS:
                produced.append(token)
                yield token
                if len(produced) == 4:  # the first clause is complete: wait until it is heard
                    with anyio.fail_after(30):
                        await heard.wait()

        chunks = []
        async for item in tiny_voice.stream_text(tokens(), timings=True, flush_after_s=30):
            heard_after.append(len(produced))
            heard.set()
            chunks.append(item)
        return chunks

    chunks = anyio.run(main)
    assert heard_after[0] == 4 < len(TOKENS)
    expected = np.concatenate([tiny_voice.synthesize_audio(c) for c in CLAUSES])
    np.testing.assert_array_equal(np.concatenate([c.chunk for c in chunks]), expected)
    words = [w.text for c in chunks for w in c.words]
    assert words == "Hello there voice agent The rest comes later".split()


def test_api_key_guards_the_websocket(tiny_voice):
    limits = Limits()
    with running_server(create_app([tiny_voice], limits, api_key="secret"), limits) as url:
        ws_url = url.replace("http://", "ws://") + "/v1/audio/speech/stream"
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, open_timeout=10)
        assert refused.value.response.status_code == 403
        with connect(ws_url, open_timeout=10, additional_headers={"Authorization": "Bearer secret"}) as ws:
            ws.send(json.dumps({"type": "start", "model": "tiny"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "start"


def test_http_events_carry_audio_and_word_timings(ws_server, tiny_voice):
    url = ws_server.replace("ws://", "http://").replace("/v1/audio/speech/stream", "/v1/audio/speech/events")
    text = "Timed words, over HTTP."
    events = []
    answered = metric(url.removesuffix("/v1/audio/speech/events"), "ttsstack_requests_total", model="tiny", status="200")
    with httpx.stream("POST", url, json={"model": "tiny", "input": text}, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[0]["type"] == "speech.start" and events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    _assert_same_audio(_pcm(audio), tiny_voice.synthesize_audio(text))
    words = [w for e in events if e["type"] == "speech.word_timings" for w in e["words"]]
    assert [(w["word"], w["start_char"]) for w in words] == [("Timed", 0), ("words", 6), ("over", 13), ("HTTP", 18)]
    assert words == [w.as_dict() for i in tiny_voice.stream_audio(text, timings=True) for w in i.words]
    assert events[0] == {"type": "speech.start", "format": "pcm_s16le", "sample_rate": tiny_voice.sample_rate,
                         "channels": 1}
    assert events[-1]["samples"] == len(audio) // 2
    assert metric(url.removesuffix("/v1/audio/speech/events"), "ttsstack_requests_total", model="tiny",
                  status="200") == answered + 1  # counted as a speech request
    too_long = httpx.post(url, json={"model": "tiny", "input": "x" * 201})
    assert too_long.status_code == 413 and too_long.json()["error"]["param"] == "input"
    unknown = httpx.post(url, json={"model": "tiny", "input": text, "voice": "nobody"})  # not silently the default
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "voice_not_found"


def test_timings_from_a_model_without_alignment_are_refused_naming_why(tiny_tacotron_compiled):
    voice = ttsstack.load(tiny_tacotron_compiled, backend="eager", compile_if_needed=False)
    with running_server(create_app([voice])) as url:
        name = voice.spec.name
        for path, body in (("/v1/audio/speech/events", {}), ("/v1/audio/speech", {"stream_format": "sse", "timings": True})):
            r = httpx.post(url + path, json={"model": name, "input": "Hello there.", **body}, timeout=60)
            assert r.status_code == 400, (path, r.text)
            error = r.json()["error"]
            assert error["code"] == "timings_unavailable" and error["param"] == "timings" and "alignment" in error["message"]
        plain = httpx.post(url + "/v1/audio/speech", json={"model": name, "input": "Hello there.", "stream_format": "sse"},
                           timeout=60)
        assert plain.status_code == 200 and b"speech.word_timings" not in plain.content


def test_hang_up_mid_speech_stops_the_session_and_the_server_goes_on(ws_server, tiny_voice):
    http = ws_server.replace("ws://", "http://").replace("/v1/audio/speech/stream", "")
    before = metric(http, "ttsstack_streams_total", model="tiny", outcome="cancelled")
    ws, _ = _open(ws_server)
    ws.send(json.dumps({"type": "text", "text": "One clause, " * 12}))
    assert json.loads(ws.recv(timeout=30))["type"] == "audio"
    ws.close()
    wait_for(lambda: metric(http, "ttsstack_streams_total", model="tiny", outcome="cancelled") == before + 1,
             "the session to be counted as cancelled")
    ws, _ = _open(ws_server)
    with ws:
        ws.send(json.dumps({"type": "text", "text": "Still here."}))
        ws.send(json.dumps({"type": "end"}))
        audio, _ = _read_until(ws, "end")
    _assert_same_audio(_pcm(audio), tiny_voice.synthesize_audio("Still here."))
