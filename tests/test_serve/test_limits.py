"""Bad requests get a status and a JSON error naming the field at fault."""

from __future__ import annotations

import httpx
import pytest

URL = "/v1/audio/speech"


def _post(server: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{server}{URL}", timeout=60, **kwargs)


@pytest.mark.parametrize("body, status, param", [
    ({"model": "tiny"}, 422, "input"),
    ({"model": "tiny", "input": 5}, 422, "input"),
    ({"model": "tiny", "input": None}, 422, "input"),
    ({"model": "tiny", "input": ""}, 400, "input"),
    ({"model": "tiny", "input": "  \n "}, 400, "input"),
    ({"model": "tiny", "input": "x" * 1001}, 413, "input"),
    ({"model": "tiny", "input": "###"}, 400, "input"),  # no character the frontend can speak
    ({"input": "hello"}, 422, "model"),
    ({"model": "tiny", "input": "hello", "response_format": "ogg"}, 422, "response_format"),
    ({"model": "tiny", "input": "hello", "speed": 10}, 422, "speed"),
    ({"model": "tiny", "input": "hello", "speed": "fast"}, 422, "speed"),
    ({"model": "tiny", "input": "hello", "speed": "2"}, 422, "speed"),  # strict: a number, not a string
    ({"model": "tiny", "input": "hello", "speed": True}, 422, "speed"),
    ({"model": "tiny", "input": "hello", "stream": "false"}, 422, "stream"),
    ({"model": "tiny", "input": "hello", "stream_format": "events"}, 422, "stream_format"),
    ({"model": "tiny", "input": "hello", "temperature": 1}, 422, "temperature"),
    ({"model": "tiny", "input": "hello", "voice": "bob"}, 400, "voice"),  # tiny's one voice is "default"
    ({"model": "tiny", "input": "hello", "voice": 3}, 422, "voice"),
])
def test_bad_body_names_the_field(server, body, status, param):
    r = _post(server, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param
    assert param in error["message"] or status == 404
    assert error["type"] == "invalid_request_error"


def test_unknown_model_is_404_listing_the_served_ones(server):
    r = _post(server, json={"model": "tts-1", "input": "hello"})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["param"] == "model" and "tiny, tiny-faulty" in error["message"]


def test_body_that_is_not_json_is_422(server):
    r = _post(server, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "body"


def test_body_over_the_cap_is_413_declared_or_chunked(server):
    big = b'{"model": "tiny", "input": "' + b"a" * 5000 + b'"}'
    r = _post(server, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["param"] == "body"

    def chunks():
        for start in range(0, len(big), 1000):
            yield big[start:start + 1000]

    r = _post(server, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.json()["error"]["param"] == "body"


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/v1/nothing", 404, "not_found"),
    ("GET", URL, 405, "method_not_allowed"),
    ("DELETE", "/v1/models", 405, "method_not_allowed"),
])
def test_unknown_paths_and_methods_answer_in_openai_error_shape(server, method, path, status, code):
    r = httpx.request(method, f"{server}{path}", timeout=60)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and path in error["message"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_a_body_that_is_not_sent_as_json_names_its_content_type(server, content_type):
    r = _post(server, content=b'{"model": "tiny", "input": "hello"}', headers={"content-type": content_type})
    assert r.status_code == 415
    error = r.json()["error"]
    assert error["param"] == "content-type" and content_type in error["message"]


def test_integer_speed_is_a_number(server):
    assert _post(server, json={"model": "tiny", "input": "hello", "speed": 2}).status_code == 200
