"""Backpressure and cancellation: bounded slots and queue, 429 when full, a hang-up stops synthesis."""

from __future__ import annotations

import json
import socket
import threading

import httpx

from ttsstack.runtime.prefetch import AHEAD
from ttsstack.serve import Limits, create_app

from .conftest import LONG_TEXT, counting_decoder, metric, running_server, wait_for


def _post_in_thread(url: str, results: dict, key: str) -> threading.Thread:
    def post():
        r = httpx.post(f"{url}/v1/audio/speech", json={"model": "tiny", "input": "Hello there."}, timeout=60)
        results[key] = r.status_code

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def test_full_queue_is_429_with_retry_after(tiny_voice):
    app = create_app([tiny_voice], Limits(max_concurrent=1, max_queue=1, retry_after_s=3))
    with running_server(app) as url, counting_decoder(tiny_voice, block_at=1) as decoder:
        results: dict[str, int] = {}
        running = _post_in_thread(url, results, "running")
        wait_for(decoder["blocked"].is_set, "the first synthesis to reach the decoder")
        queued = _post_in_thread(url, results, "queued")
        wait_for(lambda: metric(url, "ttsstack_queue_depth", model="tiny") == 1, "the second request to queue")
        assert metric(url, "ttsstack_active_streams", model="tiny") == 1

        refused = httpx.post(f"{url}/v1/audio/speech", json={"model": "tiny", "input": "Hello."}, timeout=60)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "3"
        assert refused.json()["error"]["code"] == "rate_limited"

        decoder["release"].set()
        running.join(60)
        queued.join(60)
        assert results == {"running": 200, "queued": 200}
        assert metric(url, "ttsstack_requests_total", model="tiny", status="429") == 1
        assert metric(url, "ttsstack_queue_depth", model="tiny") == 0


def test_client_that_hangs_up_stops_its_synthesis_within_one_chunk(tiny_voice):
    with counting_decoder(tiny_voice) as free_run:
        tiny_voice.synthesize(LONG_TEXT)
    whole_utterance_calls = free_run["calls"]

    block_at = 6  # a few audio chunks in
    with running_server(create_app([tiny_voice])) as url, counting_decoder(tiny_voice, block_at=block_at) as decoder:
        with httpx.stream("POST", f"{url}/v1/audio/speech", json={"model": "tiny", "input": LONG_TEXT}, timeout=60) as r:
            assert r.status_code == 200
            next(r.iter_raw())
        # the client has hung up; the server notices while the decoder is still busy
        wait_for(lambda: metric(url, "ttsstack_streams_total", model="tiny", outcome="cancelled") == 1,
                 "the server to see the disconnect")
        decoder["release"].set()
        wait_for(lambda: metric(url, "ttsstack_active_streams", model="tiny") == 0, "the synthesis to stop")
        # The chunk being computed is finished (at most 2 more decoder calls: a vocoder
        # block of 32 frames needs 2 decoder chunks of 16), and the mel thread's run-ahead
        # (the chunks it holds ready and the one it makes meanwhile, each up to 2 decoder
        # calls), then nothing more is asked for.
        assert decoder["calls"] <= block_at + 2 + 2 * (AHEAD + 1) < whole_utterance_calls, whole_utterance_calls
        assert metric(url, "ttsstack_streams_total", model="tiny", outcome="completed") == 0


def test_client_that_hangs_up_while_queued_frees_its_place(tiny_voice):
    app = create_app([tiny_voice], Limits(max_concurrent=1, max_queue=1))
    with running_server(app) as url, counting_decoder(tiny_voice, block_at=1) as decoder:
        results: dict[str, int] = {}
        running = _post_in_thread(url, results, "running")
        wait_for(decoder["blocked"].is_set, "the first synthesis to reach the decoder")
        body = json.dumps({"model": "tiny", "input": "Queued, then gone."}).encode()
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            wait_for(lambda: metric(url, "ttsstack_queue_depth", model="tiny") == 1, "the request to queue")
        wait_for(lambda: metric(url, "ttsstack_queue_depth", model="tiny") == 0, "the queue place to be freed")
        assert metric(url, "ttsstack_streams_total", model="tiny", outcome="cancelled") == 1
        wait_for(lambda: metric(url, "ttsstack_requests_total", model="tiny", status="499") == 1,
                 "the dropped request to be counted")
        decoder["release"].set()
        running.join(60)
        assert results == {"running": 200}
