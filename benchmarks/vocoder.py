"""Vocoder speed: seconds per utterance and times faster than real time, Griffin-Lim by block schedule, a vocoder network by backend.

Usage: python benchmarks/vocoder.py [--quick] [--addon DIR] [--runs N] [--schedule FIRST:BLOCK ...]
                                    [--backend NAME ...] [--out DIR | --record]

The vocoder is most of every total in ``latency.py``, and the same in streaming
and whole-utterance runs. This times the addon's vocoder alone on the voice's
mel of each fixed text (``benchmarks/texts/``), on one thread:

- Griffin-Lim (the demo's): ``GriffinLim.vocode`` for each block schedule
  (first block, later blocks; frames), the default first, then any given with
  ``--schedule``;
- a vocoder network (``vocoder: {type: Network}``, e.g. HiFi-GAN): on each
  ``--backend`` (repeatable; default cpu), streamed on overlapping windows with
  the voice's chunk schedule, and whole (one window per dim ``max``).

Runs of all variants are interleaved; each cell is the median. Prints a table
and writes ``vocoder.json`` to ``--out`` (default ``benchmarks/out/``;
``--record``: ``benchmarks/results/``). To compare two commits, run it on
each (``PYTHONPATH=<checkout>``); on code without ``first_block_frames``, give
no ``--schedule``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

import ttsstack
from ttsstack.parity import WHOLE

from common import ListFlag, add_output_flags, output_dir, parser_for, real_time_factor

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent / "addons" / "fastpitch-demo" / "addon"


def vocoder_for(voice, schedule: tuple[int, int] | None):
    """The voice's Griffin-Lim, or one with the same settings on another block schedule."""
    gl = voice.vocoder.griffin_lim
    if schedule is None:
        return gl
    first, block = schedule
    return type(gl)(gl.settings, n_iter=gl.n_iter, momentum=gl.momentum, block_frames=block,
                    first_block_frames=first, overlap_frames=gl.overlap_frames,
                    crossfade_frames=gl.crossfade_frames, seed=gl.seed)


def network_vocoders(addon: Path, backends: list[str]) -> dict[str, object]:
    """The addon's vocoder network on each backend, streamed and whole, by row name."""
    vocoders = {}
    for backend in backends:
        vocoders[f"{backend} streamed"] = ttsstack.load(addon, backend).vocoder
        vocoders[f"{backend} whole"] = ttsstack.load(addon, backend, options=WHOLE).vocoder
    return vocoders


def main() -> None:
    """Parse arguments, synthesize each text's mel once, time the vocoder per schedule or backend, report."""
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true", help="one run, two shortest texts (a smoke run)")
    parser.add_argument("--addon", type=Path, default=DEMO, help="source or compiled addon (its eager backend makes the mel)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--schedule", action=ListFlag, default=[], metavar="FIRST:BLOCK",
                        help="another Griffin-Lim block schedule to time, e.g. 32:32 or 32:128 (repeatable or comma list; "
                             "default: only the vocoder's own)")
    parser.add_argument("--backend", action=ListFlag, default=[], metavar="NAME",
                        help="a backend to time the addon's vocoder network on (repeatable or comma list; default cpu)")
    add_output_flags(parser)
    args = parser.parse_args()
    out = output_dir(parser, args)
    torch.set_num_threads(1)

    voice = ttsstack.load(args.addon, "eager")
    kind = type(voice.vocoder).__name__
    if voice.vocoder.networks:
        if args.schedule:
            parser.error("--schedule is for Griffin-Lim; this addon's vocoder is a network (give --backend)")
        timed = network_vocoders(args.addon, args.backend or ["cpu"])
        run = {name: (lambda mel, v=v: list(v.stream([mel]))) for name, v in timed.items()}
    else:
        if args.backend:
            parser.error("--backend is for a vocoder network; this addon's vocoder is Griffin-Lim (give --schedule)")
        try:
            schedules = [None] + [tuple(int(v) for v in s.split(":", 1)) for s in args.schedule]
        except ValueError:
            parser.error(f"--schedule: expected FIRST:BLOCK frames, e.g. 32:128, got {args.schedule}")
        if any(s is not None and len(s) != 2 for s in schedules):
            parser.error(f"--schedule: expected FIRST:BLOCK frames, e.g. 32:128, got {args.schedule}")
        timed = {"default" if s is None else f"{s[0]}:{s[1]}": vocoder_for(voice, s) for s in schedules}
        run = {name: gl.vocode for name, gl in timed.items()}
    names = list(run)
    rows = []
    paths = sorted((HERE / "texts").glob("chars_*.txt"))
    if args.quick:
        paths, args.runs = paths[:2], 1
    for path in paths:
        mel = voice.synthesize(path.read_text().strip())
        audio_s = mel.shape[0] * voice.spec.audio.hop_length / voice.sample_rate
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.runs):
            for name in names:
                start = time.perf_counter()
                run[name](mel)
                times[name].append(time.perf_counter() - start)
        for name in names:
            seconds = statistics.median(times[name])
            rows.append({"text": path.stem, "frames": mel.shape[0], "vocoder": kind, "schedule": name,
                         "seconds": seconds, "rtf": real_time_factor(seconds, audio_s), "x_real_time": audio_s / seconds})

    print(f"{'text':12s} {'frames':>6s} {'vocoder':>16s} {'schedule':>20s} {'seconds':>8s} {'RTF':>6s} {'x real time':>11s}")
    for r in rows:
        print(f"{r['text']:12s} {r['frames']:6d} {r['vocoder']:>16s} {r['schedule']:>20s} {r['seconds']:8.3f} "
              f"{r['rtf']:6.3f} {r['x_real_time']:11.1f}")
    report = {"host": {"machine": platform.machine(), "torch": torch.__version__, "threads": 1, "device": "cpu"},
              "runs": args.runs, "rows": rows}
    (out / "vocoder.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out / 'vocoder.json'}")


if __name__ == "__main__":
    main()
