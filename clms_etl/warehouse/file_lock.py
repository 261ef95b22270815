"""One DuckDB warehouse file, many processes: its readers together, a writer alone.

DuckDB lets one process open a file read-write, or any number of processes open it read-only, and
refuses every other opening at once ("Could not set lock on file"). So that the night's readers
(exports, OMOP, the report, the result suites) can run side by side and a load that comes while they
read waits for them instead of failing, a :class:`~clms_etl.warehouse.load.Warehouse` on a DuckDB file
takes an advisory lock on ``<file>.lock`` before DuckDB opens the file (:func:`acquire`): shared for a
read-only opening, exclusive for a read-write one, waiting for it if another process holds the other.

The lock belongs to the process, not to a thread or a connection: DuckDB shares one database among a
process's connections, all in one mode. So every opening of the file in a process shares one lock
(counted, released with the last); a read-only opening in a process that has the file open read-write
shares that opening (it reads through it: a test or a notebook materialising a report beside its own
warehouse); a read-write opening while the process has it read-only cannot write, and is refused
(:class:`LockModeConflict`) instead of waiting for itself.

Why ``fcntl.flock`` and not ``filelock.ReadWriteLock``: that one pins a write lock to the thread that
took it and refuses another thread's opening, which DuckDB allows within a process. ``flock`` does
not make a waiting writer block new readers: a night's readers are a bounded set, the load waits for
the last of them.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # (not POSIX: DuckDB's own lock alone, the second comer fails as before)
    fcntl = None

log = logging.getLogger(__name__)


class LockModeConflict(RuntimeError):
    """The process has the file open read-only and asks to write it (DuckDB would refuse the opening)."""


@dataclass
class _Held:
    read_only: bool
    count: int = 0
    fd: int | None = None
    taken: threading.Event = field(default_factory=threading.Event)  # set once the lock is held (or failed)


_held: dict[Path, _Held] = {}
# Re-entrant: a connection's finaliser (garbage collection) may release a lock in the middle of an acquire.
# Never held while waiting for another process.
_guard = threading.RLock()


def lock_path(database: Path) -> Path:
    return database.with_name(f"{database.name}.lock")


def acquire(database: Path, *, read_only: bool) -> bool:
    """Hold ``database``'s lock in this process (shared when ``read_only``), waiting for another
    process's lock of the other mode to go; pair with :func:`release`. Returns whether DuckDB is to
    open the file read-only (``False`` for a read-only opening that joins this process's read-write one)."""
    if fcntl is None:
        return read_only
    key = Path(database).resolve()
    with _guard:
        held = _held.get(key)
        first = held is None
        if first:
            held = _held[key] = _Held(read_only)
        elif held.read_only and not read_only:
            raise LockModeConflict(f"{database} is already open read-only in this process: close it before "
                                   "opening it read-write")
        held.count += 1
    if not first:
        held.taken.wait()
        if held.fd is None:  # the first opener's wait ended in an error (an interrupt): so does this one
            raise LockModeConflict(f"{database}: this process's lock on it could not be taken")
        return held.read_only
    try:
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
    except BaseException:
        with _guard:
            if _held.get(key) is held:
                del _held[key]
        held.taken.set()
        raise
    held.fd = fd
    held.taken.set()
    return read_only


def opened_read_only(database: Path) -> bool | None:
    """How this process has ``database`` open: read-only (``True``), read-write, or not at all (``None``);
    another engine's connections to it in this process must use the same mode."""
    with _guard:
        held = _held.get(Path(database).resolve())
    return None if held is None else held.read_only


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
        if held.count > 0:
            return
        del _held[key]
    if held.fd is not None:
        os.close(held.fd)  # (closing the descriptor releases the lock)


def _forget_in_child() -> None:
    # A forked process (a Dagster step) does not hold its parent's openings: it closes its copies of
    # the descriptors, so that the lock goes when the parent releases it.
    global _guard
    _guard = threading.RLock()  # (another thread of the parent may have held it at the fork)
    for held in _held.values():
        if held.fd is not None:
            try:
                os.close(held.fd)
            except OSError:
                pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
