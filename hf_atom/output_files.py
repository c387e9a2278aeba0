# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Writing output files so that nothing is lost: atomic, never through a planted link, one writer per folder.

- `atomic_write`: a file appears whole or not at all (written to a temporary name beside it, then renamed). The
  rename replaces a symbolic link at the target path itself, so a link planted in the output folder is never
  followed and whatever it points at is never written.
- `check_inside`: a path whose folder resolves outside the output folder (through a linked subfolder) is refused.
- `OutputFolderLock`: one writer per output folder; a second run gets an error instead of replacing the first
  run's files.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["LOCK_NAME", "OutputFolderLock", "atomic_write", "atomic_write_text", "check_inside"]

LOCK_NAME = ".hf_atom-explain.lock"


def check_inside(path: str, folder: str) -> None:
    """Raises a `ValueError` if `path`'s folder (links resolved) is not `folder` or inside it."""
    parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    root = os.path.realpath(folder)
    if parent != root and not parent.startswith(root + os.sep):
        raise ValueError(
            f"{path!r} would be written outside the output folder {folder!r} (its folder links to {parent!r}). "
            "Remove the link, or choose an output folder without links."
        )


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Calls `write(temporary_path)` and renames the result to `path`; the temporary name keeps `path`'s suffix so
    that writers choosing a format by extension (matplotlib) see the right one. Returns `path`."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, suffix = os.path.splitext(name)
    temporary = os.path.join(folder, f".{stem}.{os.getpid()}.tmp{suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.remove(temporary)
    return path


def atomic_write_text(path: str, text: str) -> str:
    """Writes `text` (UTF-8) to `path` atomically, never through a link at `path`."""

    def write(temporary: str) -> None:
        with open(temporary, "x", encoding="utf-8") as handle:
            handle.write(text)

    return atomic_write(path, write)


class OutputFolderLock:
    """Claims an output folder for one run (`with OutputFolderLock(folder):`), with a lock file made exclusively."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK_NAME)

    def __enter__(self) -> OutputFolderLock:
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise ValueError(
                f"Another run is writing into {os.path.dirname(self.path)!r} (its lock file {self.path!r} exists). "
                "Wait for it to finish, choose another output folder, or delete the lock file if no run is active."
            ) from None
        return self

    def __exit__(self, *exc_info) -> None:
        if os.path.lexists(self.path):
            os.remove(self.path)
