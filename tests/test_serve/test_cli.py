"""``ttsstack serve``: addon arguments, duplicate names, and a real server process with two backends."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from ttsstack.cli import main, open_access_warning
from ttsstack.compiler import compile_addon
from ttsstack.serve import AddonSource, parse_addon_source

from .conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
SERVE = ["-m", "ttsstack.cli"]
PAUSED_SERVE = ["-c", """
import os, signal, sys
import ttsstack.serve.server as server
run_server = server.run_server
def paused(config, sockets):
    os.kill(os.getpid(), signal.SIGSTOP)  # stopped after printing its URL, before uvicorn runs the application
    run_server(config, sockets)
server.run_server = paused
from ttsstack.cli import main
sys.exit(main(sys.argv[1:]))
"""]
"""``ttsstack serve`` that stops itself (SIGSTOP) once it has printed its URL, until SIGCONT."""


@pytest.mark.parametrize("text, expected", [
    ("compiled/tiny", AddonSource(Path("compiled/tiny"), "cpu")),
    ("compiled/tiny:eager", AddonSource(Path("compiled/tiny"), "eager")),
    ("odd:name/addon", AddonSource(Path("odd:name/addon"), "cpu")),
])
def test_addon_argument_is_a_folder_and_an_optional_backend(text, expected):
    assert parse_addon_source(text) == expected


def test_unknown_backend_lists_the_known_ones(tiny_compiled, capsys):
    assert main(["serve", "--addon", f"{tiny_compiled}:tpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'tpu'" in err and "cpu" in err


def test_two_addons_of_one_name_are_refused_before_loading(tiny_compiled, capsys):
    assert main(["serve", "--addon", str(tiny_compiled), "--addon", f"{tiny_compiled}:eager", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "model name 'tiny' is served twice" in err and f"{tiny_compiled}:eager" in err


@pytest.mark.parametrize("host, key, warned", [
    ("127.0.0.1", None, False), ("::1", None, False), ("localhost", None, False),
    ("0.0.0.0", None, True), ("192.168.1.5", None, True), ("0.0.0.0", "k", False),
])
def test_binding_beyond_loopback_without_a_key_is_warned(host, key, warned):
    warning = open_access_warning(host, key)
    assert (warning is not None) == warned
    assert warning is None or (host in warning and "TTSSTACK_API_KEY" in warning)


def _start_serve(args: list[str], env: dict[str, str], entry: list[str] = SERVE) -> tuple[subprocess.Popen, str]:
    """Start ``ttsstack serve ARGS`` (through ``entry``) on a free loopback port; the process and the URL it prints."""
    cmd = [sys.executable, *entry, "serve", "--port", "0", "--log-level", "warning", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **env})
    seen = []
    for line in proc.stdout:  # the process prints the URL once it listens
        seen.append(line)
        match = re.search(r" on (http://127\.0\.0\.1:\d+)", line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain the rest
            return proc, match.group(1)
    raise AssertionError("the server exited:\n" + "".join(seen))


def test_serve_process_serves_addons_on_their_own_backends_and_stops_cleanly_on_sigterm(tiny_compiled, tiny_voice, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_compiled, other)
    data = yaml.safe_load((other / "addon.yaml").read_text())
    (other / "addon.yaml").write_text(yaml.safe_dump({**data, "name": "tiny-2"}, sort_keys=False))
    compile_addon(other, other, [], progress=False)  # re-hash the edited config; every artifact is kept
    proc, url = _start_serve(["--addon", f"{tiny_compiled}:cpu", "--addon", f"{other}:eager", "--shutdown-grace", "20"],
                             {"TTSSTACK_API_KEY": "k3y"})
    try:
        assert httpx.get(f"{url}/v1/models", timeout=60).status_code == 401  # the key from the environment
        auth = {"authorization": "Bearer k3y"}
        models = httpx.get(f"{url}/v1/models", headers=auth, timeout=60).json()["data"]
        assert {(m["id"], m["backend"]) for m in models} == {("tiny", "cpu"), ("tiny-2", "eager")}

        # SIGTERM during a stream: new connections are refused, the stream goes on to its end, exit status 0
        text = "A sentence streaming while the server is told to stop. " * 3
        body = {"model": "tiny", "input": text, "response_format": "pcm"}
        with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, headers=auth, timeout=60) as r:
            pieces = r.iter_raw()
            received = [next(pieces)]  # the stream is under way
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{url}/healthz", timeout=5)
                except (httpx.ConnectError, httpx.ReadError):  # refused, or reset: a probe that reached the backlog
                    break                                        # just as the listening socket closed
                assert time.monotonic() < deadline, "still accepting connections 30 s after SIGTERM"
                time.sleep(0.05)
            received.extend(pieces)
        assert len(b"".join(received)) == 2 * len(tiny_voice.synthesize_audio(text))
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait(timeout=60)


def test_a_client_that_connects_before_the_application_runs_waits_and_is_served(tiny_compiled):
    proc, url = _start_serve(["--addon", str(tiny_compiled)], {}, entry=PAUSED_SERVE)
    try:
        stat = Path(f"/proc/{proc.pid}/stat")
        wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", "serve to stop itself")
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as client:  # refused unless the socket listens
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            proc.send_signal(signal.SIGCONT)  # uvicorn starts, accepts the waiting connection and answers it
            response = b""
            while chunk := client.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in response
    finally:
        proc.kill()
        proc.wait(timeout=60)
