"""Host overhead per step of the AutoregressiveDecoder block.

Usage: python benchmarks/ar_step_overhead.py [--addon DIR] [--backend cpu --backend eager]
       [--steps 300] [--repeats 5] [--threads 1] [--text TEXT]

The encoder runs once; then the block decodes exactly ``--steps`` steps (its
stop token disabled), and every network call inside it is timed. The host
overhead per step is the block's time per step minus the network's: state
hand-over, the stop check, chunking and the generator. Prints a table and
writes ``benchmarks/results/ar_step_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

import ttsstack
from ttsstack.addon import parse_spec
from ttsstack.runtime import Voice
from ttsstack.runtime.blocks.autoregressive import AutoregressiveDecoder, DecoderCapWarning
from ttsstack.runtime.blocks.containers import StreamablePipeline

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ar_step_overhead.json"


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
    return Voice(parse_spec(data), voice.runners, backend=voice.backend)


def measure(voice: Voice, text: str, steps: int) -> dict[str, float]:
    """One forced decode: seconds per step through the block and inside the network calls."""
    tree = [block for _, block in voice.tree()]
    pipeline = next(b for b in tree if isinstance(b, StreamablePipeline))
    block = next(b for b in tree if isinstance(b, AutoregressiveDecoder))
    tokens = next(voice.frontend.pieces(text, voice.max_tokens))
    network = []
    call = block.runner

    def timed(inputs):
        start = time.perf_counter()
        out = call(inputs)
        network.append(time.perf_counter() - start)
        return out

    block.runner = timed
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DecoderCapWarning)
        env = {"tokens": tokens, **pipeline.sequence.run({"tokens": tokens})}
        start = time.perf_counter()
        frames = sum(chunk.shape[1] for chunk in block.stream(env, None))
        total = time.perf_counter() - start
    assert len(network) == steps and frames >= steps
    return {"block": total / steps, "network": sum(network) / steps}


def run(addon: Path, backend: str, steps: int, repeats: int, text: str) -> dict:
    """Median over ``repeats`` forced decodes (after one warm-up) on one backend."""
    voice = forced(ttsstack.load(addon, backend=backend), steps)
    measure(voice, text, steps)  # warm-up: first calls of a TorchScript module optimise it
    runs = [measure(voice, text, steps) for _ in range(repeats)]
    block = statistics.median(r["block"] for r in runs)
    network = statistics.median(r["network"] for r in runs)
    overheads = sorted(r["block"] - r["network"] for r in runs)
    return {
        "backend": backend,
        "steps": steps,
        "block_us": block * 1e6,
        "network_us": network * 1e6,
        "overhead_us": statistics.median(overheads) * 1e6,
        "overhead_min_us": overheads[0] * 1e6,
        "overhead_pct": 100 * statistics.median(overheads) / block,
    }


def main() -> None:
    """Parse arguments, measure every backend, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addon", type=Path, default=ROOT / "addons" / "tacotron2-demo" / "addon")
    parser.add_argument("--backend", action="append", default=None, help="repeatable (default: cpu and eager)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--text", default="The quick brown fox jumps over the lazy dog.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rows = [run(args.addon, b, args.steps, args.repeats, args.text) for b in args.backend or ["cpu", "eager"]]
    print(f"{'backend':8s} {'steps':>5s} {'block us/step':>14s} {'network us/step':>16s} "
          f"{'overhead us/step':>17s} {'(min)':>7s} {'overhead %':>11s}")
    for r in rows:
        print(f"{r['backend']:8s} {r['steps']:5d} {r['block_us']:14.1f} {r['network_us']:16.1f} "
              f"{r['overhead_us']:17.1f} {r['overhead_min_us']:7.1f} {r['overhead_pct']:10.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "ar_step_overhead",
        "addon": str(args.addon.relative_to(ROOT) if args.addon.is_relative_to(ROOT) else args.addon),
        "text": args.text,
        "repeats": args.repeats,
        "threads": args.threads,
        "host": {"machine": platform.machine(), "python": sys.version.split()[0], "torch": torch.__version__,
                 "cpus": os.cpu_count()},
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
