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
from ttsstack.serve.ray_app import AddonReplica, Placement, addon_application, build, deployment_options
from ttsstack.tolerances import PCM16, TORCHSCRIPT

from ..conftest import REPO
from .conftest import LONG_TEXT, OPTIONS

LIMITS = Limits(max_concurrent=2, max_queue=2)
RETRIES_ON_503 = 5
STREAMS = 4
"""Streams held open at once: two per replica, as Ray's router balances ongoing requests over both."""


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
    start, streaming = threading.Barrier(STREAMS), threading.Barrier(STREAMS, timeout=60)

    def stream() -> None:
        start.wait()
        for attempt in range(1, RETRIES_ON_503 + 1):
            with httpx.stream("POST", f"{ray_url}/v1/audio/speech", json=body, timeout=120) as r:
                if r.status_code != 503 or attempt == RETRIES_ON_503:  # 503: Ray's proxy says "try again"
                    pieces = r.iter_raw()
                    received = [next(pieces)]
                    streaming.wait()  # every stream has audio before any is read further: all open at once
                    received.extend(pieces)
                    results.append({"status": r.status_code, "replica": r.headers.get("x-ttsstack-replica"),
                                    "pcm": b"".join(received), "pieces": len(received), "attempts": attempt})
                    return
            time.sleep(0.5)

    threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not streaming.broken and [r["status"] for r in results] == [200] * STREAMS
    assert len({r["replica"] for r in results}) == 2  # both replicas streamed
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


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Placement(replicas=0), "replicas must be >= 1, got 0"),
    (lambda: Placement(replicas=3, max_replicas=2), r"max_replicas \(2\) must be >= replicas \(3\)"),
    (lambda: Placement(gpus=-1), "must be >= 0"),
    (lambda: build({"adon": "compiled/x"}), "addon=DIR is required; known: addon, backend, cpus"),
])
def test_a_bad_placement_or_builder_argument_is_refused_naming_it(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(("placement", "replicas"), [
    (Placement(replicas=2), 2),
    (Placement(replicas=1, max_replicas=3), 3),  # autoscaling: the most replicas there can be
])
def test_rays_queue_holds_what_all_replicas_admit(placement, replicas):
    limits = Limits(max_concurrent=2, max_queue=3)
    options = deployment_options(limits, placement)
    assert options["max_ongoing_requests"] == 2 + 3  # a replica is sent no more than it admits
    assert options["max_queued_requests"] == (2 + 3) * replicas  # requests sent at once all wait; none is 503
    assert ("autoscaling_config" in options) == (placement.max_replicas is not None)
    deployment = serve.deployment(AddonReplica, name="tiny", **options)  # Ray takes them (no cluster needed)
    assert deployment.max_queued_requests == options["max_queued_requests"]
