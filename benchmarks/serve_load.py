"""Load benchmark of ``ttsstack serve``: N concurrent streaming clients on loopback for a bounded time.

Starts a server process (or uses ``--url``), runs ``--clients`` clients that
each request speech back to back until ``--duration`` seconds have passed or
``--max-requests`` have been sent (whichever comes first; requests in flight
then finish), and reports requests/s, time to first audio p50/p95/p99,
rejections (429), errors, seconds of audio per second, and the server's
resident memory before and after (its ``/metrics``). Prints a table and
writes ``serve_load.json`` to ``--out`` (default ``benchmarks/out/``; ``--record``:
``benchmarks/results/``).

    python benchmarks/serve_load.py --addon compiled/fastpitch:cpu --clients 16 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np

from common import add_output_flags, output_dir, parser_for

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TEXTS = [
    "Hello there, how can I help you today?",
    "The quick brown fox jumps over the lazy dog. Streaming speech starts before the sentence ends.",
    "Your meeting moved to three thirty; I will send the new invitation right away.",
]


@dataclass
class Tally:
    """What the clients saw."""

    ok: int = 0
    rejected: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    first_audio_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    audio_s: float = 0.0

    def error(self, what: str) -> None:
        """Count an error, keeping the first few messages."""
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


@contextmanager
def server_process(args: argparse.Namespace) -> Iterator[str]:
    """Run ``ttsstack serve`` on a free loopback port; yield its URL; stop it afterwards."""
    cmd = [sys.executable, "-m", "ttsstack.cli", "serve", "--host", "127.0.0.1", "--port", "0",
           "--log-level", "warning", "--max-concurrent", str(args.max_concurrent), "--max-queue", str(args.max_queue)]
    for addon in args.addon:
        cmd += ["--addon", addon]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def read_output() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_output, daemon=True).start()
    try:
        seen: list[str] = []
        while True:
            line = lines.get(timeout=600)
            if line is None:
                raise SystemExit("the server exited:\n" + "".join(seen))
            seen.append(line)
            print("  server:", line.rstrip(), file=sys.stderr)
            match = re.search(r" on (http://\S+) ", line)
            if line.startswith("serving ") and match:
                yield match.group(1)
                return
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def server_rss_bytes(url: str) -> float | None:
    """The server's resident memory from its ``/metrics`` (None where it does not report it)."""
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    return None


