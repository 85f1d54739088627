"""Files of a compiled folder written whole or not at all, and one compile per folder at a time.

A compile that dies half way (a full disk, a killed process) must leave the
previous artifacts and manifest as they were: every file is written under
``.staging/`` in its own folder and renamed into place only once complete
(``os.replace`` is atomic within a file system). Two compiles into one folder
take turns through a lock file, so the second sees, and keeps, what the first
wrote.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

LOCK_FILE = ".compile.lock"


STAGING = ".staging"


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A path to write instead of ``path``: ``.staging/<name>`` in its folder, renamed onto ``path`` on success.

    The staged file keeps ``path``'s name, so a backend that names side files
    after its output (a compiler's work directory) still does. On an
    exception the staged file is removed and ``path`` is untouched; what a
    backend chose to keep beside it (logs it names in its error) stays in
    ``.staging``. The name is fixed, so callers hold the folder's lock
    (:func:`folder_lock`).
    """
    tmp = path.parent / STAGING / path.name
    tmp.parent.mkdir(exist_ok=True)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # data on disk before the name points at it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            tmp.parent.rmdir()  # only when nothing was kept there


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`staged`."""
    with staged(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def folder_lock(folder: Path, progress: bool = True) -> Iterator[None]:
    """Hold ``folder``'s compile lock; waits (saying so when ``progress``) while another compile holds it."""
    lock = FileLock(folder / LOCK_FILE)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        if progress:
            print(f"waiting for another compile into {folder} to finish", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
