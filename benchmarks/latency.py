"""First-chunk latency, total time, RTF and peak memory: ttsstack vs whole-utterance runs.

Usage: python benchmarks/latency.py [--quick] [--backend cpu,onnx,...] [--addon DIR ...] [--text NAME,...] [--runs N] [--first-runs N] [--inline]
       [--windows]
       [--out DIR | --record]

For every bundled addon and the fixed texts in ``benchmarks/texts/`` (about 50,
200, 1,000 and 4,000 characters), side by side in one run:

- ``naive-eager``: the exported programs in eager PyTorch, each network called
  once on the whole utterance (sentences packed up to what the networks
  accept), then the vocoder on the whole mel: what a team does without a
  framework. Its first audio is its total time.
- ``whole-onnx``: the same whole-utterance calls in plain ONNX Runtime on the
  ONNX artifacts.
- ``ttsstack-<backend>``: streaming, sentence by sentence, chunk by chunk, the
  mel a chunk ahead of the vocoder in its own thread; ``--inline`` adds
  ``ttsstack-<backend>-inline``, both in one thread; ``--windows`` adds
  ``ttsstack-<backend>-windows``, a vocoder that has a stateful twin on
  overlapping windows instead.

Each cell is the median of several runs, after a warm-up run per system. That
warm-up is the first call after ``ttsstack.load`` (which warms the stack up
itself); its first-audio time is reported as ``first_call_first_audio_s``, the
number a process's first request waits for. Runs are
interleaved: every system runs once, then every system again, so a host that slows
down or speeds up mid-benchmark moves all systems alike instead of whichever ran then.
Times to the first chunks of streaming systems also count ``--first-runs`` extra
starts that stop at the first audio chunk, as a few milliseconds on a shared host
need many samples. The fastest total of each cell is kept too: on a shared host noise only ever adds
time, so the fastest run is the closest to what the code itself costs, and the
total-time target is reported on both.
Peak memory is what one run adds to the resident set: the process's peak (Linux
``VmHWM``, reset before each run through ``/proc/self/clear_refs``) minus the
resident set before it, so loaded models (every system's stay loaded) do not count.
RTF is compute time / audio time (lower is better); ``speed_multiple`` is its inverse.
Beside each total, this host's compute limit (``host_peak.py``): the networks' FLOPs
per second of audio (counted on an eager synthesis of the second text) times the
cell's audio seconds, over the host's sgemm peak at ``--threads``; ``x limit`` is the
total over it. Griffin-Lim's FFTs are not counted, so for a Griffin-Lim voice the
limit is the networks' alone.
Prints a table and the target ratios, writes ``latency.json`` and ``latency.png`` (with the
``[bench]`` extra's matplotlib) to ``--out`` (default ``benchmarks/out/``; ``--record``: ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import ttsstack
from ttsstack.addon import load_addon
from ttsstack.compiler.driver import compile_addon, resolve_backends
from ttsstack.compiler.manifest import MANIFEST_FILE
from ttsstack.runtime import RuntimeOptions

from common import ListFlag, add_deprecated_alias, add_output_flags, output_dir, parser_for, real_time_factor
from host_peak import flops_per_audio_second, host_description, measure_peaks

HERE = Path(__file__).resolve().parent
ADDONS = sorted(p.parent for p in (HERE.parent / "addons").glob("*/addon/addon.yaml"))
WHOLE = RuntimeOptions(chunk_frames=1 << 30, first_chunk_frames=1 << 30, sentence_split=False)


@dataclass
class Measurement:
    """One (addon, system, text) cell: medians over the timed runs."""

    addon: str
    system: str
    chars: int
    first_mel_s: float
    first_audio_s: float
    total_s: float
    fastest_total_s: float
    audio_s: float
    rtf: float
    speed_multiple: float
    run_peak_mb: float
    first_call_first_audio_s: float | None = None
    limit_s: float | None = None  # the networks' FLOPs over this host's sgemm peak
    x_limit: float | None = None


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_streaming(voice, text: str) -> dict[str, float]:
    """Stream mel into the vocoder; time the first mel chunk, the first audio chunk and the end."""
    result = voice.synthesize_timed(text)
    return {"first_mel": result.first_mel_s, "first_audio": result.first_audio_s, "total": result.total_s,
            "samples": len(result.audio)}


def vocode_whole(voice, mel: np.ndarray) -> np.ndarray:
    """``mel`` vocoded at once: Griffin-Lim on the whole mel, or the vocoder network in windows as long as
    its frame dim takes (``WHOLE``'s chunk sizes)."""
    griffin_lim = getattr(voice.vocoder, "griffin_lim", None)
    if griffin_lim is not None:
        return griffin_lim.vocode(mel)
    return np.concatenate(list(voice.vocoder.stream([mel])))


def run_whole(voice, text: str) -> dict[str, float]:
    """Whole-utterance: every network once on the whole text, then the vocoder on the whole mel."""
    start = time.perf_counter()
    mel = voice.synthesize(text)
    mel_done = time.perf_counter() - start
    audio = vocode_whole(voice, mel)
    total = time.perf_counter() - start
    return {"first_mel": mel_done, "first_audio": total, "total": total, "samples": len(audio)}


def timed_run(voice, runner, text: str) -> dict[str, float]:
    """One run's times and samples, plus what it added to the peak resident set (MB)."""
    _reset_peak_rss()
    before = _status_mb("VmRSS")
    result = runner(voice, text)
    return {**result, "run_peak_mb": _status_mb("VmHWM") - before}


def measure_interleaved(addon: str, loaded: list, text: str, runs: int, first_runs: int) -> list[Measurement]:
    """One cell per system: medians of ``runs`` rounds, each round running every system once.

    Streaming systems also get ``first_runs`` rounds that stop at the first
    audio chunk (:meth:`Voice.first_chunk_latency`); their first-chunk times
    join those of the full runs, as a few milliseconds need many samples. Those
    extra rounds are other runs, so on a busy host their median can pass the
    full runs' median total where a text is spoken in one chunk (first audio =
    total); a first chunk is never reported after the cell's total.
    """
    results: dict[str, list[dict]] = {name: [] for name, _, _ in loaded}
    firsts: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in loaded}
    for _ in range(runs):
        for name, voice, runner in loaded:
            results[name].append(timed_run(voice, runner, text))
    for _ in range(first_runs):
        for name, voice, runner in loaded:
            if runner is run_streaming:
                firsts[name].append(voice.first_chunk_latency(text))
    cells = []
    for name, voice, _ in loaded:
        rows = results[name]
        total = statistics.median(r["total"] for r in rows)
        first_mel = min(total, statistics.median([r["first_mel"] for r in rows] + [f[0] for f in firsts[name]]))
        first_audio = min(total, statistics.median([r["first_audio"] for r in rows] + [f[1] for f in firsts[name]]))
        audio_s = rows[0]["samples"] / voice.sample_rate
        cells.append(Measurement(addon, name, len(text), first_mel, first_audio, total,
                                 min(r["total"] for r in rows), audio_s, real_time_factor(total, audio_s), audio_s / total,
                                 statistics.median(r["run_peak_mb"] for r in rows)))
    return cells


