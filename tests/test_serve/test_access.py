"""The opt-in API key, and readiness that waits for every addon's warm-up."""

from __future__ import annotations

import threading

import httpx
import pytest

from ttsstack.serve import Limits, create_app

from .conftest import running_server, wait_for

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def keyed_server(tiny_voice):
    with running_server(create_app([tiny_voice], api_key=KEY)) as url:
        yield url


@pytest.mark.parametrize("method, path", [("GET", "/v1/models"), ("GET", "/metrics"), ("POST", "/v1/audio/speech"),
                                          ("GET", "/v1/nothing")])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {KEY}", KEY])
def test_every_endpoint_but_the_probes_needs_the_key(keyed_server, method, path, authorization):
    headers = {"authorization": authorization} if authorization else {}
    r = httpx.request(method, f"{keyed_server}{path}", headers=headers, json={"model": "tiny", "input": "Hi."})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"


def test_the_key_opens_every_endpoint_and_probes_need_none(keyed_server):
    auth = {"authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{keyed_server}/v1/models", headers=auth).status_code == 200
    r = httpx.post(f"{keyed_server}/v1/audio/speech", headers=auth, json={"model": "tiny", "input": "Hi."}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg" and r.content  # OpenAI's default format
    assert httpx.get(f"{keyed_server}/healthz").status_code == 200
    assert httpx.get(f"{keyed_server}/readyz").status_code == 200


def test_readyz_is_503_until_every_addon_has_warmed_up(tiny_voice, monkeypatch):
    release = threading.Event()
    warmup = tiny_voice.warmup

    def slow_warmup():
        release.wait(timeout=30)
        warmup()

    monkeypatch.setattr(tiny_voice, "warmup", slow_warmup)
    with running_server(create_app([tiny_voice], Limits(retry_after_s=2)), ready=False) as url:
        try:
            r = httpx.get(f"{url}/readyz")
            assert r.status_code == 503 and r.headers["retry-after"] == "2"
            assert r.json()["error"]["message"] == "not ready: warming up: tiny"
            assert httpx.get(f"{url}/healthz").status_code == 200  # alive all the while
        finally:
            release.set()
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, "the warm-up to finish")
