"""Host overhead per step of the AutoregressiveDecoder block.

Usage: python benchmarks/ar_step_overhead.py [--addon DIR] [--backend cpu,onnx ...]
       [--steps 300] [--runs 5] [--threads 1] [--text TEXT] [--out DIR | --record]

The encoder runs once; then the block decodes exactly ``--steps`` steps (its
stop token disabled), and every call of its bound step (the runner called with
the memory bound, see ``ttsstack.runtime.network.bind_inputs``) is timed; then
the bare network (the TorchScript module or the ORT session) is run as many
times on the last step's inputs (a step costs the same whatever the values).
Per step:

- block overhead: the block's time minus the step calls' (state hand-over, the
  stop check, chunking, the generator);
- runner overhead: the step call's time minus the bare network's (tensor to
  numpy views, feeds, bucket dispatch, I/O binding);
- host overhead: both together.

Beside them, this host's limit for one step (``host_peak.py``): the step
network's weight bytes over the measured GEMV bandwidth (a step at batch 1
reads every weight once), and the block's time as a multiple of it
(``x limit``). Weights that fit in the CPU's caches (the tiny demo's) are
read faster than that, so there the limit is only a bound.

Any backend the addon is compiled for (a source addon is compiled into the
cache first) works: cpu, eager, onnx, onnx-static, neuron. Prints a table and
writes ``ar_step_overhead.json`` to ``--out`` (default ``benchmarks/out/``;
``--record``: ``benchmarks/results/``).
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path

import torch

import ttsstack
from ttsstack.addon import load_addon, parse_spec
from ttsstack.backends.base import ModuleRunner
from ttsstack.backends.onnx import OrtRunner, host_array
from ttsstack.backends.static import StaticRunner
from ttsstack.runtime import Voice
from ttsstack.runtime.blocks.autoregressive import AutoregressiveDecoder, DecoderCapWarning
from ttsstack.runtime.blocks.containers import StreamablePipeline
from ttsstack.runtime.registry import BACKENDS

from common import ListFlag, add_output_flags, add_timing_flags, output_dir, parser_for
from host_peak import host_description, measure_peaks, parameter_bytes

ROOT = Path(__file__).resolve().parent.parent


def forced(voice: Voice, steps: int) -> Voice:
    """The voice's networks with every AutoregressiveDecoder set to run exactly ``steps`` steps."""
    data = voice.spec.to_dict()

    def force(entry):
        if isinstance(entry, dict):
            if entry.get("type") == "AutoregressiveDecoder":
                entry.update(threshold=1.0, max_decoder_steps=steps)
            for value in entry.values():
                force(value)
        elif isinstance(entry, list):
            for value in entry:
                force(value)

    force(data["stack"])
    variants = BACKENDS.get(voice.backend).block_variants
    return Voice(parse_spec(data), voice.runners, variants, voice.options, voice.backend)


def bare_network(runner, inputs: dict[str, torch.Tensor]):
    """A call of the bare network under ``runner`` on ``inputs`` converted in advance, or None where unreachable.

    The TorchScript module (cpu, eager, neuron) or the ORT session (onnx backends), of the inputs' bucket on static ones.
    """
    if isinstance(runner, StaticRunner):
        runner = runner.artifact_for(inputs)
    if isinstance(runner, ModuleRunner):
        args = tuple(inputs[n] for n in runner.input_names)
        return lambda: runner.module(*args)
    if isinstance(runner, OrtRunner):
        feeds = {n: host_array(inputs[n]) for n in runner.spec.inputs}
        return lambda: runner.session.run(runner.output_names, feeds)
    return None


def measure(voice: Voice, text: str, steps: int) -> dict[str, float]:
    """One forced decode: seconds per step through the block (``block``), inside its step calls (``step``), and in
    the bare network (``bare``, None where the runner hides it)."""
    tree = [block for _, block in voice.tree()]
    pipeline = next(b for b in tree if isinstance(b, StreamablePipeline))
    block = next(b for b in tree if isinstance(b, AutoregressiveDecoder))
    tokens = next(voice.frontend.pieces(text, voice.max_tokens))
    step_times, last = [], {}
    bind = block.bind_step

    def timed_bind(prepared):
        step = bind(prepared)
        last.update(prepared)

        def timed(states):
            start = time.perf_counter()
            out = step(states)
            step_times.append(time.perf_counter() - start)
            last.update(states)  # only the latest: keeping every step's tensors would slow the steps down
            return out

        return timed

    block.bind_step = timed_bind
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DecoderCapWarning)
            env = {"tokens": tokens, **pipeline.sequence.run({"tokens": tokens})}
            start = time.perf_counter()
            frames = sum(chunk.shape[1] for chunk in block.stream(env, None))
            total = time.perf_counter() - start
    finally:
        del block.bind_step  # the class's method again, for the next measurement
    assert len(step_times) == steps and frames >= steps
    with torch.inference_mode():
        call = bare_network(block.runner, last)
        bare = None
        if call is not None:
            start = time.perf_counter()
            for _ in range(steps):
                call()
            bare = (time.perf_counter() - start) / steps
    return {"block": total / steps, "step": sum(step_times) / steps, "bare": bare}