def systems(compiled: Path, backends: list[str], inline: bool = False, windows: bool = False):
    """(name, voice, runner) for the naive baseline, whole-utterance backends and streaming backends; with
    ``inline``, each streaming backend also without the mel thread (``ttsstack-<backend>-inline``); with
    ``windows``, each one whose vocoder streams through a stateful twin also on overlapping windows
    (``ttsstack-<backend>-windows``)."""
    yield "naive-eager", ttsstack.load(compiled, "eager", WHOLE, compile_if_needed=False), run_whole
    if "onnx" in backends:
        yield "whole-onnx", ttsstack.load(compiled, "onnx", WHOLE, compile_if_needed=False), run_whole
    for backend in backends:
        voice = ttsstack.load(compiled, backend, compile_if_needed=False)
        yield f"ttsstack-{backend}", voice, run_streaming
        if inline:
            one_thread = RuntimeOptions(vocoder_thread=False)
            yield f"ttsstack-{backend}-inline", ttsstack.load(compiled, backend, one_thread, compile_if_needed=False), run_streaming
        if windows and getattr(voice.vocoder, "block", None) is not None and voice.vocoder.block.twin:
            on_windows = RuntimeOptions(stateful_vocoder=False)
            yield f"ttsstack-{backend}-windows", ttsstack.load(compiled, backend, on_windows, compile_if_needed=False), run_streaming


