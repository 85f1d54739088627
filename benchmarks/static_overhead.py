"""Padding overhead of static shapes: padded steps on ``onnx-static`` against ``onnx``, and better buckets.

Usage: python benchmarks/static_overhead.py [--quick] [--addon DIR] [--out DIR | --record] [--max-buckets K] [--align N]

A static backend compiles one artifact per bucket of a network's sequence dim
and pads every piece to the smallest bucket that holds it; a piece longer than
the largest bucket runs on overlapping windows of that bucket (see
``ttsstack/backends/static_blocks.py``). For the fixed texts in
``benchmarks/texts/`` this benchmark:

1. streams each text on ``onnx-static`` with the addon's buckets and counts,
   per network call, the real steps (from the network's ``mask``/``lengths``
   input) and the bucket's steps, by wrapping each bucket's runner; the share
   of computed steps that were padding is reported per dim (tokens for
   ``T_text`` networks, frames for ``T_frames`` networks);
2. times the mel of each text on ``onnx`` (dynamic shapes) and ``onnx-static``
   (median of several runs after one warm-up; no vocoder, which is the same
   for both);
3. records every request the static blocks pad (one per sentence for the
   encoders; one per decoder window, whose length the chunk schedule sets:
   the first chunk plus ``context``, then later chunks plus ``2 * context``,
   then the sentence's remainder), replays them through a model of
   ``run_in_buckets`` (checked to reproduce the measured calls exactly), and
   searches bucket sets of up to ``--max-buckets`` sizes (multiples of
   ``--align``, the largest above twice the largest context) for the fewest
   computed steps: the largest bucket is enumerated, the others chosen by
   dynamic programming, which is exact for a given length distribution;
4. without ``--quick``, compiles ``onnx-static`` with the suggested buckets
   and measures it the same way, so the prediction is checked by a run.

The decoder's chunks are the ``RuntimeOptions`` chunk sizes, shrunk on static
backends so that each window fills a frame bucket when one is small enough
(``StaticDecoder.chunk_frames``). The search keeps the recorded requests as they
are: a suggested set that holds the steady window length (as the demo's do)
leaves the schedule unchanged, and step 4 checks the prediction by a run. Re-run after changing the chunk
sizes. Token requests are sentence lengths of these English texts.

Prints one table and the suggested ``ttsstack compile`` command line; writes
``static_overhead.json`` to ``--out`` (default ``benchmarks/out/``; ``--record``: ``benchmarks/results/``).
"""

from __future__ import annotations

import bisect
import json
import platform
import statistics
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

import ttsstack
from ttsstack.addon import NetworkSpec
from ttsstack.backends import static_blocks
from ttsstack.backends.static import StaticRunner
from ttsstack.compiler.driver import compile_addon
from ttsstack.compiler.manifest import MANIFEST_FILE
from ttsstack.runtime.network import sequence_dim, step_length

from common import add_output_flags, output_dir, parser_for

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent / "addons" / "fastpitch-demo" / "addon"
BACKENDS = ["onnx", "onnx-static"]


@dataclass
class Call:
    """One run of a bucket's artifact: ``valid`` real steps padded to ``bucket``."""

    network: str
    valid: int
    bucket: int


@dataclass
class Recording:
    """What a static Voice ran for one or more texts: the padded requests and the bucket calls."""

    requests: list[tuple[str, int]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)


class _CountingRunner:
    """A bucket's runner that appends each call's real and padded length to a list."""

    def __init__(self, inner, network: str, spec: NetworkSpec, bucket: int, calls: list[Call]):
        self.inner = inner
        self.network = network
        self.spec = spec
        self.bucket = bucket
        self.calls = calls

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.spec.mask is not None:
            valid = int(inputs[self.spec.mask].sum())
        elif self.spec.lengths is not None:
            valid = int(inputs[self.spec.lengths].reshape(-1)[0])
        else:
            valid = -1  # no input says which steps are real; filled in from the replayed requests
        self.calls.append(Call(self.network, valid, self.bucket))
        return self.inner(inputs)


