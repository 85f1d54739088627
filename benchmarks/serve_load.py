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

Batching across streams on and off (``serve --batch``): ``--sweep`` runs the
load at each client count on one server per ``--batch`` value and reports, per
value, the most clients whose first-audio p95 stays under ``--p95-target-ms``
(default: ``--p95-factor`` times the p95 of the sweep's first point on the first
``--batch`` value, one client alone with batching off), with the seconds of
audio per second there; it writes ``serve_load_sweep_<model>[_<tag>].json``.

    python benchmarks/serve_load.py --addon compiled/fastpitch:cpu --batch 1,8 --sweep 1,2,4,8,16 --duration 20
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from common import ListFlag, add_output_flags, output_dir, parser_for
from host_peak import host_description

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
def server_process(args: argparse.Namespace, batch: int = 1) -> Iterator[str]:
    """Run ``ttsstack serve [--batch N]`` on a free loopback port; yield its URL once it is ready; stop it afterwards."""
    cmd = [sys.executable, "-m", "ttsstack.cli", "serve", "--host", "127.0.0.1", "--port", "0",
           "--log-level", "warning", "--max-queue", str(args.max_queue), "--batch", str(batch)]
    if args.max_concurrent is not None:
        cmd += ["--max-concurrent", str(args.max_concurrent)]
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
                wait_until_ready(match.group(1))
                yield match.group(1)
                return
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def wait_until_ready(url: str, timeout_s: float = 600.0) -> None:
    """Wait for ``/readyz`` (every addon warmed up), so that warmup is not measured as load."""
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{url}/readyz", timeout=30).status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} not ready after {timeout_s:g} s")
        time.sleep(0.2)


def batched_calls(url: str) -> dict[str, dict[str, float]]:
    """The server's calls per ``batch: true`` network and batch size so far (its ``/metrics``), warmup included."""
    calls: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "ttsstack_batched_calls_total":
                calls.setdefault(sample.labels["network"], {})[sample.labels["size"]] = sample.value
    return calls


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


