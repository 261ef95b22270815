"""The Dagster code location: loads, imports a centre, gates bad deliveries, watches the drop folder."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb

from assets import ingest
from assets.automation import drop_folder_sensor
from assets.definitions import defs
from assets.resources import DropFolder
from clms_etl.synth.generate import generate
from tests.dagster_resources import resources_for

DATE = dt.date(2026, 11, 23)
INGEST = [ingest.centre_import, ingest.centre_warehouse, ingest.validation_gate, ingest.row_accounting]


# twin_drop (the synthetic twin's drop folder, delivered on DATE): tests/conftest.py


resources = resources_for


def patients_by_centre(tmp: Path) -> dict[str, int]:
    con = duckdb.connect(str(tmp / "warehouse.duckdb"), read_only=True)
    try:
        return dict(con.sql("select centre, count(*) from patient group by centre").fetchall())
    finally:
        con.close()


def test_definitions_load_with_every_centre_as_a_partition():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} >= {"centre_import", "centre_warehouse"}
    partitions = ingest.centre_import.partitions_def.get_partition_keys()
    assert partitions == ["nice", "montpellier", "lyon", "nimes", "molecular"]


def test_one_partition_imports_only_its_centre(twin_drop, tmp_path):
    result = dg.materialize(INGEST, partition_key="montpellier", resources=resources(twin_drop, tmp_path),
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert patients_by_centre(tmp_path) == {"montpellier": 21}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"validation_gate": True, "row_accounting": True, "shrinkage_guard": True}
    assert (tmp_path / "outputs" / "queries" / f"requetes_montpellier_{DATE}.xlsx").is_file()


def test_failing_blocking_check_stops_the_warehouse_load(twin_drop, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    generate(bad, seed=1, defect_rate=0.5, delivery_date=DATE)
    monkeypatch.setattr(ingest, "MAX_QUARANTINED_SHARE", 0.0)  # any quarantined patient closes the gate
    result = dg.materialize(INGEST, partition_key="nice", resources=resources(bad, tmp_path),
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["validation_gate"] is False
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "centre_import" in materialized and "centre_warehouse" not in materialized
    assert not (tmp_path / "warehouse.duckdb").exists() or patients_by_centre(tmp_path) == {}


def test_unreadable_delivery_fails_its_partition_and_leaves_the_warehouse_intact(twin_drop, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    ok = dg.materialize(INGEST, partition_key="nice", resources=resources(twin_drop, tmp_path), instance=instance)
    assert ok.success
    broken = tmp_path / "broken"
    shutil.copytree(twin_drop / "nice", broken / "nice")
    later = broken / "nice" / "2026-11-24"
    later.mkdir(parents=True)
    (later / "export_dermato_nice.xlsx").write_bytes(b"PK\x03\x04 truncated")
    result = dg.materialize(INGEST, partition_key="nice", resources=resources(broken, tmp_path),
                            instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "export_dermato_nice.xlsx" in failure.event_specific_data.error.message
    assert patients_by_centre(tmp_path) == {"nice": 24}


def test_sensor_requests_each_new_delivery_once(twin_drop, tmp_path):
    drop = tmp_path / "drop"
    shutil.copytree(twin_drop, drop)
    res = {"drop_folder": DropFolder(path=str(drop))}
    first = drop_folder_sensor(dg.build_sensor_context(resources=res))
    keys = sorted(r.partition_key for r in first.run_requests)
    assert keys == sorted(["nice", "montpellier", "lyon", "nimes", "molecular"])
    assert len({r.run_key for r in first.run_requests}) == 5
    again = drop_folder_sensor(dg.build_sensor_context(cursor=first.cursor, resources=res))
    assert again.run_requests == []
    shutil.copytree(drop / "lyon" / DATE.isoformat(), drop / "lyon" / "2026-11-24")
    (drop / "lyon" / "2026-11-24" / "CLMSLYON_DATA_2026-11-23.csv").rename(
        drop / "lyon" / "2026-11-24" / "CLMSLYON_DATA_2026-11-24.csv")
    third = drop_folder_sensor(dg.build_sensor_context(cursor=again.cursor, resources=res))
    assert [r.partition_key for r in third.run_requests] == ["lyon"]
    assert "2026-11-24" in third.run_requests[0].run_key
