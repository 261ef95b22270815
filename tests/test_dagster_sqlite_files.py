"""One machine's Dagster storage (SQLite, deploy/dagster.local.yaml) keeps its files open in each process
(assets/private_instance.py, ``_hold_sqlite_files``).

Found by py-spy on the 1,000,000-patient DuckDB night (bench/README.md, "Session 18"): Dagster's SQLite
storages created an engine, opened the file and closed it for every read and write, and closing the
last connection to a WAL file checkpoints it. The import runs' events and pool claims (four a second
while a run waits for the ``warehouse`` pool) were 29 % of their sampled time.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
POOL = "warehouse"


@pytest.fixture
def local_instance(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def sqlite_opened():
    """How many SQLite connections were opened while the test ran."""
    opened = []

    def count(dbapi_connection, record):
        opened.append(Path(dbapi_connection.execute("PRAGMA database_list").fetchone()[2]).name)

    sa.event.listen(sa.pool.Pool, "connect", count)
    yield opened
    sa.event.remove(sa.pool.Pool, "connect", count)


def _store_events(instance: dg.DagsterInstance, run_id: str, count: int) -> None:
    from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
    from dagster._core.events.log import EventLogEntry

    for i in range(count):
        instance.event_log_storage.store_event(EventLogEntry(
            error_info=None, level=20, user_message=f"event {i}", run_id=run_id, timestamp=time.time(),
            dagster_event=DagsterEvent(DagsterEventType.ENGINE_EVENT.value, "import_centre",
                                       event_specific_data=EngineEventData({}))))


def _events(instance: dg.DagsterInstance, run_id: str) -> int:
    return len(instance.event_log_storage.get_records_for_run(run_id, limit=10_000).records)


RUN_A, RUN_B = "aaaaaaaa-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002"


def test_a_process_keeps_its_sqlite_files_open(local_instance, sqlite_opened):
    storage = local_instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(POOL)

    def what_a_run_does(attempt: int) -> None:  # read runs, write and read events, claim its pool
        local_instance.get_runs(limit=1)
        _store_events(local_instance, RUN_A, 1)
        local_instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="probe"))
        local_instance.get_latest_materialization_event(dg.AssetKey("probe"))
        storage.claim_concurrency_slot(POOL, f"run-{attempt}", "centre_warehouse", 0)

    what_a_run_does(0)  # creates the run's and the runless events' files
    created = len(sqlite_opened)
    for attempt in range(1, 20):
        what_a_run_does(attempt)
    assert _events(local_instance, RUN_A) == 20
    assert sqlite_opened[created:] == [], f"SQLite files opened again for 95 storage calls: {sqlite_opened[created:]}"


def test_the_index_and_runs_files_stay_open_while_many_runs_are_read(local_instance, sqlite_opened):
    from assets.private_instance import SQLITE_HELD_RUN_FILES

    run_ids = [f"{i:08d}-0000-0000-0000-000000000000" for i in range(SQLITE_HELD_RUN_FILES * 2)]
    for run_id in run_ids:
        _store_events(local_instance, run_id, 1)
    local_instance.get_runs(limit=1)
    local_instance.get_latest_materialization_event(dg.AssetKey("probe"))  # the index opened once
    opened = len(sqlite_opened)
    for _ in range(2):  # as the webserver reads a page of runs: each run's events, then the runs and the index
        assert [_events(local_instance, run_id) for run_id in run_ids] == [1] * len(run_ids)
        local_instance.get_runs(limit=1)
        local_instance.get_latest_materialization_event(dg.AssetKey("probe"))
    reopened = [name for name in sqlite_opened[opened:] if name in ("index.db", "runs.db")]
    assert reopened == [], f"the index and runs files were closed and opened again: {reopened}"
    # and the run files stay bounded: only the last runs' files are open
    assert len([name for name in sqlite_opened[opened:] if name not in ("index.db", "runs.db")]) == 2 * len(run_ids)


def test_threads_of_a_process_share_its_sqlite_files_safely(local_instance):
    errors = []

    def work(run_id: str) -> None:
        try:
            for _ in range(25):
                _store_events(local_instance, run_id, 1)
                local_instance.get_runs(limit=1)
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"{i}{RUN_A[1:]}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert [_events(local_instance, f"{i}{RUN_A[1:]}") for i in range(4)] == [25] * 4


def test_a_forked_child_opens_its_own_sqlite_files(local_instance):
    _store_events(local_instance, RUN_A, 3)  # the parent's files are open now
    pid = os.fork()
    if pid == 0:  # the child: it must not write through the parent's connections
        status = 1
        try:
            inherited = sum(engine.pool.checkedin() for engine in _held_engines())
            _store_events(local_instance, RUN_B, 5)
            status = 0 if inherited == 0 and _events(local_instance, RUN_B) == 5 else 2
        finally:
            os._exit(status)
    _store_events(local_instance, RUN_A, 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child used its parent's SQLite connections"
    assert (_events(local_instance, RUN_A), _events(local_instance, RUN_B)) == (6, 5)


def _held_engines():
    from assets.private_instance import _POOLED_ENGINES

    return [engine for engine in list(_POOLED_ENGINES) if engine.dialect.name == "sqlite"]


def test_wiping_the_event_log_closes_the_files_it_deletes(local_instance):
    _store_events(local_instance, RUN_A, 4)
    local_instance.event_log_storage.wipe()
    _store_events(local_instance, RUN_A, 2)
    assert _events(local_instance, RUN_A) == 2
    assert Path(local_instance.event_log_storage.path_for_shard(RUN_A)).exists()