def ratios(rows: list[Measurement]) -> list[dict]:
    """The issue's targets, per addon and streaming backend, measured in this run."""
    out = []
    by = {(r.addon, r.system, r.chars): r for r in rows}
    sizes = sorted({r.chars for r in rows})
    near_1000 = min(sizes, key=lambda n: abs(n - 1000))
    for addon in sorted({r.addon for r in rows}):
        for system in sorted({r.system for r in rows if r.addon == addon and r.system.startswith("ttsstack-")}):
            naive = by[(addon, "naive-eager", near_1000)]
            stream = by[(addon, system, near_1000)]
            wholes = [r for r in rows if r.addon == addon and r.chars == near_1000 and not r.system.startswith("ttsstack-")]
            out.append({
                "addon": addon,
                "system": system,
                f"first_audio_over_naive_total@{near_1000}": stream.first_audio_s / naive.total_s,
                f"first_audio_{sizes[-1]}_over_{sizes[0]}": by[(addon, system, sizes[-1])].first_audio_s / by[(addon, system, sizes[0])].first_audio_s,
                f"total_over_best_whole@{near_1000}": stream.total_s / min(r.total_s for r in wholes),
                f"fastest_total_over_fastest_whole@{near_1000}": stream.fastest_total_s / min(r.fastest_total_s for r in wholes),
            })
    return out


def print_table(rows: list[Measurement], targets: list[dict]) -> None:
    """The results as aligned text."""
    head = (f"{'addon':16s} {'system':20s} {'chars':>5s} {'1st mel ms':>10s} {'1st audio ms':>12s} {'total s':>8s} "
            f"{'RTF':>6s} {'x real time':>11s} {'+peak MB':>8s} {'limit s':>8s} {'x limit':>7s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.addon:16s} {r.system:20s} {r.chars:5d} {r.first_mel_s * 1e3:10.0f} {r.first_audio_s * 1e3:12.0f} "
              f"{r.total_s:8.2f} {r.rtf:6.3f} {r.speed_multiple:11.1f} {r.run_peak_mb:8.0f} {r.limit_s:8.3f} {r.x_limit:7.1f}")
    print("\ntargets: first audio @1000 < 0.1 x naive total; first audio 4000/50 <= 1.3; total <= 1.1 x best whole-utterance")
    for t in targets:
        print("  " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in t.items()))


