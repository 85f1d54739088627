"""Clients that hold connections: never reading, half-sent headers, bodies that never finish.

Small socket buffers and second-scale timeouts keep these fast: the server's
sends block after a few kilobytes, and every timeout here is one second.
"""

from __future__ import annotations

import json
import socket
import time

import httpx

from ttsstack.serve import Limits, create_app

from .conftest import metric, running_server, wait_for

SECOND = Limits(max_concurrent=2, max_queue=4, send_timeout_s=1.0, header_timeout_s=1.0, body_timeout_s=1.0,
                max_header_bytes=2048)
LONG = "Every word of this sentence is spoken to a client that never reads it. " * 6  # ~200 KB of audio


def _connect(url: str, receive_buffer: int | None = None) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Read what is left; True once the server has closed (EOF or reset), False if it stays silent 10 s."""
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_two_clients_that_never_read_cannot_hold_the_slots(tiny_voice):
    with running_server(create_app([tiny_voice], SECOND), SECOND, send_buffer=4096) as url:
        body = json.dumps({"model": "tiny", "input": LONG, "response_format": "pcm"}).encode()
        request = (b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        stalled = [_connect(url, receive_buffer=4096) for _ in range(2)]
        try:
            for sock in stalled:
                sock.sendall(request)  # and never read a byte
            wait_for(lambda: metric(url, "ttsstack_active_streams", model="tiny") == 2, "both slots to be taken")
            start = time.monotonic()
            r = httpx.post(f"{url}/v1/audio/speech", json={"model": "tiny", "input": "Hello there.", "response_format": "wav"},
                           timeout=10)
            waited = time.monotonic() - start
            assert r.status_code == 200 and r.content[:4] == b"RIFF"
            assert waited < SECOND.send_timeout_s + 3  # one send timeout, not the stalled streams' length
            assert metric(url, "ttsstack_streams_total", model="tiny", outcome="stalled") == 2
            assert metric(url, "ttsstack_active_streams", model="tiny") == 0
            assert all(_closed_by_server(sock) for sock in stalled)  # aborted, nothing left buffered for them
        finally:
            for sock in stalled:
                sock.close()


def test_half_sent_headers_are_closed_after_the_header_timeout(tiny_voice):
    with running_server(create_app([tiny_voice], SECOND), SECOND) as url:
        socks = [_connect(url) for _ in range(50)]
        try:
            for sock in socks:
                sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-")
            start = time.monotonic()
            assert all(_closed_by_server(sock) for sock in socks)
            assert time.monotonic() - start < SECOND.header_timeout_s + 3
            assert httpx.get(f"{url}/healthz").status_code == 200
        finally:
            for sock in socks:
                sock.close()


def test_unfinished_headers_over_the_size_limit_are_400(tiny_voice):
    with running_server(create_app([tiny_voice], SECOND), SECOND) as url:
        sock = _connect(url)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 4096)  # and never ends them
            answer = sock.recv(65536)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 400")


def test_a_body_that_never_finishes_is_408(tiny_voice):
    with running_server(create_app([tiny_voice], SECOND), SECOND) as url:
        sock = _connect(url)
        try:
            sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"model\": ")
            answer = b""
            while chunk := sock.recv(65536):  # the server answers, then closes
                answer += chunk
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408")
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["param"] == "body" and "timeout" in error["message"]
        assert metric(url, "ttsstack_requests_total", model="", status="408") == 1