async def run_load(url: str, args: argparse.Namespace, model: str, clients: int | None = None,
                   duration: float | None = None) -> tuple[Tally, float]:
    """Run ``clients`` clients (default ``--clients``) for ``duration`` s (default ``--duration``); return the tally and the wall time."""
    tally = Tally()
    clients = clients or args.clients
    texts = args.text or DEFAULT_TEXTS
    body = {"model": model, "response_format": args.format, "voice": "default"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    start = time.perf_counter()
    stop = {"deadline": start + (duration or args.duration), "budget": args.max_requests}
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as http:
        await asyncio.gather(*(client(http, url, body, texts, stop, tally) for _ in range(clients)))
    return tally, time.perf_counter() - start


def percentiles_ms(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds (None without samples)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p = np.percentile(np.array(values) * 1000, [50, 95, 99])
    return {"p50": round(float(p[0]), 1), "p95": round(float(p[1]), 1), "p99": round(float(p[2]), 1)}


def host() -> dict:
    """The host the numbers come from (CPU model, vector ISA, versions), with its load average when the run started
    (the host may be shared)."""
    return {**host_description(), "platform": platform.platform(),
            "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]}


def measured(tally: Tally, wall: float) -> dict:
    """What one load run measured: requests, first audio and request time percentiles, audio per second."""
    return {
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
    }


def mib(size: float | None) -> float | None:
    """Bytes as MiB, one decimal (None stays None)."""
    return None if size is None else round(size / 2**20, 1)


def report(args: argparse.Namespace, url: str, model: str, tally: Tally, wall: float,
           rss_before: float | None, rss_after: float | None) -> dict:
    """The result of one load run as a dict (what is written as JSON)."""
    return {
        "config": {"url": url, "model": model, "addons": args.addon, "clients": args.clients,
                   "duration_s": args.duration, "max_requests": args.max_requests, "format": args.format,
                   "max_concurrent": args.max_concurrent, "max_queue": args.max_queue, "batch": args.batch[0]},
        "host": host(),
        **measured(tally, wall),
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


def sweep(args: argparse.Namespace, model_of) -> dict:
    """One server per ``--batch`` value, all up at once, loaded in turn at each ``--sweep`` client count (the
    settings interleaved, so that a shared host's changing load falls on all of them alike); the streams each holds."""
    load_before = host()["load_average_1_5_15"]
    with ExitStack() as servers:
        urls = [servers.enter_context(server_process(args, batch) if args.url is None else _given(args.url))
                for batch in args.batch]
        model = model_of(urls[0])
        settings = [{"batch": batch, "points": []} for batch in args.batch]
        for url in urls:
            asyncio.run(run_load(url, args, model, clients=1, duration=args.warmup))  # first calls, not measured
        for clients in args.sweep:
            for setting, url in zip(settings, urls):
                tally, wall = asyncio.run(run_load(url, args, model, clients=clients))
                point = {"clients": clients, "load_average_1": round(os.getloadavg()[0], 2), **measured(tally, wall)}
                setting["points"].append(point)
                print(f"  batch {setting['batch']}, {clients} clients: first audio p95 "
                      f"{point['time_to_first_audio_ms']['p95']} ms, {point['audio_s_per_s']} s of audio/s", file=sys.stderr)
        for setting, url in zip(settings, urls):
            setting["batched_calls"] = batched_calls(url)
    first = settings[0]["points"][0]["time_to_first_audio_ms"]["p95"]
    target = args.p95_target_ms or (first * args.p95_factor if first is not None else None)
    for setting in settings:
        held = [p for p in setting["points"] if p["errors"] == 0 and p["time_to_first_audio_ms"]["p95"] is not None
                and target is not None and p["time_to_first_audio_ms"]["p95"] <= target]
        best = max(held, key=lambda p: p["clients"], default=None)
        setting["streams_held"] = best["clients"] if best else 0
        setting["audio_s_per_s_held"] = best["audio_s_per_s"] if best else None
        setting["audio_s_per_s_max"] = max((p["audio_s_per_s"] or 0 for p in setting["points"]), default=None)
    off, on = settings[0]["streams_held"], settings[-1]["streams_held"]
    return {
        "config": {"model": model, "addons": args.addon, "sweep": args.sweep, "batch": args.batch,
                   "duration_s": args.duration, "warmup_s": args.warmup, "format": args.format,
                   "max_concurrent": args.max_concurrent, "max_queue": args.max_queue, "texts": args.text or DEFAULT_TEXTS},
        "host": {**host(), "load_average_before": load_before},
        "p95_target_ms": None if target is None else round(target, 1),
        "p95_target": ("given" if args.p95_target_ms else
                       f"{args.p95_factor:g} x the first-audio p95 of {args.sweep[0]} client(s) with --batch {args.batch[0]}"),
        "settings": settings,
        "streams_held_ratio": round(on / off, 2) if off else None,
    }


def print_sweep(result: dict) -> None:
    """One row per batch setting and client count, then the streams each setting holds under the target."""
    print(f"first-audio p95 target: {result['p95_target_ms']} ms ({result['p95_target']})")
    print("| batch | clients | first audio p50 / p95 ms | s of audio per s | errors |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for setting in result["settings"]:
        for p in setting["points"]:
            ttfa = p["time_to_first_audio_ms"]
            print(f"| {setting['batch']} | {p['clients']} | {ttfa['p50']} / {ttfa['p95']} | {p['audio_s_per_s']} | {p['errors']} |")
    for setting in result["settings"]:
        print(f"--batch {setting['batch']}: {setting['streams_held']} streams held under the target "
              f"({setting['audio_s_per_s_held']} s of audio per s there; at most {setting['audio_s_per_s_max']})")
    print(f"streams held, last --batch value over the first: {result['streams_held_ratio']}x")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the load (or the sweep), print and save the result."""
    parser = parser_for(__doc__)
    parser.add_argument("--addon", action="append", default=None, metavar="DIR[:BACKEND]",
                        help="addon(s) for the server started here (default: the bundled demo on cpu)")
    parser.add_argument("--url", help="load an already running server (default: start one here)")
    parser.add_argument("--model", help="model to request (default: the first one served)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to keep sending, per sweep point (default 30)")
    parser.add_argument("--max-requests", type=int, default=2000, help="stop after this many requests (default 2000)")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds one request may take")
    parser.add_argument("--format", choices=["pcm", "wav"], default="pcm", help="response_format requested")
    parser.add_argument("--text", action="append", help="text(s) to speak, cycled (default: three short prompts)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="server: syntheses at once per addon (default: the server's, 2 or --batch's N when larger)")
    parser.add_argument("--max-queue", type=int, default=None, help="server: waiting requests (default: the most clients)")
    parser.add_argument("--batch", action=ListFlag, default=["1"], metavar="N",
                        help="server: serve --batch N, streams per batched call (1: off); with --sweep, one server "
                             "per value (e.g. 1,8: off and on); without, the first value")
    parser.add_argument("--sweep", action=ListFlag, default=[], metavar="CLIENTS",
                        help="client counts to load each server with in turn, e.g. 1,2,4,8,16 (default: none, "
                             "one run at --clients)")
    parser.add_argument("--p95-target-ms", type=float, default=None,
                        help="first-audio p95 a sweep point must stay under to count as held (default: --p95-factor "
                             "times the first point's p95)")
    parser.add_argument("--p95-factor", type=float, default=2.0, help="see --p95-target-ms")
    parser.add_argument("--tag", default=None,
                        help="suffix of a sweep's file name, serve_load_sweep_<model>_<tag>.json (default: none)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of one client before a sweep, not measured")
    add_output_flags(parser)
    parser.add_argument("-o", "--output", type=Path, default=None, help=argparse.SUPPRESS)  # deprecated: a file; use --out DIR
    args = parser.parse_args(argv)
    try:
        args.batch = [int(b) for b in args.batch]
        args.sweep = [int(c) for c in args.sweep]
    except ValueError as exc:
        parser.error(f"--batch and --sweep take integers: {exc}")
    if min(args.batch + args.sweep, default=1) < 1:
        parser.error("--batch and --sweep values must be >= 1")
    if args.url and len(args.batch) > 1:
        parser.error("--url loads one server, already running: give at most one --batch value (the server's)")
    folder = output_dir(parser, args) if args.output is None else None
    if args.output is not None:
        print("warning: -o/--output is deprecated and will be removed in the next release; use --out DIR", file=sys.stderr)
        args.output.parent.mkdir(parents=True, exist_ok=True)
    args.addon = args.addon or [str(REPO / "addons" / "fastpitch-demo" / "addon") + ":cpu"]
    most = max(args.sweep or [args.clients])
    args.max_queue = most if args.max_queue is None else args.max_queue

    def model_of(url: str) -> str:
        return args.model or httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]

    if args.sweep:
        result = sweep(args, model_of)
        print_sweep(result)
        tag = f"_{args.tag}" if args.tag else ""
        output = args.output or folder / f"serve_load_sweep_{result['config']['model']}{tag}.json"
        output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {output}")
        return 0 if all(p["requests_ok"] for s in result["settings"] for p in s["points"]) else 1
    with (server_process(args, args.batch[0]) if args.url is None else _given(args.url)) as url:
        model = model_of(url)
        rss_before = server_rss_bytes(url)
        tally, wall = asyncio.run(run_load(url, args, model))
        rss_after = server_rss_bytes(url)
    result = report(args, url, model, tally, wall, rss_before, rss_after)
    print_table(result)
    output = args.output or folder / "serve_load.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return 0 if tally.ok else 1


@contextmanager
def _given(url: str) -> Iterator[str]:
    """A server that is already running: its URL, nothing to stop afterwards."""
    yield url.rstrip("/")


if __name__ == "__main__":
    sys.exit(main())
