"""Ray Serve: a local Ray cluster serves the tiny addon with two replicas, streaming in parallel with parity.

One module-scoped cluster (2 CPUs, no dashboard) and one application keep
this lean: starting Ray is most of the module's time on a small host.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest
import ray
from ray import serve

from ttsstack.serve import AddonSource, Limits
from ttsstack.serve.ray_app import Placement, addon_application
from ttsstack.tolerances import PCM16, TORCHSCRIPT

from ..conftest import REPO
from .conftest import LONG_TEXT, OPTIONS

LIMITS = Limits(max_concurrent=1, max_queue=2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_url(tiny_compiled):
    """The tiny addon (cpu backend) deployed with two replicas on a local Ray cluster; yields Serve's URL."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})  # replicas import this checkout's ttsstack
    port = _free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = addon_application(AddonSource(tiny_compiled, "cpu"), LIMITS, Placement(replicas=2, cpus=1), OPTIONS)
        serve.run(app, name="tiny", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_stream_at_once_and_equal_the_single_process_server(ray_url, tiny_voice):
    want = np.clip(tiny_voice.synthesize_audio(LONG_TEXT), -1, 1)
    body = {"model": "tiny", "input": LONG_TEXT, "response_format": "pcm"}
    results: list[dict] = []
    start = threading.Barrier(4)

    def stream() -> None:
        start.wait()
        with httpx.stream("POST", f"{ray_url}/v1/audio/speech", json=body, timeout=120) as r:
            pieces, first = [], None
            for piece in r.iter_raw():
                first = first or time.monotonic()
                pieces.append(piece)
            results.append({"status": r.status_code, "replica": r.headers.get("x-ttsstack-replica"), "first": first,
                            "end": time.monotonic(), "pcm": b"".join(pieces), "pieces": len(pieces)})

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [r["status"] for r in results] == [200] * 4
    assert len({r["replica"] for r in results}) == 2  # each replica admits one synthesis: both served
    a, b = (next(r for r in results if r["replica"] == replica) for replica in {r["replica"] for r in results})
    assert a["first"] < b["end"] and b["first"] < a["end"]  # streaming from both at once
    for result in results:
        got = np.frombuffer(result["pcm"], dtype="<i2").astype(np.float32) / 32767.0
        assert result["pieces"] > 2 and got.shape == want.shape
        assert np.abs(got - want).max() <= PCM16.atol + TORCHSCRIPT.atol  # a replica's own threads may reorder sums


def test_errors_and_probes_are_the_servers_own(ray_url):
    r = httpx.post(f"{ray_url}/v1/audio/speech", json={"model": "nobody", "input": "Hi."}, timeout=60)
    assert r.status_code == 404 and "served models: tiny" in r.json()["error"]["message"]
    r = httpx.post(f"{ray_url}/v1/audio/speech", json={"model": "tiny", "input": "Hi.", "response_format": "ogg"}, timeout=60)
    assert r.status_code == 422 and r.json()["error"]["param"] == "response_format"
    assert httpx.get(f"{ray_url}/readyz", timeout=60).json() == {"status": "ready", "models": ["tiny"]}
    assert "ttsstack_requests_total" in httpx.get(f"{ray_url}/metrics", timeout=60).text  # one replica's metrics