@contextmanager
def recording(voice) -> Iterator[Recording]:
    """Record every padded request and bucket call of a static ``voice`` inside the block; restores on exit.

    Each bucket's runner (``StaticRunner.by_bucket``) is wrapped to count calls,
    and ``static_blocks.run_in_buckets`` to see the unpadded requests.
    """
    record, saved = Recording(), []
    for name, runner in voice.runners.items():
        if isinstance(runner, StaticRunner) and runner.dim is not None:
            for key, inner in runner.by_bucket.items():
                saved.append((runner.by_bucket, key, inner))
                runner.by_bucket[key] = _CountingRunner(inner, name, runner.spec, key[1], record.calls)
    original = static_blocks.run_in_buckets

    def run_in_buckets(runner, inputs, label):
        record.requests.append((runner.network, step_length(runner.spec, inputs)))
        return original(runner, inputs, label)

    static_blocks.run_in_buckets = run_in_buckets
    try:
        yield record
    finally:
        static_blocks.run_in_buckets = original
        for by_bucket, key, inner in saved:
            by_bucket[key] = inner


def bucket_calls(length: int, sizes: list[int], context: int, bounded: bool) -> list[tuple[int, int]] | None:
    """``(valid, bucket)`` of each run ``run_in_buckets`` makes for ``length`` steps with sorted ``sizes``.

    Mirrors ``static_blocks.run_in_buckets``: one padded run when the length
    fits the largest bucket, else windows of the largest bucket stepping by
    ``largest - 2 * context`` (as ``stream_windows`` cuts them). None when
    the network is unbounded and the length does not fit.
    """
    largest = sizes[-1]
    if length <= largest:
        return [(length, sizes[bisect.bisect_left(sizes, length)])]
    if not bounded:
        return None
    step, emitted, calls = largest - 2 * context, 0, []
    while emitted < length:
        count = step if length - emitted >= step + context else min(step, length - emitted)
        valid = min(length, emitted + count + context) - max(0, emitted - context)
        calls.append((valid, sizes[bisect.bisect_left(sizes, valid)]))
        emitted += count
    return calls


def replay(requests: list[tuple[str, int]], specs: dict[str, NetworkSpec], sizes: list[int]) -> list[Call] | None:
    """The calls the requests make with bucket ``sizes`` (None when one cannot run)."""
    calls = []
    for network, length in requests:
        spec = specs[network]
        made = bucket_calls(length, sizes, spec.context, spec.bounded)
        if made is None:
            return None
        calls.extend(Call(network, valid, bucket) for valid, bucket in made)
    return calls


def check_replay(record: Recording, specs: dict[str, NetworkSpec], buckets: dict[str, list[int]]) -> None:
    """Fill unknown real lengths from the model and fail loudly if the model disagrees with the measured calls."""
    for network, spec in specs.items():
        dim = sequence_dim(spec)
        measured = [c for c in record.calls if c.network == network]
        model = replay([r for r in record.requests if r[0] == network], specs, buckets[dim])
        if model is None or [c.bucket for c in model] != [c.bucket for c in measured] or any(
            m.valid not in (-1, c.valid) for m, c in zip(measured, model)
        ):
            raise RuntimeError(
                f"network '{network}': the bucket model in this benchmark no longer matches "
                f"ttsstack.backends.static_blocks.run_in_buckets; update bucket_calls()"
            )
        for m, c in zip(measured, model):
            m.valid = c.valid


def padding(calls: list[Call]) -> dict[str, float | int]:
    """Real and computed steps of the calls, and the share of computed steps that were padding."""
    valid = sum(c.valid for c in calls)
    computed = sum(c.bucket for c in calls)
    return {"calls": len(calls), "valid_steps": valid, "computed_steps": computed,
            "padding_share": 1 - valid / computed if computed else 0.0}


