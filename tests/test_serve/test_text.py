"""Text with bad characters over HTTP: nothing after them is lost, and what is not spoken is named."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

import ttsstack
from ttsstack.serve import create_app

from .conftest import OPTIONS, metric, running_server


def _pcm(url: str, text: str) -> httpx.Response:
    """``text`` as JSON escapes (``\\ud800`` as the six characters a client sends for a lone surrogate)."""
    body = json.dumps({"model": "tiny", "input": text, "response_format": "pcm"}).encode()
    return httpx.post(f"{url}/v1/audio/speech", content=body, headers={"content-type": "application/json"}, timeout=60)


@pytest.mark.parametrize("bad, where", [("\x00", "U+0000 at 0 (control character)"),
                                        ("\ud800", "U+D800 at 0 (invalid code point)"),
                                        ("\x1b", "U+001B at 0 (control character)")])
def test_a_bad_character_first_loses_nothing_after_it(server, tiny_voice, bad, where):
    r = _pcm(server, bad + "Hello world")
    assert r.status_code == 200, r.text
    assert r.headers["x-skipped-characters"] == where
    spoken = np.frombuffer(r.content, "<i2").astype(np.float32) / 32767.0
    reference = tiny_voice.synthesize_audio("Hello world")
    assert spoken.shape == reference.shape  # every word after the bad character was spoken
    assert np.abs(spoken - np.clip(reference, -1, 1)).max() < 1e-4


def test_characters_the_voice_cannot_speak_are_named_in_a_header(server):
    r = _pcm(server, "Call 911 now 😀 你好")
    assert r.status_code == 200
    skipped = r.headers["x-skipped-characters"]
    for described in ["U+0039 at 5", "U+0031 at 6", "U+1F600 at 13", "U+4F60 at 15", "U+597D at 16"]:
        assert f"{described} (not in the symbol table)" in skipped
    assert "x-skipped-characters" not in _pcm(server, "Nothing skipped here.").headers


def test_only_bad_characters_is_400_naming_them(server):
    r = _pcm(server, "\x00\ud800 123")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "input"
    assert "U+0000 at 0 (control character)" in error["message"] and "U+0031 at 3" in error["message"]
    assert metric(server, "ttsstack_requests_total", model="tiny", status="500") == 0


@pytest.fixture(scope="module")
def demo_server(demo_compiled):
    """The demo voice (phonemes frontend: espeak-ng) on the cpu backend."""
    pytest.importorskip("espeakng_loader")
    voice = ttsstack.load(demo_compiled, backend="cpu", options=OPTIONS, compile_if_needed=False)
    with running_server(create_app([voice])) as url:
        yield url, voice


@pytest.mark.parametrize("bad", ["\x00", "\ud800"])
def test_demo_voice_speaks_every_word_after_a_nul_or_a_surrogate(demo_server, bad):
    url, voice = demo_server
    body = json.dumps({"model": voice.spec.name, "input": bad + "Hello world", "response_format": "pcm"}).encode()
    r = httpx.post(f"{url}/v1/audio/speech", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text  # was 0.33 s of silence (NUL), or a 500 (surrogate)
    assert r.headers["x-skipped-characters"].startswith(f"U+{ord(bad):04X} at 0 ")
    assert len(r.content) // 2 == len(voice.synthesize_audio("Hello world"))
