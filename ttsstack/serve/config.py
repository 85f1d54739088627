"""What a server is configured with: the addons to serve and the limits that protect it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..runtime.registry import BACKENDS


@dataclass(frozen=True)
class Limits:
    """Per-server limits; the concurrency ones apply to each addon separately.

    - ``max_concurrent``: syntheses of one addon running at once (each holds a
      worker thread while it computes a chunk).
    - ``max_queue``: requests of one addon waiting for a free synthesis slot;
      a request beyond ``max_concurrent + max_queue`` gets ``429`` with
      ``Retry-After: retry_after_s``.
    - ``max_input_chars``: longest ``input`` text (longer is ``413``).
    - ``max_body_bytes``: largest request body (larger is ``413``, before it is parsed).
    """

    max_concurrent: int = 2
    max_queue: int = 16
    max_input_chars: int = 4096
    max_body_bytes: int = 64 * 1024
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_concurrent", "max_input_chars", "max_body_bytes", "retry_after_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")


@dataclass(frozen=True)
class AddonSource:
    """One ``--addon DIR[:BACKEND]`` argument: an addon folder and the backend to run it on."""

    folder: Path
    backend: str = "cpu"

    def __str__(self) -> str:
        return f"{self.folder}:{self.backend}"


def parse_addon_source(text: str, default_backend: str = "cpu") -> AddonSource:
    """Parse ``DIR`` or ``DIR:BACKEND``; an unknown backend is an error listing the known ones.

    The part after the last ``:`` is a backend when it has no path separator,
    so folders may still contain colons elsewhere.
    """
    folder, sep, backend = text.rpartition(":")
    if not sep or not folder or "/" in backend or "\\" in backend:
        return AddonSource(Path(text), default_backend)
    if backend not in BACKENDS:
        raise ValueError(f"--addon {text}: unknown backend '{backend}'; known: {', '.join(BACKENDS.names())}")
    return AddonSource(Path(folder), backend)


def require_unique_names(named: list[tuple[str, str]]) -> None:
    """Fail when two addons would be served under one model name.

    ``named`` pairs each addon's name (``name:`` in its ``addon.yaml``, the
    ``model`` clients ask for) with where it came from, for the message.
    """
    seen: dict[str, str] = {}
    for name, origin in named:
        if name in seen:
            raise ValueError(
                f"model name '{name}' is served twice: by {seen[name]} and by {origin}; "
                f"clients pick an addon by its name, so each served addon needs its own (addon.yaml name:)"
            )
        seen[name] = origin
