"""The command-line conventions every ttsstack command and benchmark follows, in one place.

- A list flag has a singular name, may be repeated, and each value may also
  be a comma list: ``--backend cpu --backend onnx`` is ``--backend cpu,onnx``
  (:class:`ListFlag`). An old spelling stays for one release as a hidden,
  deprecated alias that says so on stderr (:func:`add_deprecated_alias`).
- Every option has help text that states its default (:class:`HelpFormatter`
  appends ``(default: ...)`` where the text does not already say it).
- Speed is reported as RTF, compute time / audio time (lower is better,
  below 1 is faster than real time), with the speed multiple beside it
  (:func:`describe_rtf`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def split_list(values: Sequence[str]) -> list[str]:
    """``["cpu,onnx", "eager"]`` -> ``["cpu", "onnx", "eager"]``: repeated values, each maybe a comma list."""
    return [item for value in values for item in (part.strip() for part in value.split(",")) if item]


class ListFlag(argparse.Action):
    """A repeatable flag whose values may each be a comma list; collects one flat list.

    The first use replaces the default (so a default list is not extended by
    the user's values).
    """

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        mine = f"_{self.dest}_given"
        items = split_list([values] if isinstance(values, str) else values)
        if not items:
            parser.error(f"{option_string}: expected a value, got {values!r}")
        if not getattr(namespace, mine, False) or current is None:
            current = []
            setattr(namespace, mine, True)
        setattr(namespace, self.dest, list(current) + items)


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str, type=None) -> None:
    """Accept ``old`` as a hidden spelling of ``new`` (same dest), warning on stderr: of the list flag ``new``,
    or, with ``type``, of a flag taking one value of that type."""
    base = ListFlag if type is None else argparse.Action

    class _Deprecated(base):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"warning: {old} is deprecated and will be removed in the next release; use {new}",
                  file=sys.stderr)
            if type is None:
                super().__call__(parser, namespace, values, option_string)
            else:
                setattr(namespace, self.dest, values)

    parser.add_argument(old, dest=dest, action=_Deprecated, help=argparse.SUPPRESS, **({} if type is None else {"type": type}))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and adds ``(default: X)`` to option help that does not state a default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or action.option_strings == []:
            return text
        if isinstance(action.default, (list, tuple)):
            shown = ",".join(str(v) for v in action.default) or "none"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def real_time_factor(compute_s: float, audio_s: float) -> float:
    """RTF as the field uses it: seconds of compute per second of audio (below 1 is faster than real time)."""
    return compute_s / audio_s if audio_s > 0 else float("inf")


def describe_rtf(compute_s: float, audio_s: float) -> str:
    """``RTF 0.71 (1.4x faster than real time)``: the usual RTF with the speed multiple beside it."""
    rtf = real_time_factor(compute_s, audio_s)
    if rtf == float("inf"):
        return "RTF inf (no audio)"
    multiple = 1 / rtf if rtf > 0 else float("inf")
    if multiple >= 1:
        return f"RTF {rtf:.2f} ({multiple:.1f}x faster than real time)"
    return f"RTF {rtf:.2f} ({1 / multiple:.1f}x slower than real time)"

