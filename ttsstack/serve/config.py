"""What a server is configured with: the addons to serve and the limits that protect it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..runtime.clauses import FLUSH_AFTER_S
from ..runtime.registry import BACKENDS


@dataclass(frozen=True)
class Limits:
    """Per-server limits; the concurrency ones apply to each addon separately.

    What one synthesis may hold:

    - ``max_concurrent``: syntheses of one addon running at once (each holds a
      worker thread while it computes a chunk).
    - ``max_queue``: requests of one addon waiting for a free synthesis slot;
      a request beyond ``max_concurrent + max_queue`` gets ``429`` with
      ``Retry-After: retry_after_s``.
    - ``max_input_chars``: longest ``input`` text (longer is ``413``).
    - ``ws_idle_timeout_s``: a speech WebSocket that sends nothing this long
      while nothing is being spoken is closed (code 1008, with the reason).
    - ``ws_flush_after_s``: on a speech WebSocket, text pending without a
      clause end is spoken after this long without a new fragment.
    - ``send_timeout_s``: a response whose sends have been blocked this long
      (the client reads nothing) is cut: its connection is aborted, its stream
      cancelled (counted as ``stalled``) and its slot freed.

    What one connection may hold while it sends its request (enforced by
    ttsstack's own uvicorn protocol, :mod:`ttsstack.serve.protocol`, except where noted):

    - ``header_timeout_s``: from connecting (or the end of the previous
      response) to the end of the request headers; then the connection is closed.
    - ``max_header_bytes``: request line and headers buffered while they are
      incomplete (uvicorn's ``h11_max_incomplete_event_size``; over it is ``400``).
    - ``body_timeout_s``: to receive the whole body once the headers are in (over it is ``408``).
    - ``max_body_bytes``: largest request body (larger is ``413``, before it is parsed).
    - ``keep_alive_s``: an idle keep-alive connection is closed after this
      (uvicorn's ``timeout_keep_alive``).
    - ``max_connections``: open connections plus running requests; a request
      beyond it is ``503`` (uvicorn's ``limit_concurrency``).
    - ``shutdown_grace_s``: on SIGTERM, how long running streams may take to
      finish before they are cancelled (uvicorn's ``timeout_graceful_shutdown``).
    """

    max_concurrent: int = 2
    max_queue: int = 16
    max_input_chars: int = 4096
    max_body_bytes: int = 64 * 1024
    retry_after_s: int = 1
    send_timeout_s: float = 15.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024
    keep_alive_s: float = 5.0
    max_connections: int = 512
    shutdown_grace_s: float = 30.0
    ws_idle_timeout_s: float = 30.0
    ws_flush_after_s: float = FLUSH_AFTER_S

    def __post_init__(self) -> None:
        for name in ("max_concurrent", "max_input_chars", "max_body_bytes", "retry_after_s",
                     "max_header_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("send_timeout_s", "header_timeout_s", "body_timeout_s", "keep_alive_s", "ws_idle_timeout_s",
                     "ws_flush_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.shutdown_grace_s < 0:
            raise ValueError(f"shutdown_grace_s must be >= 0 seconds, got {self.shutdown_grace_s}")


def concurrency_for_batch(batch: int, max_concurrent: int | None) -> int:
    """The syntheses each addon runs at once (``--max-concurrent``) for ``serve --batch``.

    A batch holds the calls of streams that are running, so ``--batch N``
    needs ``N`` syntheses at once: left out (None), ``max_concurrent`` is the
    larger of the default and ``batch``; given smaller than ``batch`` it is an
    error naming both, since the batches could never fill.
    """
    if max_concurrent is None:
        return max(Limits.max_concurrent, batch)
    if max_concurrent < batch:
        raise ValueError(
            f"--batch {batch} runs the calls of up to {batch} streams as one, but --max-concurrent {max_concurrent} "
            f"runs at most {max_concurrent} syntheses of an addon at once, so no batch could fill: give "
            f"--max-concurrent {batch} or more (left out, it defaults to --batch's value), or a smaller --batch"
        )
    return max_concurrent


def threads_per_call(cores: int, max_concurrent: int, batch: int, addons: int) -> int:
    """Intra-op threads for each network call, so that the calls running at once do not oversubscribe the cores.

    Each addon runs ``max_concurrent`` syntheses; with ``batch`` their calls
    of ``batch: true`` networks run ``batch`` at a time as one call, so about
    ``ceil(max_concurrent / batch)`` calls per addon compute at once.
    """
    calls = -(-max_concurrent // batch) * addons
    return max(1, cores // calls)


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