def plot(rows: list[Measurement], path: Path) -> None:
    """Time to first audio and total time against text length, one line per system."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib not installed: no plot (pip install -e ".[bench]")', file=sys.stderr)
        return
    addons = sorted({r.addon for r in rows})
    fig, axes = plt.subplots(len(addons), 2, figsize=(11, 4 * len(addons)), squeeze=False)
    for row, addon in zip(axes, addons):
        for system in sorted({r.system for r in rows if r.addon == addon}):
            pts = sorted((r.chars, r.first_audio_s, r.total_s) for r in rows if r.addon == addon and r.system == system)
            x = [p[0] for p in pts]
            row[0].plot(x, [p[1] for p in pts], marker="o", label=system)
            row[1].plot(x, [p[2] for p in pts], marker="o", label=system)
        for ax, what in zip(row, ("time to first audio (s)", "total time (s)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("text length (characters)")
            ax.set_ylabel(what)
            ax.set_title(f"{addon}: {what}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    """Parse arguments, compile the addons, measure every system, report."""
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true", help="one timed run, two shortest texts (a smoke run)")
    parser.add_argument("--backend", action=ListFlag, default=["all"], metavar="NAME",
                        help="streaming backend to measure (repeatable or comma list; all: every one available)")
    add_deprecated_alias(parser, "--backends", "--backend", dest="backend")
    parser.add_argument("--addon", action="append", type=Path, default=None, metavar="DIR",
                        help="source or compiled addon folder (repeatable; default: every bundled addon)")
    parser.add_argument("--addons", nargs="+", type=Path, dest="addons_deprecated", help=argparse.SUPPRESS)
    parser.add_argument("--text", action=ListFlag, default=None, metavar="NAME",
                        help="texts of benchmarks/texts/ to run, by file name without .txt (repeatable or comma "
                             "list; default: every one)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--first-runs", type=int, default=15,
                        help="extra runs per streaming cell that stop at the first audio chunk (first-chunk medians)")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch intra-op threads (default 1: one stream's share of a serving host; "
                             "more threads on a busy host oversubscribe the cores)")
    parser.add_argument("--inline", action="store_true",
                        help="also stream each backend with its mel and vocoder in one thread "
                             "(RuntimeOptions(vocoder_thread=False)), side by side with the mel thread")
    parser.add_argument("--windows", action="store_true",
                        help="also stream each backend whose vocoder has a stateful twin on overlapping windows "
                             "(RuntimeOptions(stateful_vocoder=False)), side by side with the twin")
    add_output_flags(parser)
    args = parser.parse_args()
    if args.addons_deprecated:
        print("warning: --addons is deprecated and will be removed in the next release; use --addon (repeatable)",
              file=sys.stderr)
    args.addons = (args.addon or []) + (args.addons_deprecated or []) or ADDONS
    args.out = output_dir(parser, args)
    torch.set_num_threads(args.threads)
    texts = sorted((HERE / "texts").glob("chars_*.txt"))
    if args.text:
        unknown = sorted(set(args.text) - {t.stem for t in texts})
        if unknown:
            parser.error(f"--text: no such text {', '.join(unknown)} (have {', '.join(t.stem for t in texts)})")
        texts = [t for t in texts if t.stem in args.text]

    backends = [b.name for b in resolve_backends(args.backend)]
    peaks = measure_peaks(args.threads)
    print(f"limit: networks' FLOPs at this host's sgemm peak, {peaks['sgemm_gflops']:.1f} GFLOP/s "
          f"at {args.threads} thread(s)", file=sys.stderr)
    if args.quick:
        texts, args.runs, args.first_runs = texts[:2], 1, 1
    rows: list[Measurement] = []
    for source in args.addons:
        if (source / MANIFEST_FILE).is_file():
            compiled = source  # already compiled: use its artifacts as they are
        else:
            compiled = args.out / "compiled" / load_addon(source).spec.name
            compile_addon(source, compiled, backends, progress=False)
        loaded = list(systems(compiled, backends, args.inline, args.windows))
        flops_per_s = flops_per_audio_second(loaded[0][1], texts[min(1, len(texts) - 1)].read_text().strip())
        first_calls = {name: runner(voice, texts[0].read_text().strip())["first_audio"]  # warm-up: first call after load
                       for name, voice, runner in loaded}
        for index, path in enumerate(texts):
            text = path.read_text().strip()
            for cell in measure_interleaved(loaded[0][1].spec.name, loaded, text, args.runs, args.first_runs):
                if index == 0:
                    cell.first_call_first_audio_s = first_calls[cell.system]
                cell.limit_s = flops_per_s * cell.audio_s / (peaks["sgemm_gflops"] * 1e9)
                cell.x_limit = cell.total_s / cell.limit_s
                rows.append(cell)
                print(f"  {cell.addon} {cell.system} {cell.chars} chars: first audio {cell.first_audio_s * 1e3:.0f} ms, "
                      f"total {cell.total_s:.2f} s", file=sys.stderr)
    targets = ratios(rows)
    print_table(rows, targets)
    report = {
        "host": {**host_description(), "threads": torch.get_num_threads(), "device": "cpu"},
        "peaks": peaks,
        "runs": args.runs,
        "first_runs": args.first_runs,
        "rows": [asdict(r) for r in rows],
        "targets": targets,
    }
    (args.out / "latency.json").write_text(json.dumps(report, indent=2))
    plot(rows, args.out / "latency.png")
    print(f"\nwrote {args.out / 'latency.json'}")


if __name__ == "__main__":
    main()
