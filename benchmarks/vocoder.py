"""Vocoder speed and its share of the total: Griffin-Lim by block schedule next to the addon's vocoder network by backend.

Usage: python benchmarks/vocoder.py [--quick] [--addon DIR] [--runs N] [--schedule FIRST:BLOCK ...]
                                    [--backend NAME ...] [--out DIR | --record]

The vocoder was most of every total in ``latency.py`` while the demo spoke
through Griffin-Lim. This times, on one thread, for the voice's mel of each
fixed text (``benchmarks/texts/``):

- the acoustic model alone: the addon's stack streamed on the ``cpu`` backend
  (text to mel), the part of the total that is not the vocoder;
- Griffin-Lim with the addon's audio settings (``vocoder: {type: GriffinLim}``,
  the demo's vocoder before its network): ``GriffinLim.vocode`` for each block
  schedule (first block, later blocks; frames), the default first, then any
  given with ``--schedule``;
- the addon's vocoder network, when it has one (``vocoder: {type: Network}``):
  on each ``--backend`` (repeatable; default cpu), streamed on overlapping
  windows with the voice's chunk schedule, and whole (one window per dim ``max``).

Runs of all variants are interleaved; each cell is the median. ``share`` is
the vocoder's part of acoustic model + vocoder. Prints a table and writes
``vocoder.json`` to ``--out`` (default ``benchmarks/out/``; ``--record``:
``benchmarks/results/``).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

import ttsstack
from ttsstack.audio import GriffinLim
from ttsstack.parity import WHOLE
from ttsstack.runtime.vocoders import mel_settings

from common import ListFlag, add_output_flags, output_dir, parser_for, real_time_factor

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent / "addons" / "fastpitch-demo" / "addon"
ACOUSTIC = "acoustic model (cpu, streamed)"


def griffin_lims(voice, schedules: list[tuple[int, int]]) -> dict[str, GriffinLim]:
    """Griffin-Lim with the voice's audio settings: the default block schedule, then each given one, by row name."""
    settings = mel_settings(voice.spec.audio)
    out = {"griffin-lim default": GriffinLim(settings)}
    for first, block in schedules:
        out[f"griffin-lim {first}:{block}"] = GriffinLim(settings, block_frames=block, first_block_frames=first)
    return out


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
                             "default: only Griffin-Lim's own)")
    parser.add_argument("--backend", action=ListFlag, default=[], metavar="NAME",
                        help="a backend to time the addon's vocoder network on (repeatable or comma list; default cpu)")
    add_output_flags(parser)
    args = parser.parse_args()
    out = output_dir(parser, args)
    torch.set_num_threads(1)

    voice = ttsstack.load(args.addon, "eager")
    acoustic = ttsstack.load(args.addon, "cpu")
    try:
        schedules = [tuple(int(v) for v in s.split(":", 1)) for s in args.schedule]
    except ValueError:
        parser.error(f"--schedule: expected FIRST:BLOCK frames, e.g. 32:128, got {args.schedule}")
    if any(len(s) != 2 for s in schedules):
        parser.error(f"--schedule: expected FIRST:BLOCK frames, e.g. 32:128, got {args.schedule}")
    if args.backend and not voice.vocoder.networks:
        parser.error("--backend is for a vocoder network; this addon's vocoder is Griffin-Lim (give --schedule)")
    run = {name: gl.vocode for name, gl in griffin_lims(voice, schedules).items()}
    if voice.vocoder.networks:
        timed = network_vocoders(args.addon, args.backend or ["cpu"])
        run |= {f"network {name}": (lambda mel, v=v: list(v.stream([mel]))) for name, v in timed.items()}
    names = list(run)
    rows = []
    paths = sorted((HERE / "texts").glob("chars_*.txt"))
    if args.quick:
        paths, args.runs = paths[:2], 1
    for path in paths:
        text = path.read_text().strip()
        mel = voice.synthesize(text)
        audio_s = mel.shape[0] * voice.spec.audio.hop_length / voice.sample_rate
        times: dict[str, list[float]] = {name: [] for name in [ACOUSTIC, *names]}
        for _ in range(args.runs):
            start = time.perf_counter()
            list(acoustic.stream(text))
            times[ACOUSTIC].append(time.perf_counter() - start)
            for name in names:
                start = time.perf_counter()
                run[name](mel)
                times[name].append(time.perf_counter() - start)
        mel_seconds = statistics.median(times[ACOUSTIC])
        for name in [ACOUSTIC, *names]:
            seconds = statistics.median(times[name])
            share = None if name == ACOUSTIC else seconds / (seconds + mel_seconds)
            rows.append({"text": path.stem, "frames": mel.shape[0], "vocoder": name, "seconds": seconds,
                         "share": share, "rtf": real_time_factor(seconds, audio_s), "x_real_time": audio_s / seconds})

    print(f"{'text':12s} {'frames':>6s} {'stage':>30s} {'seconds':>8s} {'share':>6s} {'RTF':>6s} {'x real time':>11s}")
    for r in rows:
        share = "" if r["share"] is None else f"{r['share']:6.0%}"
        print(f"{r['text']:12s} {r['frames']:6d} {r['vocoder']:>30s} {r['seconds']:8.3f} {share:>6s} "
              f"{r['rtf']:6.3f} {r['x_real_time']:11.1f}")
    report = {"host": {"machine": platform.machine(), "torch": torch.__version__, "threads": 1, "device": "cpu"},
              "runs": args.runs, "rows": rows}
    (out / "vocoder.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out / 'vocoder.json'}")


if __name__ == "__main__":
    main()
