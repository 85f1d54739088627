"""What batching across streams buys per call: full-size networks run at 1, 2, 4, 8 rows, timed against this host's limit.

Usage: python benchmarks/batching.py [--backend cpu,onnx] [--rows 1,2,4,8] [--frames 256] [--text-length 100]
       [--runs 30] [--threads 1] [--out DIR | --record]

``RuntimeOptions(batch=N)`` (``ttsstack serve --batch N``) runs the calls that
concurrent streams make to one ``batch: true`` network as one call of up to N
rows. Whether that pays depends on what bounds the call, so this measures the
two full-size networks of ``precision.py``, exported with a batch axis:

- ``tacotron2-step``: Tacotron 2's decoder step (18 M parameters, 73 MB of
  fp32 weights). One row is memory bound: the weights are read once per call
  whatever the rows, so its limit per row is the weights' bytes over the
  host's GEMV bandwidth divided by the rows (or the FLOPs over the sgemm peak,
  once that is larger).
- ``fastpitch-decoder``: a FastPitch-size convolutional decoder on
  ``--frames`` frames (256: one chunk of the runtime's schedule). Compute
  bound: its FLOPs grow with the rows, and so does its limit.

Each network is compiled by each backend (the same ``compile`` and ``load``
as ``ttsstack compile``), then called on one stream's inputs repeated to each
number of ``--rows``: the median and the fastest of ``--runs`` calls (fewer,
at least 3, past 10 s). ``ms/row`` is the fastest call over its rows,
``vs 1 row`` how many times less a row costs than alone, ``limit/row`` this
host's lower bound per row (``host_peak.py``; its peaks measured at the
run's start and end, the better kept) and ``x limit`` the ratio. Prints a
table and writes ``batching.json`` (with the host's description and peaks)
to ``--out`` (default ``benchmarks/out/``; ``--record``: ``benchmarks/results/``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from ttsstack.addon import batched
from ttsstack.backends.base import Artifact, NetworkArtifacts
from ttsstack.runtime.registry import BACKENDS

from common import ListFlag, add_output_flags, add_timing_flags, output_dir, parser_for
from host_peak import best_peaks, count_flops, host_description, limit_seconds, measure_peaks, parameter_bytes
from precision import Network, call_seconds, fastpitch_decoder, tacotron2_step


def load_runner(network: Network, backend_name: str, work: Path):
    """The network compiled and loaded by one backend, as ``ttsstack compile`` would (its first route)."""
    backend = BACKENDS.get(backend_name)()
    route = backend.routes(network.spec)[0]
    path = work / f"{network.name}.{backend_name}{backend.suffix_for(route)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        details = backend.compile(network.program, network.spec, network.dims, None, path, route) or {}
    return backend.load(NetworkArtifacts(network.name, network.spec, work / f"{network.name}.pt2", [Artifact(path, None, details)]))


def measure(network: Network, backend: str, rows: list[int], repeats: int, work: Path) -> list[dict]:
    """One row per batch size: the call's median and fastest time, and its FLOPs and bytes for the limit."""
    runner = load_runner(network, backend, work)
    weights = parameter_bytes(network.program)
    result = []
    for size in rows:
        inputs = batched(network.inputs, size)
        with torch.inference_mode():
            seconds, fastest = call_seconds(lambda: runner(inputs), repeats)
        flops = count_flops(network.program.module(), tuple(inputs.values()))
        result.append({"network": network.name, "backend": backend, "rows": size, "ms": seconds * 1e3,
                       "fastest_ms": fastest * 1e3, "gflops": flops / 1e9, "weight_mb": weights / 1e6})
        print(f"  {network.name} {backend} {size} rows: {fastest * 1e3:.2f} ms", flush=True)
    return result


def with_limits(rows: list[dict], peaks: dict[str, float]) -> None:
    """Add each row's per-row time, its gain over one row, and its limit per row."""
    alone = {(r["network"], r["backend"]): r["fastest_ms"] for r in rows if r["rows"] == 1}
    for r in rows:
        r["ms_per_row"] = r["fastest_ms"] / r["rows"]
        base = alone.get((r["network"], r["backend"]))
        r["vs_one_row"] = base / r["ms_per_row"] if base else None
        r["limit_ms_per_row"] = limit_seconds(r["gflops"] * 1e9, r["weight_mb"] * 1e6, peaks) * 1e3 / r["rows"]
        r["x_limit"] = r["ms_per_row"] / r["limit_ms_per_row"]


def table(rows: list[dict]) -> str:
    """The rows as text."""
    lines = [f"{'network':18s} {'backend':8s} {'rows':>4s} {'ms':>8s} {'best ms':>8s} {'ms/row':>8s} {'vs 1 row':>8s} "
             f"{'limit/row':>9s} {'x limit':>7s}"]
    for r in rows:
        gain = f"{r['vs_one_row']:.2f}x" if r["vs_one_row"] else "-"
        lines.append(f"{r['network']:18s} {r['backend']:8s} {r['rows']:4d} {r['ms']:8.2f} {r['fastest_ms']:8.2f} "
                     f"{r['ms_per_row']:8.2f} {gain:>8s} {r['limit_ms_per_row']:9.2f} {r['x_limit']:7.2f}")
    return "\n".join(lines)


def main() -> int:
    """Parse arguments, build the networks, time every backend and batch size, print, write the JSON."""
    parser = parser_for(__doc__)
    parser.add_argument("--backend", action=ListFlag, default=["cpu", "onnx"], metavar="NAME", help="backend to measure")
    parser.add_argument("--rows", action=ListFlag, default=["1", "2", "4", "8"], metavar="N", help="rows per call")
    parser.add_argument("--network", action=ListFlag, default=["tacotron2-step", "fastpitch-decoder"], metavar="NAME",
                        help="network to measure")
    parser.add_argument("--frames", type=int, default=256, help="frames of a decoder call (256: one chunk)")
    parser.add_argument("--text-length", type=int, default=100, help="tokens of the step network's memory")
    add_timing_flags(parser, runs=30, each="row")
    add_output_flags(parser)
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows]
    if not sizes or min(sizes) < 1:
        parser.error(f"--rows: positive integers, got {','.join(args.rows)}")
    out = output_dir(parser, args) / "batching.json"
    torch.set_num_threads(args.threads)
    first = measure_peaks.__wrapped__(args.threads)
    builders = {"tacotron2-step": lambda: tacotron2_step(args.text_length, batch=True),
                "fastpitch-decoder": lambda: fastpitch_decoder(args.frames, batch=True)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ttsstack-batching-") as work:
        for name in args.network:
            network = builders[name]()
            torch.export.save(network.program, Path(work) / f"{network.name}.pt2")
            for backend in args.backend:
                rows += measure(network, backend, sizes, args.runs, Path(work))
    peaks = best_peaks(first, measure_peaks.__wrapped__(args.threads))
    with_limits(rows, peaks)
    print(f"host: {host_description()['cpu']}, {args.threads} thread(s), best of the run's start and end: "
          f"sgemm {peaks['sgemm_gflops']:.1f} GFLOP/s, GEMV {peaks['gemv_gbps']:.1f} GB/s")
    print(table(rows))
    result = {"benchmark": "batching", "threads": args.threads, "frames": args.frames, "text_length": args.text_length,
              "runs": args.runs, "host": host_description(), "peaks": peaks, "rows": rows}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
