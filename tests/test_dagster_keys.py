"""The code location and the pseudonym key: another key or no key fails the run at once, without
retries, and leaves the warehouse as it was."""

from __future__ import annotations

import shutil

import dagster as dg
import duckdb

from assets.definitions import defs
from clms_etl import keys
from tests.dagster_resources import resources_for
from tests.warehouse.helpers import OTHER_KEY


def _job(drop, tmp):
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                          resources=resources_for(drop, tmp)).resolve_job_def("import_centre")


def _rows(db) -> tuple[int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return (con.execute("select count(*) from patient").fetchall()[0][0],
                con.execute("select count(*) from delivery").fetchall()[0][0])
    finally:
        con.close()


def _failure(result, step: str) -> str:
    events = [e for e in result.all_events if e.step_key == step]
    assert "STEP_UP_FOR_RETRY" not in {e.event_type_value for e in events}
    failure = next(e for e in events if e.event_type_value == "STEP_FAILURE")
    return failure.event_specific_data.error.to_string()


def test_a_night_with_another_key_fails_at_once_and_changes_nothing(twin_drop, tmp_path, monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    assert _job(twin_drop, tmp_path).execute_in_process(partition_key="nice", instance=instance).success
    before = _rows(tmp_path / "warehouse.duckdb")
    # the next night's delivery, read with another key (a changed secret, a wrong file mounted)
    nextday = tmp_path / "nextday"
    shutil.copytree(twin_drop / "nice" / "2026-11-23", nextday / "nice" / "2026-11-24")
    monkeypatch.setenv(keys.ENV_KEY, OTHER_KEY.decode())
    result = _job(nextday, tmp_path).execute_in_process(partition_key="nice", instance=instance, raise_on_error=False)
    assert not result.success
    message = _failure(result, "centre_warehouse")  # the step that opens the warehouse
    assert "another key than the warehouse's" in message and "clms-etl warehouse rekey" in message
    assert OTHER_KEY.decode() not in message
    assert _rows(tmp_path / "warehouse.duckdb") == before


def test_no_key_fails_the_import_at_once_outside_the_demo(twin_drop, tmp_path, monkeypatch):
    monkeypatch.delenv(keys.ENV_KEY)
    result = _job(twin_drop, tmp_path).execute_in_process(partition_key="nice", instance=dg.DagsterInstance.ephemeral(),
                                                          raise_on_error=False)
    assert not result.success
    assert "without a pseudonym key" in _failure(result, "centre_import")
    monkeypatch.setenv(keys.ENV_DEMO, "1")  # the demo's opt-in: the public demo key, DuckDB only
    assert _job(twin_drop, tmp_path).execute_in_process(partition_key="nice",
                                                        instance=dg.DagsterInstance.ephemeral()).success
