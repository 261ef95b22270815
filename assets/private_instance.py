"""A Dagster instance whose files only their owner can read, whichever process writes them, and
whose pool slots pass from one step to the next without Dagster's back-off.

The code location sets the umask of the processes that load it (assets/definitions.py), but the
webserver and the daemon of ``dagster dev`` / ``dg dev`` never load it, and they write too: the
instance's SQLite files, the event log of every run they queue or launch, the daemon's logs.
Every one of those processes opens the instance from ``dagster.yaml``, and Dagster imports the
instance class it names before it opens any storage, so the instance config names this one
(deploy/dagster.local.yaml, assets/demo.py)::

    instance_class:
      module: assets.private_instance
      class: OwnerOnlyInstance

A step waiting on a pool (the `warehouse` pool admits one DuckDB writer) asks the storage again
after an interval that grows from 1 to 15 s the longer it has waited. The slot freed by one load is
assigned to the next step in the queue at once, but sits unused until that step asks again: in a
40-centre night the slot was free for 71 s of the 194 s between the first load and the last
(bench/README.md, "Warm run workers"). Here a waiting step asks every :data:`POOL_POLL_S` seconds,
a few milliseconds of the storage's time each.

On PostgreSQL, Dagster creates a pool's limit row the first time a step claims the pool, by an INSERT
whose duplicate-key error it catches before an UPDATE in the same transaction (dagster#33552, open).
PostgreSQL has aborted that transaction, so whenever the row already exists the UPDATE fails and the
run with it: when two runs claim a new pool at once (the first night of a registry: one of 41
imports failed at 1,000,000 patients), and in every run after the configured ``default_limit``
changes. Here a claim that finds the row updates it instead (:func:`_initialise_pools_safely`).

Dagster's PostgreSQL storages open a new connection for every read or write (``NullPool``, so that
no process accumulates idle connections); only the webserver keeps one open
(``optimize_for_webserver``). A new connection is a new server process: about 4 ms of the server's
CPU. A 40-centre night opened about 9,000 of them, most during the imports, while the run workers
wrote their events and the waiting steps claimed their pool four times a second
(bench/README.md, "Session 15"). Here every process keeps one connection per storage open, as the
webserver does, without its statement timeout (:func:`_hold_storage_connections`).

Dagster's SQLite storages (one machine: deploy/dagster.local.yaml) do the same with files: every
read or write creates an engine, opens the file and closes it, and closing the last connection to a
WAL file checkpoints it. 3.4 CPU-ms an event (0.9 with the file kept open), and the import runs'
events and pool claims were 29 % of their sampled time in the 1,000,000-patient DuckDB night
(bench/README.md, "Session 18"). Here each process keeps its SQLite files open
(:func:`_hold_sqlite_files`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable

from clms_etl.files import DIR_MODE, private_process

# A process's storage connections: one kept open per storage, up to this many more while several
# threads use it (the daemon's), and none older than an hour (a server restart, a firewall's idle cut).
STORAGE_MAX_OVERFLOW = 10
STORAGE_POOL_RECYCLE_S = 3600

# Seconds between a waiting step's claims on its pool (Dagster's storages leave it to the executor's
# back-off: 1 s, growing to 15 s).
POOL_POLL_S = 0.25

# Importing this module is the first thing a process opening the instance does: from here on,
# whatever it creates under DAGSTER_HOME (runs.db, event logs, compute logs) is owner-only.
private_process()


class OwnerOnlyInstance(dg.DagsterInstance):
    """Dagster's instance, unchanged but for the umask of the process that opens it and the
    interval at which a step waiting on a pool claims it again (:data:`POOL_POLL_S`)."""

    def __init__(self, *args, **kwargs):
        private_process()  # again, should something have loosened it since the import
        super().__init__(*args, **kwargs)
        if self.is_persistent:  # DAGSTER_HOME itself, whoever created it
            os.chmod(self.root_directory, DIR_MODE)
        _hold_storage_connections(self)
        _hold_sqlite_files(self)
        _poll_pools_every(self.event_log_storage, POOL_POLL_S)
        _initialise_pools_safely(self.event_log_storage, self)

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str):
        return InstanceRef.config_defaults(base_dir)


def _hold_storage_connections(instance: dg.DagsterInstance) -> None:
    """On PostgreSQL storages, the webserver's connection pooling in every process: one connection per
    storage kept open (Dagster's own ``optimize_for_webserver``, no statement timeout). A forked child
    opens its own (the parent's sockets are never shared). SQLite storages are left as they are."""
    storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    if not any(type(s).__module__.startswith("dagster_postgres.") for s in storages if s is not None):
        return
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=STORAGE_POOL_RECYCLE_S,
                                    max_overflow=STORAGE_MAX_OVERFLOW)
    _POOLED_ENGINES.update(engine for s in storages if (engine := getattr(s, "_engine", None)) is not None)


# SQLAlchemy's rule for a pool inherited across fork: the child drops it without closing the parent's connections.
_POOLED_ENGINES: weakref.WeakSet = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [engine.dispose(close=False) for engine in list(_POOLED_ENGINES)])


