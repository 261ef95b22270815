"""Files only their owner can read.

Everything the product writes holds row-level data or derives from it (the warehouse file, the
import handoff, query lists, report, exports, Data Docs, Dagster's run storage), so it is
created owner-only — folders 0700, files 0600 — whatever the umask of the process:

* entry points call :func:`private_process` first, so that files created by libraries that take
  no mode (DuckDB, SQLite, matplotlib, Great Expectations, Dagster) are born private;
* code that creates a folder uses :func:`private_dir`, and a tree written by such libraries is
  tightened afterwards with :func:`make_private`, which holds even when the process umask was
  never set (a test, a notebook).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_process() -> int:
    """From now on this process creates owner-only files; returns the previous umask."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path | str) -> Path:
    """``path`` as a folder, each missing folder on the way created owner-only (0700).

    An existing folder keeps its mode: the product tightens only trees it owns (:func:`make_private`),
    never a parent it was given (``/srv``, a home directory).
    """
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(folder, DIR_MODE)  # mkdir's mode goes through the umask
    return path


def remove_left_folders(parent: Path | str, pattern: str) -> None:
    """The folders matching ``pattern`` that a run killed mid-way left in ``parent`` (the rows it kept there
    while it ran: pseudonymised, they must not stay), removed; a link of that name is left alone."""
    parent = Path(parent)
    if parent.is_dir():
        for folder in parent.glob(pattern):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)


def make_private(*paths: Path | str) -> None:
    """Folders 0700 and files 0600, each of ``paths`` and everything under it (absent paths are skipped)."""
    for top in map(Path, paths):
        if top.is_symlink() or not top.exists():
            continue
        if top.is_file():
            os.chmod(top, FILE_MODE)
            continue
        for folder, _, names in os.walk(top):
            os.chmod(folder, DIR_MODE)
            for name in names:
                file = os.path.join(folder, name)
                if not os.path.islink(file):
                    os.chmod(file, FILE_MODE)


def private_home(path: Path | str) -> Path:
    """A folder the product owns whole (DAGSTER_HOME): created owner-only if missing, and
    tightened with everything already in it (files a looser umask created before)."""
    make_private(private_dir(path))
    return Path(path)
