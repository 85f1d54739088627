"""Output files of a command, checked before any work: a missing folder is created, a bad path is refused."""

from __future__ import annotations

import os
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that cannot be written, named with the flag that gave it."""


def prepare_output_file(path: Path, flag: str) -> Path | None:
    """Make sure ``path`` can be written: create its missing parent folders, refuse what cannot work.

    Returns the folder that was created (the outermost one), or None when it
    existed. Refused: a path that is an existing folder, a parent that is a
    file, and a folder this process may not write to.
    """
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    created = None
    missing = [p for p in [parent, *parent.parents] if not p.exists()]
    for folder in [parent, *parent.parents]:
        if folder.exists() and not folder.is_dir():
            raise OutputPathError(f"{flag} {path}: {folder} is a file, not a folder")
        if folder.exists():
            break
    if missing:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"{flag} {path}: cannot create the folder {parent}: {exc.strerror or exc}") from None
        created = missing[-1]
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"{flag} {path}: the folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag} {path}: the file exists and is not writable")
    return created