# A process's SQLite files kept open: the index, runs and schedules files always, and the event logs of the
# last few runs it touched (one file per run: the daemon and the webserver read many).
SQLITE_HELD_RUN_FILES = 16


def _hold_sqlite_files(instance: dg.DagsterInstance) -> None:
    """On Dagster's SQLite storages, one connection per file kept open in each process instead of an
    engine created, a file opened and closed for every read or write (the index, the run and schedule
    files, and the event logs of the last :data:`SQLITE_HELD_RUN_FILES` runs). SQLite locks per transaction,
    so other processes' writes are unaffected; a forked child opens its own (``_POOLED_ENGINES``). Other
    storages are left as they are."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
        INDEX_SHARD_NAME, SQLITE_BUSY_TIMEOUT_SECONDS, SqliteEventLogStorage)
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
    from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage

    # Two sets: a process reading more runs than are held must not close and reopen the index with them.
    held, held_runs = _HeldFiles(), _HeldFiles(SQLITE_HELD_RUN_FILES)
    events = instance.event_log_storage
    if type(events) is SqliteEventLogStorage:
        def connect(shard: str):
            # Dagster's SqliteEventLogStorage._connect, its engine kept (the same lock, schema check, transaction)
            with events._db_lock:
                files = held if shard == INDEX_SHARD_NAME else held_runs
                engine = files.engine(events.conn_string_for_shard(shard),
                                      connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
                if shard not in events._initialized_dbs:
                    events._initdb(engine)
                    events._initialized_dbs.add(shard)
                with engine.connect() as conn, conn.begin():
                    yield conn

        events._connect = contextmanager(connect)
        wipe = events.wipe

        def wipe_and_close() -> None:
            held_runs.close_all()  # the run files are deleted: no connection may keep writing a deleted file
            wipe()

        events.wipe = wipe_and_close
    for storage in (instance.run_storage, instance.schedule_storage):
        if type(storage) in (SqliteRunStorage, SqliteScheduleStorage):
            storage.connect = _held_connect(held, storage._conn_string)


def _held_connect(held: "_HeldFiles", url: str):
    @contextmanager
    def connect():
        engine = held.engine(url)
        with engine.connect() as conn, conn.begin():
            yield conn

    return connect


class _HeldFiles:
    """SQLAlchemy engines by SQLite URL, one connection each, the least recently used closed beyond ``size``
    (``None``: all kept)."""

    def __init__(self, size: int | None = None):
        self.size, self.engines, self.lock = size, OrderedDict(), threading.Lock()

    def engine(self, url: str, **kwargs) -> sa.Engine:
        with self.lock:
            engine = self.engines.get(url)
            if engine is not None:
                self.engines.move_to_end(url)
                return engine
            engine = self.engines[url] = sa.create_engine(url, pool_size=1, **kwargs)
            _POOLED_ENGINES.add(engine)
            while self.size is not None and len(self.engines) > self.size:
                self.engines.popitem(last=False)[1].dispose()
            return engine

    def close_all(self) -> None:
        with self.lock:
            while self.engines:
                self.engines.popitem()[1].dispose()


def _poll_pools_every(storage, seconds: float) -> None:
    """A blocked claim returned by ``storage`` tells the executor to claim again in ``seconds``
    (``ConcurrencyClaimStatus.sleep_interval``, which the executor uses instead of its back-off)."""
    claim = storage.claim_concurrency_slot

    def claim_concurrency_slot(*args, **kwargs):
        status = claim(*args, **kwargs)
        return status if status.is_claimed else status.with_sleep_interval(seconds)

    storage.claim_concurrency_slot = claim_concurrency_slot


def _initialise_pools_safely(storage, instance: dg.DagsterInstance) -> None:
    """``storage.initialize_concurrency_limit_to_default`` without dagster#33552: Dagster's INSERT
    only where the pool has no limit row yet; where it has one (another run created it a moment
    ago, or the configured default changed), Dagster's own UPDATE and slot allocation, in a
    transaction of their own. A storage without SQL index tables is left as it is."""
    if not hasattr(storage, "index_transaction"):
        return
    initialise = storage.initialize_concurrency_limit_to_default

    def has_limit(key: str) -> bool:
        return any(pool.name == key for pool in storage.get_pool_limits())

    def initialize_concurrency_limit_to_default(concurrency_key: str) -> bool:
        default = instance.global_op_concurrency_default_limit
        if default is None or not storage.has_concurrency_limits_table or not has_limit(concurrency_key):
            try:
                return initialise(concurrency_key)
            except sa.exc.DBAPIError:
                if default is None or not has_limit(concurrency_key):
                    raise  # not a row created meanwhile by another run: a real failure
        with storage.index_transaction() as conn:
            conn.execute(ConcurrencyLimitsTable.update()
                         .where(ConcurrencyLimitsTable.c.concurrency_key == concurrency_key,
                                ConcurrencyLimitsTable.c.limit != default)
                         .values(limit=default))
            storage._allocate_concurrency_slots(conn, concurrency_key, default)
        return True

    storage.initialize_concurrency_limit_to_default = initialize_concurrency_limit_to_default