async def client(http: httpx.AsyncClient, url: str, body: dict, texts: list[str], stop: dict, tally: Tally) -> None:
    """Request speech back to back until the deadline or the request budget is reached."""
    header = 44 if body["response_format"] == "wav" else 0
    while time.perf_counter() < stop["deadline"] and stop["budget"] > 0:
        stop["budget"] -= 1
        text = texts[stop["budget"] % len(texts)]
        start = time.perf_counter()
        first = None
        received = 0
        try:
            async with http.stream("POST", f"{url}/v1/audio/speech", json={**body, "input": text}) as r:
                if r.status_code == 429:
                    tally.rejected += 1
                    await asyncio.sleep(min(float(r.headers.get("retry-after", 1)), stop["deadline"] - time.perf_counter()))
                    continue
                if r.status_code != 200:
                    tally.error(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                    continue
                rate = int(r.headers["x-sample-rate"])
                async for piece in r.aiter_raw():
                    received += len(piece)
                    if first is None and received > header:
                        first = time.perf_counter() - start
        except httpx.HTTPError as exc:
            tally.error(f"{type(exc).__name__}: {exc}")
            continue
        if first is None:
            tally.error("no audio in a 200 response")
            continue
        tally.ok += 1
        tally.first_audio_s.append(first)
        tally.total_s.append(time.perf_counter() - start)
        tally.audio_s += (received - header) / 2 / rate


async def run_load(url: str, args: argparse.Namespace, model: str) -> tuple[Tally, float]:
    """Run every client; return the tally and the wall time."""
    tally = Tally()
    texts = args.text or DEFAULT_TEXTS
    body = {"model": model, "response_format": args.format, "voice": "default"}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    start = time.perf_counter()
    stop = {"deadline": start + args.duration, "budget": args.max_requests}
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as http:
        await asyncio.gather(*(client(http, url, body, texts, stop, tally) for _ in range(args.clients)))
    return tally, time.perf_counter() - start


def percentiles_ms(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds (None without samples)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p = np.percentile(np.array(values) * 1000, [50, 95, 99])
    return {"p50": round(float(p[0]), 1), "p95": round(float(p[1]), 1), "p99": round(float(p[2]), 1)}


def report(args: argparse.Namespace, url: str, model: str, tally: Tally, wall: float,
           rss_before: float | None, rss_after: float | None) -> dict:
    """The result as a dict (what is written as JSON)."""
    def mib(size: float | None) -> float | None:
        return None if size is None else round(size / 2**20, 1)

    return {
        "config": {"url": url, "model": model, "addons": args.addon, "clients": args.clients,
                   "duration_s": args.duration, "max_requests": args.max_requests, "format": args.format,
                   "max_concurrent": args.max_concurrent, "max_queue": args.max_queue},
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "wall_s": round(wall, 2),
        "requests_ok": tally.ok,
        "rejected_429": tally.rejected,
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "requests_per_s": round(tally.ok / wall, 2) if wall else None,
        "time_to_first_audio_ms": percentiles_ms(tally.first_audio_s),
        "request_total_ms": percentiles_ms(tally.total_s),
        "audio_s": round(tally.audio_s, 1),
        "audio_s_per_s": round(tally.audio_s / wall, 2) if wall else None,
        "server_rss_mib": {"before": mib(rss_before), "after": mib(rss_after)},
    }


def print_table(result: dict) -> None:
    """A readable summary of ``result``."""
    ttfa, total, rss = result["time_to_first_audio_ms"], result["request_total_ms"], result["server_rss_mib"]
    cfg = result["config"]
    rows = [
        ("clients / duration", f"{cfg['clients']} / {result['wall_s']} s ({cfg['format']}, model {cfg['model']})"),
        ("requests ok", result["requests_ok"]),
        ("rejected (429)", result["rejected_429"]),
        ("errors", result["errors"]),
        ("requests/s", result["requests_per_s"]),
        ("time to first audio p50/p95/p99", f"{ttfa['p50']} / {ttfa['p95']} / {ttfa['p99']} ms"),
        ("request total p50/p95/p99", f"{total['p50']} / {total['p95']} / {total['p99']} ms"),
        ("audio produced", f"{result['audio_s']} s ({result['audio_s_per_s']} s of audio per s)"),
        ("server RSS before -> after", f"{rss['before']} -> {rss['after']} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"| {name:<{width}} | {value} |" for name, value in rows))
    for sample in result["error_samples"]:
        print(f"  error: {sample}")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the load, print and save the result."""
    parser = parser_for(__doc__)
    parser.add_argument("--addon", action="append", default=None, metavar="DIR[:BACKEND]",
                        help="addon(s) for the server started here (default: the bundled demo on cpu)")
    parser.add_argument("--url", help="load an already running server (default: start one here)")
    parser.add_argument("--model", help="model to request (default: the first one served)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to keep sending (default 30)")
    parser.add_argument("--max-requests", type=int, default=2000, help="stop after this many requests (default 2000)")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds one request may take")
    parser.add_argument("--format", choices=["pcm", "wav"], default="pcm", help="response_format requested")
    parser.add_argument("--text", action="append", help="text(s) to speak, cycled (default: three short prompts)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="server: syntheses at once per addon (default 2)")
    parser.add_argument("--max-queue", type=int, default=None, help="server: waiting requests (default: --clients)")
    add_output_flags(parser)
    parser.add_argument("-o", "--output", type=Path, default=None, help=argparse.SUPPRESS)  # deprecated: a file; use --out DIR
    args = parser.parse_args(argv)
    if args.output is not None:
        print("warning: -o/--output is deprecated and will be removed in the next release; use --out DIR", file=sys.stderr)
        args.output.parent.mkdir(parents=True, exist_ok=True)
    else:
        args.output = output_dir(parser, args) / "serve_load.json"
    args.addon = args.addon or [str(REPO / "addons" / "fastpitch-demo" / "addon") + ":cpu"]
    args.max_queue = args.clients if args.max_queue is None else args.max_queue

    with (server_process(args) if args.url is None else _given(args.url)) as url:
        model = args.model or httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
        rss_before = server_rss_bytes(url)
        tally, wall = asyncio.run(run_load(url, args, model))
        rss_after = server_rss_bytes(url)
    result = report(args, url, model, tally, wall, rss_before, rss_after)
    print_table(result)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if tally.ok else 1


@contextmanager
def _given(url: str) -> Iterator[str]:
    """A server that is already running: its URL, nothing to stop afterwards."""
    yield url.rstrip("/")


if __name__ == "__main__":
    sys.exit(main())
