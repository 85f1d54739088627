"""The cpu backend's two routes side by side: TorchScript trace and AOTInductor, per network.

Usage: python benchmarks/cpu_routes.py [--addon DIR ...] [--network NAME ...] [--length N ...] [--runs N] [--out DIR] [--record]

For every network of each addon (default: both bundled demos), compiles the
network by each route of the ``cpu`` backend, validates it as ``ttsstack
compile`` does, and times one call at each length (named dims set to it) on
one thread: the median of ``--runs`` calls after two warm-up calls. A route
whose artifact fails validation (a trace that baked a length in) shows why
instead of a time. Also reports each route's compile seconds. Prints a table
and writes ``cpu_routes.json`` to ``--out`` (``benchmarks/out/`` by default;
``--record`` writes ``benchmarks/results/``, the committed numbers).
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ttsstack.addon import load_addon
from ttsstack.backends.base import Artifact, ModuleRunner, NetworkArtifacts, example_inputs
from ttsstack.backends.cpu import AOTINDUCTOR, TORCHSCRIPT, CpuBackend, host_isa
from ttsstack.compiler.validate import validate_runner
from ttsstack.tolerances import for_backend

from common import ListFlag, add_output_flags, output_dir, parser_for

HERE = Path(__file__).resolve().parent
ADDONS = [HERE.parent / "addons" / "fastpitch-demo" / "addon", HERE.parent / "addons" / "tacotron2-demo" / "addon"]


def time_call(runner, inputs: dict[str, torch.Tensor], runs: int) -> float:
    """Median seconds of one call of ``runner`` on ``inputs`` after two warm-up calls."""
    times = []
    with torch.inference_mode():
        for i in range(runs + 2):
            start = time.perf_counter()
            runner(inputs)
            if i >= 2:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_network(addon, name: str, lengths: list[int], runs: int, work: Path) -> list[dict]:
    """One row per route of one network: compile seconds, validation, and the time per call at each length."""
    spec, dims = addon.spec.networks[name], addon.spec.dims
    program = addon.load_program(name)
    reference = ModuleRunner(spec, program.module())
    backend, rows = CpuBackend(), []
    for route in (TORCHSCRIPT, AOTINDUCTOR):
        path = work / f"{name}{backend.suffix_for(route)}"
        row = {"network": name, "route": route}
        start = time.perf_counter()
        try:
            details = backend.compile(program, spec, dims, None, path, route)
            row["compile_s"] = time.perf_counter() - start
            runner = backend.load(NetworkArtifacts(name, spec, path, [Artifact(path, None, details)]))
            validate_runner(name, "cpu", reference, runner, dims, None, for_backend("cpu", routes=[route]))
        except Exception as exc:  # noqa: BLE001 - a failed route is a result here
            lines = [line for line in str(exc).splitlines() if line.strip()]
            row["failed"] = f"{type(exc).__name__}: {lines[-1].strip()[:120] if lines else ''}"
            rows.append(row)
            continue
        named = {d for t in spec.inputs.values() for _, d in t.named_dims}
        for length in lengths:
            sizes = {d: min(length, dims[d].max) for d in named}
            row[f"ms_at_{length}"] = 1000 * time_call(runner, example_inputs(spec, sizes), runs)
        rows.append(row)
    return rows


def main() -> None:
    """Compile and time every network by both routes; print a table, write JSON."""
    parser = parser_for(__doc__)
    parser.add_argument("--addon", action="append", type=Path, default=None,
                        help="source addon to measure (repeatable; default: both bundled demos)")
    parser.add_argument("--network", action=ListFlag, default=None,
                        help="only these networks (repeatable or comma list; default: every network of each addon)")
    parser.add_argument("--length", action=ListFlag, default=["64", "272"],
                        help="length of the named dims per call (repeatable or comma list)")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per cell")
    add_output_flags(parser)
    args = parser.parse_args()
    out = output_dir(parser, args)
    try:
        lengths = [int(n) for n in args.length]
    except ValueError:
        parser.error(f"--length: expected whole numbers, got {args.length}")
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for folder in args.addon or ADDONS:
            addon = load_addon(folder)
            for name in args.network or addon.spec.networks:
                if name not in addon.spec.networks:
                    parser.error(f"--network {name}: not a network of {folder} (it has {', '.join(addon.spec.networks)})")
                for row in bench_network(addon, name, lengths, args.runs, Path(work)):
                    rows.append({"addon": addon.spec.name, **row})
    cells = "".join(f" {f'ms @ {n}':>10s}" for n in lengths)
    print(f"{'addon':16s} {'network':18s} {'route':12s} {'compile s':>9s}{cells}")
    for r in rows:
        timing = "".join(f" {r[f'ms_at_{n}']:10.2f}" for n in lengths) if "failed" not in r else f"  {r['failed']}"
        print(f"{r['addon']:16s} {r['network']:18s} {r['route']:12s} {r.get('compile_s', float('nan')):9.1f}{timing}")
    host = {"machine": platform.machine(), "processor": platform.processor(), "torch": torch.__version__, "threads": 1, **host_isa()}
    (out / "cpu_routes.json").write_text(json.dumps({"host": host, "runs": args.runs, "rows": rows}, indent=2))
    print(f"\nwrote {out / 'cpu_routes.json'}")


if __name__ == "__main__":
    main()