def _round_up(n: int, align: int) -> int:
    return -(-n // align) * align


def best_smaller(lengths: Counter, candidates: list[int], extra: int) -> tuple[int, list[int]]:
    """The largest of ``candidates`` and up to ``extra`` others minimising the steps of ``lengths`` padded to them.

    Every length must fit the largest candidate. Dynamic programming over the
    sorted candidates: the cost of a set is the sum of each length's smallest
    fitting size, so a set's cost splits into groups between consecutive sizes.
    """
    cands = sorted(candidates)
    m = len(cands)
    fits = [sum(n for length, n in lengths.items() if length <= c) for c in cands]  # lengths <= cands[i]
    # cost[j][i]: fewest steps for the lengths <= cands[i] with j + 1 sizes, the largest being cands[i]
    cost = [[c * fits[i] for i, c in enumerate(cands)]]
    back = [[-1] * m]
    for _ in range(extra):
        row, links = [], []
        for i in range(m):
            options = [(cost[-1][p] + cands[i] * (fits[i] - fits[p]), p) for p in range(i)]
            best = min(options, default=(cost[-1][i], -1))
            row.append(best[0])
            links.append(best[1])
        cost.append(row)
        back.append(links)
    j = min(range(extra + 1), key=lambda level: cost[level][m - 1])
    steps, chosen, i = cost[j][m - 1], [], m - 1
    while i >= 0:
        chosen.append(cands[i])
        i, j = back[j][i], j - 1
    return steps, sorted(chosen)


def suggest(requests: list[tuple[str, int]], specs: dict[str, NetworkSpec], dim_max: int, k: int, align: int) -> dict | None:
    """The bucket set of at most ``k`` sizes with the fewest computed steps for ``requests`` (None if none fits).

    The largest size is enumerated over multiples of ``align`` above twice the
    largest bounded context (and holding every request of an unbounded
    network), up to the longest request rounded up (or the dim's max); for each, the requests
    are cut as ``run_in_buckets`` would and the smaller sizes chosen by
    :func:`best_smaller` among the resulting lengths rounded up to ``align``.
    """
    if not requests:
        return None
    nets = {n for n, _ in requests}
    floor = max([2 * specs[n].context + 1 for n in nets if specs[n].bounded]
                + [length for n, length in requests if not specs[n].bounded] + [1])
    top = min(_round_up(max(length for _, length in requests), align), dim_max)
    best = None
    for largest in sorted(set(range(_round_up(floor, align), top + 1, align)) | ({top} if top >= floor else set())):
        calls = replay(requests, specs, [largest])
        if calls is None:
            continue
        lengths = Counter(c.valid for c in calls)
        cands = sorted({min(_round_up(v, align), largest) for v in lengths} | {largest})
        steps, sizes = best_smaller(lengths, cands, k - 1)
        if best is None or steps < best[0]:
            best = (steps, sizes)
    if best is None:
        return None
    return {"buckets": best[1], **padding(replay(requests, specs, best[1]))}


def mel_time(voice, text: str, runs: int) -> float:
    """Median seconds to the whole mel of ``text`` over ``runs`` runs after one warm-up."""
    voice.synthesize(text)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        voice.synthesize(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dims_of(specs: dict[str, NetworkSpec]) -> dict[str, list[str]]:
    """Sequence dim -> the networks padded along it."""
    out: dict[str, list[str]] = {}
    for name, spec in specs.items():
        dim = sequence_dim(spec)
        if dim is not None:
            out.setdefault(dim, []).append(name)
    return out


def measure_static(compiled: Path, texts: list[tuple[str, str]], runs: int, system: str) -> tuple[list[dict], Recording]:
    """Padding per dim and mel time of every text on one compiled ``onnx-static``; all requests recorded."""
    voice = ttsstack.load(compiled, "onnx-static", compile_if_needed=False)
    specs = voice.spec.networks
    buckets = {r.dim: r.static_lengths[r.dim] for r in voice.runners.values() if r.dim is not None}
    by_dim = dims_of(specs)
    rows, everything = [], Recording()
    for label, text in texts:
        with recording(voice) as record:
            voice.synthesize(text)
        check_replay(record, specs, buckets)
        everything.requests += record.requests
        everything.calls += record.calls
        row = {"text": label, "chars": len(text), "system": system, "mel_s": mel_time(voice, text, runs)}
        for dim, nets in by_dim.items():
            row[dim] = padding([c for c in record.calls if c.network in nets])
        rows.append(row)
    return rows, everything


def compiled_addon(source: Path, out: Path, name: str, buckets: dict[str, list[int]] | None = None) -> Path:
    """``source`` itself when compiled, else its onnx and onnx-static compile under ``out`` (cached)."""
    if (source / MANIFEST_FILE).is_file() and buckets is None:
        return source
    target = out / "compiled" / name
    compile_addon(source, target, BACKENDS, buckets, progress=False)
    return target


def print_table(rows: list[dict], dims: list[str]) -> None:
    """The per-text results as aligned text."""
    head = f"{'text':14s} {'chars':>5s} {'system':22s} " + " ".join(f"{d + ' pad':>12s} {'calls':>5s}" for d in dims)
    head += f" {'mel ms':>8s} {'x onnx':>7s}"
    print(head)
    print("-" * len(head))
    onnx = {r["text"]: r["mel_s"] for r in rows if r["system"] == "onnx"}
    for r in rows:
        cells = " ".join(
            f"{r[d]['padding_share'] * 100:11.1f}% {r[d]['calls']:5d}" if d in r else f"{'-':>12s} {'-':>5s}" for d in dims
        )
        print(f"{r['text']:14s} {r['chars']:5d} {r['system']:22s} {cells} {r['mel_s'] * 1e3:8.1f} {r['mel_s'] / onnx[r['text']]:7.2f}")


def main() -> None:
    """Parse arguments, compile, measure padding and time, search bucket sets, report."""
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true", help="two shortest texts, one timed run, no verification compile")
    parser.add_argument("--addon", type=Path, default=DEMO, help="source or compiled addon (with onnx and onnx-static)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per text (median)")
    parser.add_argument("--max-buckets", type=int, default=4, help="largest bucket-set size to search")
    parser.add_argument("--align", type=int, default=8, help="suggested sizes are multiples of this")
    add_output_flags(parser)
    args = parser.parse_args()
    args.out = output_dir(parser, args)
    if args.max_buckets < 1 or args.align < 1:
        parser.error("--max-buckets and --align must be >= 1")
    torch.set_num_threads(1)

    paths = sorted((HERE / "texts").glob("chars_*.txt"))
    if args.quick:
        paths, args.runs = paths[:2], 1
    texts = [(p.stem, p.read_text().strip()) for p in paths]
    source = args.addon.resolve()
    compiled = compiled_addon(source, args.out, source.parent.name)

    dynamic = ttsstack.load(compiled, "onnx", compile_if_needed=False)
    rows = [{"text": label, "chars": len(text), "system": "onnx", "mel_s": mel_time(dynamic, text, args.runs)}
            for label, text in texts]
    static_rows, record = measure_static(compiled, texts, args.runs, "onnx-static")
    rows += static_rows

    specs = dynamic.spec.networks
    by_dim = dims_of(specs)
    current = {dim: dynamic.spec.dims[dim].buckets for dim in by_dim}
    suggestions: dict[str, list[dict]] = {}
    for dim, nets in by_dim.items():
        requests = [r for r in record.requests if r[0] in nets]
        suggestions[dim] = [
            {"k": k, **found} for k in range(1, args.max_buckets + 1)
            if (found := suggest(requests, specs, dynamic.spec.dims[dim].max, k, args.align)) is not None
        ]
    # recommend per dim the fewest buckets within 2% of the best set's computed steps
    recommended = {}
    for dim, options in suggestions.items():
        if options:
            best = min(o["computed_steps"] for o in options)
            recommended[dim] = next(o for o in options if o["computed_steps"] <= 1.02 * best)["buckets"]
    flags = " ".join(f"--buckets {dim}={','.join(map(str, sizes))}" for dim, sizes in recommended.items())
    shown = source.relative_to(Path.cwd()) if source.is_relative_to(Path.cwd()) else source
    command = f"ttsstack compile {shown} -o COMPILED --backend onnx-static {flags}"

    if not args.quick and recommended and source.joinpath("addon.yaml").is_file() and not (source / MANIFEST_FILE).is_file():
        tuned = compiled_addon(source, args.out, source.parent.name + "-suggested", recommended)
        rows += measure_static(tuned, texts, args.runs, "onnx-static suggested")[0]

    dims = list(by_dim)
    print_table(rows, dims)
    print("\nall texts on onnx-static, current buckets:")
    for dim, nets in by_dim.items():
        now = padding([c for c in record.calls if c.network in nets])
        print(f"  {dim} {current[dim]}: {now['padding_share'] * 100:.1f}% padding, {now['computed_steps']} steps computed")
        for o in suggestions[dim]:
            print(f"    k={o['k']} {o['buckets']}: {o['padding_share'] * 100:.1f}% padding, {o['computed_steps']} steps "
                  f"({o['computed_steps'] / now['computed_steps']:.2f}x), {o['calls']} calls")
    print(f"suggested (fewest buckets within 2% of the best):\n  {command}")

    report = {
        "host": {"machine": platform.machine(), "processor": platform.processor(), "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "device": "cpu"},
        "addon": str(args.addon),
        "runs": args.runs,
        "quick": args.quick,
        "rows": rows,
        "current_buckets": current,
        "current": {dim: padding([c for c in record.calls if c.network in nets]) for dim, nets in by_dim.items()},
        "request_lengths": {net: dict(sorted(Counter(n for name, n in record.requests if name == net).items()))
                            for net in specs if any(name == net for name, _ in record.requests)},
        "dim_max": {dim: dynamic.spec.dims[dim].max for dim in by_dim},
        "suggestions": suggestions,
        "recommended": recommended,
        "command": command,
    }
    (args.out / "static_overhead.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out / 'static_overhead.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
