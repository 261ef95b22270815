"""Benchmark: what one Dagster storage call costs on the one-machine instance (SQLite, deploy/dagster.local.yaml).

    .venv/bin/python -m bench.bench_dagster_storage [--calls N]

In a new ``DAGSTER_HOME`` holding ``deploy/dagster.local.yaml``: ``N`` events written to one run's event log
(``store_event``, what a run does for each of its events) and ``N`` pool claims each followed by a read of the
runs (what a run waiting for the ``warehouse`` pool does four times a second), CPU milliseconds per call; the
floor is SQLite itself (``sqlite3``, one connection, WAL): the same event's JSON inserted and committed ``N``
times. Run it from an older tree (``PYTHONPATH``) to compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "bench000-0000-0000-0000-000000000001"


def _cpu_ms_each(calls: int, call) -> float:
    start = time.process_time()
    for i in range(calls):
        call(i)
    return (time.process_time() - start) / calls * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    calls = parser.parse_args(argv).calls
    home = Path(tempfile.mkdtemp(prefix="bench-dagster-storage-"))
    try:
        shutil.copy(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
        import dagster as dg
        from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
        from dagster._core.events.log import EventLogEntry

        def entry(i: int) -> EventLogEntry:
            return EventLogEntry(error_info=None, level=20, user_message=f"event {i}", run_id=RUN_ID,
                                 timestamp=time.time(), dagster_event=DagsterEvent(
                                     DagsterEventType.ENGINE_EVENT.value, "import_centre",
                                     event_specific_data=EngineEventData({})))

        with dg.DagsterInstance.get() as instance:
            storage = instance.event_log_storage
            storage.initialize_concurrency_limit_to_default("warehouse")
            storage.store_event(entry(-1))  # the run's file created: not what a call costs
            event_ms = _cpu_ms_each(calls, lambda i: storage.store_event(entry(i)))

            def claim(i: int) -> None:
                storage.claim_concurrency_slot("warehouse", f"run-{i % 3}", "centre_warehouse", 0)
                instance.get_runs(limit=1)

            claim_ms = _cpu_ms_each(calls, claim)
            stored = len(storage.get_records_for_run(RUN_ID, limit=calls + 10).records)
        from dagster._serdes import serialize_value

        body = serialize_value(entry(0))
        floor_db = sqlite3.connect(home / "floor.db")
        floor_db.execute("PRAGMA journal_mode=WAL")
        floor_db.execute("CREATE TABLE event_logs (id INTEGER PRIMARY KEY, run_id TEXT, event TEXT)")

        def insert(i: int) -> None:
            floor_db.execute("INSERT INTO event_logs (run_id, event) VALUES (?, ?)", (RUN_ID, body))
            floor_db.commit()

        floor_ms = _cpu_ms_each(calls, insert)
        floor_db.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"Dagster storage on SQLite ({type(instance).__name__}), {calls} calls each, CPU ms per call")
    print(f"  floor: sqlite3 insert + commit     {floor_ms:6.2f}")
    print(f"  store_event                        {event_ms:6.2f}   ratio {event_ms / floor_ms:5.1f}  ({stored} events read back)")
    print(f"  pool claim + get_runs              {claim_ms:6.2f}   ratio {claim_ms / floor_ms:5.1f}")


if __name__ == "__main__":
    main()
