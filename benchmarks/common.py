"""What every benchmark shares: where results go, and the command-line conventions of ``ttsstack.cliflags``.

Results go to ``--out DIR`` (default ``benchmarks/out/``, untracked), so a run
never rewrites the numbers the README quotes; ``--record`` writes them to
``benchmarks/results/`` instead, the committed record, on purpose.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ttsstack.cliflags import HelpFormatter, ListFlag, add_deprecated_alias, real_time_factor

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"
RECORDED = HERE / "results"

__all__ = ["ListFlag", "add_deprecated_alias", "add_output_flags", "add_timing_flags", "output_dir", "parser_for",
           "real_time_factor"]


def parser_for(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the module docstring (reST quotes removed) as description and help that states defaults."""
    return argparse.ArgumentParser(description=(doc or "").replace("``", ""), formatter_class=HelpFormatter)


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--out DIR`` and ``--record``."""
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help=f"folder for the JSON (and plots) (default: {DEFAULT_OUT.relative_to(HERE.parent)}/, untracked)")
    parser.add_argument("--record", action="store_true",
                        help=f"write to {RECORDED.relative_to(HERE.parent)}/, the committed results the README quotes")


def add_timing_flags(parser: argparse.ArgumentParser, *, runs: int, each: str) -> None:
    """``--runs`` (timed runs of ``each``, the median kept; every benchmark spells it so) and ``--threads``
    (torch's, ONNX Runtime's follow)."""
    parser.add_argument("--runs", type=int, default=runs, help=f"timed runs per {each} (median)")
    add_deprecated_alias(parser, "--repeats", "--runs", dest="runs", type=int)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (ONNX Runtime's follow: ttsstack sizes its sessions so)")


def output_dir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """The folder chosen by ``--out``/``--record`` (created); both at once is an error."""
    if args.record and args.out is not None:
        parser.error("--record writes to benchmarks/results/; give either --record or --out, not both")
    folder = RECORDED if args.record else (args.out or DEFAULT_OUT)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