def step_weight_bytes(folder: Path) -> int:
    """Bytes of the weights of the addon's decoder step network(s), from their exported programs."""
    addon = load_addon(folder)
    return sum(parameter_bytes(addon.load_program(name)) for name in addon.spec.networks_with_role("decoder_step"))


def run(addon: Path, backend: str, steps: int, repeats: int, text: str, peaks: dict) -> dict:
    """Medians over ``repeats`` forced decodes (after one warm-up) on one backend, in microseconds per step."""
    voice = forced(ttsstack.load(addon, backend=backend), steps)
    measure(voice, text, steps)  # warm-up: first calls of a TorchScript module optimise it
    runs = [measure(voice, text, steps) for _ in range(repeats)]

    def median_us(values) -> float | None:
        values = list(values)
        return None if None in values else statistics.median(values) * 1e6

    row = {
        "backend": backend,
        "steps": steps,
        "block_us": median_us(r["block"] for r in runs),
        "step_us": median_us(r["step"] for r in runs),
        "bare_us": median_us(r["bare"] for r in runs),
        "block_overhead_us": median_us(r["block"] - r["step"] for r in runs),
        "runner_overhead_us": median_us(r["step"] - r["bare"] if r["bare"] else None for r in runs),
        "host_overhead_us": median_us(r["block"] - r["bare"] if r["bare"] else None for r in runs),
    }
    row["host_overhead_pct"] = 100 * row["host_overhead_us"] / row["block_us"] if row["host_overhead_us"] else None
    row["weight_mb"] = step_weight_bytes(addon) / 1e6
    row["limit_us"] = row["weight_mb"] / peaks["gemv_gbps"] * 1e3  # MB / (GB/s) = ms
    row["x_limit"] = row["block_us"] / row["limit_us"]
    return row


COLUMNS = (  # row key, title, width; times in microseconds per step
    ("block_us", "block", 8), ("step_us", "step", 8), ("bare_us", "bare net", 8), ("block_overhead_us", "block ovh", 9),
    ("runner_overhead_us", "runner ovh", 10), ("host_overhead_us", "host ovh", 8), ("host_overhead_pct", "host %", 6),
    ("limit_us", "limit", 8), ("x_limit", "x limit", 8),
)


def table(rows: list[dict]) -> str:
    """The rows as text, times in microseconds per step ('-' where the bare network cannot be reached)."""
    lines = [f"{'backend':12s} {'steps':>5s} " + " ".join(title.rjust(width) for _, title, width in COLUMNS)]
    for r in rows:
        cells = (f"{r[key]:{width}.1f}" if r[key] is not None else "-".rjust(width) for key, _, width in COLUMNS)
        lines.append(f"{r['backend']:12s} {r['steps']:5d} " + " ".join(cells))
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, measure every backend, print the table, write the JSON."""
    parser = parser_for(__doc__)
    parser.add_argument("--addon", type=Path, default=ROOT / "addons" / "tacotron2-demo" / "addon",
                        help="source or compiled autoregressive addon (default: the bundled tacotron2-demo)")
    parser.add_argument("--backend", action=ListFlag, default=["cpu", "eager"], metavar="NAME",
                        help="backend to measure (repeatable or comma list)")
    parser.add_argument("--steps", type=int, default=300, help="decoder steps per run")
    add_timing_flags(parser, runs=5, each="backend")
    parser.add_argument("--text", default="The quick brown fox jumps over the lazy dog.", help="text to encode")
    add_output_flags(parser)
    args = parser.parse_args()
    out = output_dir(parser, args) / "ar_step_overhead.json"

    torch.set_num_threads(args.threads)
    peaks = measure_peaks(args.threads)
    rows = [run(args.addon, b, args.steps, args.runs, args.text, peaks) for b in args.backend]
    print(f"limit: the step's weights ({rows[0]['weight_mb']:.1f} MB) at this host's GEMV bandwidth "
          f"({peaks['gemv_gbps']:.1f} GB/s, {args.threads} thread(s))")
    print(table(rows))
    result = {
        "benchmark": "ar_step_overhead",
        "addon": str(args.addon.relative_to(ROOT) if args.addon.is_relative_to(ROOT) else args.addon),
        "text": args.text,
        "runs": args.runs,
        "threads": args.threads,
        "host": host_description(),
        "peaks": peaks,
        "rows": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
