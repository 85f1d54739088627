"""Files of a compiled folder written whole or not at all, and one compile per folder at a time.

A compile that dies half way (a full disk, a killed process) must leave the
previous artifacts and manifest as they were: every file is written to a
temporary name in its own folder and renamed into place only once complete
(``os.replace`` is atomic within a file system). Two compiles into one folder
take turns through a lock file, so the second sees, and keeps, what the first
wrote.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

LOCK_FILE = ".compile.lock"


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) to write; renamed onto ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    tmp = path.with_name(f".{path.stem}.partial-{uuid.uuid4().hex[:12]}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # data on disk before the name points at it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
