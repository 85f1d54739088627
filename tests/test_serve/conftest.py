"""A real uvicorn server on a free loopback port, and the voices it serves.

``tiny`` (cpu backend) and ``tiny-faulty`` (eager backend: a second addon on
another backend in the same process, whose stack fails a few chunks in) are
loaded once per session; each test starts its own server around them.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import pytest
import uvicorn
import yaml
from prometheus_client.parser import text_string_to_metric_families

import ttsstack
from ttsstack.compiler import compile_addon
from ttsstack.runtime import BLOCKS, RuntimeOptions, StreamableBlock
from ttsstack.runtime.blocks.base import BlockConfig
from ttsstack.runtime.blocks.decoder import Decoder
from ttsstack.serve import Limits, create_app
from ttsstack.serve.server import server_config

OPTIONS = RuntimeOptions(chunk_frames=16, first_chunk_frames=16)
"""Small decoder chunks: many chunks per utterance, each smaller than a vocoder block."""

LONG_TEXT = " ".join(["A long sentence that keeps the decoder busy for many chunks."] * 2)


class FailAfter(StreamableBlock):
    """Passes its stream through and raises after ``chunks`` chunks: a fault inside one synthesis."""

    class Config(BlockConfig):
        chunks: int

    def check(self, wiring, upstream):
        wiring.read(self.label, upstream, rank=3)
        return upstream

    def stream(self, tensors, upstream):
        for index, chunk in enumerate(upstream):
            if index == self.config.chunks:
                raise RuntimeError(f"injected fault after {index} chunks")
            yield chunk


@pytest.fixture(scope="session")
def tiny_voice(tiny_compiled):
    """The tiny addon on the cpu backend."""
    return ttsstack.load(tiny_compiled, backend="cpu", options=OPTIONS, compile_if_needed=False)


@pytest.fixture(scope="session")
def faulty_voice(tiny_compiled, tmp_path_factory):
    """The tiny networks renamed ``tiny-faulty``, on the eager backend, failing after 4 mel chunks."""
    BLOCKS.register("FailAfter")(FailAfter)
    folder = tmp_path_factory.mktemp("faulty") / "compiled"
    shutil.copytree(tiny_compiled, folder)
    data = yaml.safe_load((folder / "addon.yaml").read_text())
    data["name"] = "tiny-faulty"
    data["stack"][0]["streamable_block"]["stack"].append({"type": "FailAfter", "chunks": 4})
    (folder / "addon.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    compile_addon(folder, folder, [], progress=False)  # re-hash the edited config; every artifact is kept
    yield ttsstack.load(folder, backend="eager", options=OPTIONS, compile_if_needed=False)
    BLOCKS.unregister("FailAfter")


@contextmanager
def running_server(app, limits: Limits | None = None, send_buffer: int | None = None, ready: bool = True) -> Iterator[str]:
    """Run ``app`` as ``ttsstack serve`` does (its protocol and ``limits``) in a background thread on
    127.0.0.1 and a free port; yield its URL once it listens and, with ``ready``, once every voice is warm.

    ``send_buffer`` sets a small ``SO_SNDBUF`` on the server's sockets, so that a client that
    reads nothing blocks the server's sends after a few kilobytes.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if send_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, limits or Limits(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.started, "the server to start")
        if ready:
            wait_for(lambda: _ready(url), "the server to be ready")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _ready(url: str) -> bool:
    import httpx

    return httpx.get(f"{url}/readyz").status_code == 200


@pytest.fixture(scope="module")
def server(tiny_voice, faulty_voice) -> Iterator[str]:
    """Both voices behind default-ish limits; yields the base URL."""
    limits = Limits(max_input_chars=1000, max_body_bytes=4096)
    with running_server(create_app([tiny_voice, faulty_voice], limits), limits) as url:
        yield url


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it is true; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def metric(url: str, name: str, **labels: str) -> float:
    """The value of one sample of the server's ``/metrics`` (0 when absent)."""
    import httpx

    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@contextmanager
def counting_decoder(voice, block_at: int | None = None) -> Iterator[dict]:
    """Count the voice's decoder network calls; with ``block_at``, that call waits for ``release``.

    Yields ``{"calls": int, "release": threading.Event, "blocked": threading.Event}``.
    """
    block = next(b for _, b in voice.tree() if isinstance(b, Decoder))
    original = block.runner
    state = {"calls": 0, "release": threading.Event(), "blocked": threading.Event()}
    lock = threading.Lock()

    def counting(inputs):
        with lock:
            state["calls"] += 1
            call = state["calls"]
        if call == block_at:
            state["blocked"].set()
            state["release"].wait(timeout=60)
        return original(inputs)

    block.runner = counting
    try:
        yield state
    finally:
        state["release"].set()
        block.runner = original
