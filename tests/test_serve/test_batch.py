"""``serve --batch``: concurrent requests to a batching server answer the unbatched voice's audio; the flag's errors."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

import ttsstack
from ttsstack.cli import main
from ttsstack.runtime import RuntimeOptions
from ttsstack.runtime.batching import BatchingRunner
from ttsstack.serve import Limits, create_app
from ttsstack.serve.config import concurrency_for_batch, threads_per_call
from ttsstack.tolerances import BATCHED, PCM16

from .conftest import metric, running_server

TEXTS = [  # 20 to 26 phonemes: any three pad within the batcher's PADDING_BUDGET, so they may share a batch
    "Batched streams share one call.",
    "Each stream still hears its own words.",
    "A third request, a little shorter.",
    "A fourth request runs a bit longer.",
]
BATCH = 4


@pytest.fixture(scope="module")
def voices(demo_compiled):
    """The demo on cpu twice: calls alone, and with the calls of up to four streams batched."""
    alone = ttsstack.load(demo_compiled, backend="cpu", compile_if_needed=False)
    batched = ttsstack.load(demo_compiled, backend="cpu", options=RuntimeOptions(batch=BATCH), compile_if_needed=False)
    return alone, batched


def _pcm(url: str, text: str) -> np.ndarray:
    body = {"model": "fastpitch-demo", "input": text, "response_format": "pcm"}
    response = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, dtype="<i2").astype(np.float64) / 32767.0


def _batched_calls(url: str, network: str) -> dict[int, float]:
    return {size: metric(url, "ttsstack_batched_calls_total", model="fastpitch-demo", network=network, size=str(size))
            for size in range(1, BATCH + 1)}


def test_concurrent_requests_to_a_batching_server_get_the_unbatched_audio(voices):
    alone, batched = voices
    encoder = batched.runners["text_encoder"]
    assert isinstance(encoder, BatchingRunner)
    inner = encoder.runner
    first = threading.Event()

    def held_until_the_others_queue(inputs):
        """The first text-encoder call waits for the other streams' calls, so the next batch holds all three."""
        if not first.is_set():
            first.set()
            deadline = time.monotonic() + 30
            while len(encoder._queue) < BATCH - 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        return inner(inputs)

    limits = Limits(max_concurrent=concurrency_for_batch(BATCH, None))
    with running_server(create_app([batched], limits), limits) as url:
        before = _batched_calls(url, "text_encoder")  # the warmup's calls
        encoder.runner = held_until_the_others_queue
        try:
            results: dict[int, np.ndarray] = {}
            threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, _pcm(url, TEXTS[i])))
                       for i in range(len(TEXTS))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=300)
        finally:
            encoder.runner = inner
        sizes = {size: calls - before[size] for size, calls in _batched_calls(url, "text_encoder").items()}
    assert sizes[BATCH - 1] >= 1, sizes  # three streams' text encoder calls ran as one
    assert sum(n * calls for n, calls in sizes.items()) == len(TEXTS), sizes
    for i, text in enumerate(TEXTS):
        want = np.clip(alone.synthesize_audio(text), -1, 1)
        assert results[i].shape == want.shape, text
        error = np.abs(results[i] - want).max()
        assert error <= PCM16.atol + BATCHED.atol + BATCHED.rtol * np.abs(want).max(), (text, error)


def test_batch_raises_the_default_max_concurrent_and_refuses_a_smaller_one(capsys):
    assert concurrency_for_batch(1, None) == Limits().max_concurrent
    assert concurrency_for_batch(8, None) == 8
    assert concurrency_for_batch(4, 6) == 6
    assert main(["serve", "--batch", "8", "--max-concurrent", "4"]) == 2
    err = capsys.readouterr().err
    assert "--batch 8" in err and "--max-concurrent 4" in err


@pytest.mark.parametrize("value, message", [("0", "positive integer"), ("65", "at most 64"), ("two", "invalid")])
def test_batch_flag_refuses_what_is_not_a_batch_size(value, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--batch", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--batch" in err and message in err


def test_batched_calls_share_the_cores_as_one_call():
    assert threads_per_call(cores=16, max_concurrent=8, batch=1, addons=1) == 2
    assert threads_per_call(cores=16, max_concurrent=8, batch=8, addons=1) == 16
    assert threads_per_call(cores=16, max_concurrent=8, batch=4, addons=2) == 4
    assert threads_per_call(cores=2, max_concurrent=16, batch=1, addons=1) == 1


def test_serve_passes_batch_to_every_addon(tiny_compiled, monkeypatch, capsys):
    """``serve --batch 3`` loads each addon with ``RuntimeOptions.batch`` 3 and runs 3 syntheses at once."""
    import ttsstack.cli as cli
    import ttsstack.serve.server as server

    loaded = []
    real_load = cli.load

    def recording_load(*args, **kwargs):
        loaded.append(kwargs["options"])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(cli, "load", recording_load)
    monkeypatch.setattr(server, "run_server", lambda config, sockets: [s.close() for s in sockets])
    assert main(["serve", "--addon", str(tiny_compiled), "--port", "0", "--batch", "3"]) == 0
    assert [options.batch for options in loaded] == [3]
    assert "up to 3 streams at once, the calls of up to 3 as one batch" in capsys.readouterr().out
