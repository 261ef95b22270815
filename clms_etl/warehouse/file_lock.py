"""One DuckDB warehouse file, many processes: its readers together, a writer alone.

DuckDB lets one process open a file read-write, or any number of processes open it read-only, and
refuses every other opening at once ("Could not set lock on file"). So that the night's readers
(exports, OMOP, the report, the result suites) can run side by side and a load that comes while they
read waits for them instead of failing, a :class:`~clms_etl.warehouse.load.Warehouse` on a DuckDB file
takes an advisory lock on ``<file>.lock`` before DuckDB opens the file (:func:`acquire`): shared for a
read-only opening, exclusive for a read-write one, waiting for it if another process holds the other.

The lock belongs to the process, not to a thread or a connection: DuckDB shares one database among a
process's connections, so every opening of the file in one mode shares one lock (counted, released
with the last); an opening in the other mode while the process holds the file is refused by DuckDB,
and is refused here first (instead of waiting for itself).

Why ``fcntl.flock`` and not ``filelock.ReadWriteLock``: that one pins a write lock to the thread that
took it and refuses another thread's opening, which DuckDB allows within a process. ``flock`` does
not make a waiting writer block new readers: a night's readers are a bounded set, the load waits for
the last of them.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # (not POSIX: DuckDB's own lock alone, the second comer fails as before)
    fcntl = None

log = logging.getLogger(__name__)


class LockModeConflict(RuntimeError):
    """The process already has the file open in the other mode (DuckDB would refuse the opening)."""


@dataclass
class _Held:
    fd: int
    read_only: bool
    count: int


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def lock_path(database: Path) -> Path:
    return database.with_name(f"{database.name}.lock")


def acquire(database: Path, *, read_only: bool) -> None:
    """Hold ``database``'s lock in this process (shared when ``read_only``), waiting for another
    process's lock of the other mode to go; pair with :func:`release`."""
    if fcntl is None:
        return
    key = Path(database).resolve()
    with _guard:
        held = _held.get(key)
        if held is not None:
            if held.read_only != read_only:
                raise LockModeConflict(
                    f"{database} is already open {'read-only' if held.read_only else 'read-write'} in this process: "
                    f"close it before opening it {'read-only' if read_only else 'read-write'}")
            held.count += 1
            return
        fd = os.open(lock_path(key), os.O_RDWR | os.O_CREAT, 0o600)
        mode = fcntl.LOCK_SH if read_only else fcntl.LOCK_EX
        try:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:  # say why the step is not moving, then wait
                log.info("%s: another process has it open; waiting to open it %s", database,
                         "read-only" if read_only else "read-write")
                fcntl.flock(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        _held[key] = _Held(fd, read_only, 1)


def release(database: Path) -> None:
    """Give back one :func:`acquire` of ``database``; the last one unlocks the file."""
    if fcntl is None:
        return
    key = Path(database).resolve()
    with _guard:
        held = _held.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count == 0:
            del _held[key]
            os.close(held.fd)  # (closing the descriptor releases the lock)


def _forget_in_child() -> None:
    # A forked process (a Dagster step) does not hold its parent's openings: it closes its copies of
    # the descriptors, so that the lock goes when the parent releases it.
    global _guard
    _guard = threading.Lock()  # (another thread of the parent may have held it at the fork)
    for held in _held.values():
        try:
            os.close(held.fd)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
