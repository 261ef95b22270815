"""Issue #12, the nightly survives data it did not write.

``clms-etl run`` on a drop folder with one centre, five runs started together on a fresh
DAGSTER_HOME, a run killed while it holds the ``warehouse`` pool slot, delivery folders that are
not real past dates, ``clms-etl warehouse rollback``, and the shrinkage guard on a truncated export.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import openpyxl
import pytest
import yaml
from typer.testing import CliRunner

from assets import ingest
from assets.automation import drop_folder_sensor
from assets.resources import DropFolder
from clms_etl.cli import app
from clms_etl.deliveries import delivery_dates, latest_delivery, refused_folders
from tests.dagster_resources import resources_for
from tests.test_dagster import DATE, INGEST
from tests.test_dagster_platform import ROOT, TWIN_PATIENTS, patients_by_centre

CLI = Path(sys.executable).parent / "clms-etl"


def drop_of(twin_drop: Path, root: Path, *centres: str) -> Path:
    """A drop folder holding only these centres' twin deliveries."""
    for centre in centres:
        shutil.copytree(twin_drop / centre, root / centre)
    return root


def env_for(tmp: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CLMS_OUTPUTS=str(tmp / "outputs"), CLMS_WAREHOUSE_URL=f"duckdb:///{tmp / 'warehouse.duckdb'}",
               CLMS_HANDOFF=str(tmp / "handoff"), DAGSTER_HOME=str(home), PYTHONWARNINGS="ignore",
               DAGSTER_DISABLE_TELEMETRY="1")
    for name in ("CLMS_DEPLOYMENT", "CLMS_INCOMING"):
        env.pop(name, None)
    return env


# -- clms-etl run -------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_with_one_centre_delivered_imports_it_and_reports_the_others_skipped(twin_drop, tmp_path):
    drop = drop_of(twin_drop, tmp_path / "drop", "lyon")
    home = tmp_path / "dagster_home"  # does not exist yet: the command creates it
    # --no-refresh: the imports are the subject here (the analyses on one centre are another matter)
    done = subprocess.run([str(CLI), "run", "--incoming", str(drop), "--no-refresh"], cwd=tmp_path,
                          env=env_for(tmp_path, home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split()[0]: line for line in done.stderr.splitlines() if line.strip()}
    assert lines["lyon"].split()[1:4] == ["ok", "loaded", "delivery"]
    for centre in ("nice", "montpellier", "nimes", "molecular"):
        assert lines[centre].split()[1] == "skipped" and f"no delivery in {drop / centre}" in lines[centre]
    assert "No delivery" not in done.stderr
    assert patients_by_centre(tmp_path / "warehouse.duckdb") == {"lyon": TWIN_PATIENTS["lyon"]}
    with dg.DagsterInstance.from_config(str(home)) as instance:  # the run is in the home's instance, for the UI
        [record] = instance.get_run_records(dg.RunsFilter(job_name="import_centre"))
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert record.dagster_run.tags["dagster/partition"] == "lyon"

    # a real failure, and only that, makes the exit code non-zero: one line saying why
    shutil.copytree(twin_drop / "nimes" / DATE.isoformat(), drop / "nimes" / "2062-11-23")
    again = subprocess.run([str(CLI), "run", "--incoming", str(drop), "--no-refresh"], cwd=tmp_path,
                           env=env_for(tmp_path, home), capture_output=True, text=True, timeout=600)
    assert again.returncode == 1
    lines = {line.split()[0]: line for line in again.stderr.splitlines() if line.strip()}
    assert lines["lyon"].split()[1:3] == ["ok", "unchanged"]
    assert lines["nimes"].split()[1] == "failed" and "« nimes/2062-11-23 » refusé" in lines["nimes"]
    assert lines["1"] == "1 failed: nimes"


def test_run_with_a_weak_key_says_so_once_and_starts_nothing(twin_drop, tmp_path):
    """The key is the operator's setting, not a centre's data: one line saying what is wrong and how to fix
    it, before any run starts (each centre's run and the refresh used to fail on it, each with Dagster's
    stack trace: 424 lines for five centres)."""
    drop = drop_of(twin_drop, tmp_path / "drop", "lyon", "nice")
    home = tmp_path / "dagster_home"
    env = env_for(tmp_path, home) | {"CLMS_PSEUDONYM_KEY": "short"}
    for name in ("CLMS_PSEUDONYM_KEY_FILE", "CLMS_DEMO"):
        env.pop(name, None)
    done = subprocess.run([str(CLI), "run", "--incoming", str(drop)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert output.count("the pseudonym key is too weak") == 1 and "secrets.token_urlsafe(32)" in output, output[-3000:]
    assert "Traceback" not in output and "Stack Trace" not in output
    assert not (tmp_path / "warehouse.duckdb").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_five_runs_launched_together_on_a_fresh_dagster_home_all_succeed(twin_drop, tmp_path):
    home = tmp_path / "dagster_home"
    env = env_for(tmp_path, home)
    centres = ["nice", "montpellier", "lyon", "nimes", "molecular"]
    runs = {c: subprocess.Popen([str(CLI), "run", "--incoming", str(drop_of(twin_drop, tmp_path / c, c)),
                                 "--no-refresh"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
            for c in centres}
    try:
        outputs = {c: p.communicate(timeout=600) for c, p in runs.items()}
    finally:
        for p in runs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    for centre, process in runs.items():
        assert process.returncode == 0, (centre, outputs[centre][1][-3000:])
        assert "alembic" not in outputs[centre][1]
    assert patients_by_centre(tmp_path / "warehouse.duckdb") == TWIN_PATIENTS
    with dg.DagsterInstance.from_config(str(home)) as instance:  # and the home stays usable
        records = instance.get_run_records(dg.RunsFilter(job_name="import_centre"))
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in records) == sorted(centres)
        assert {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}


# -- a run killed while it holds the warehouse pool slot --------------------------------------------

HOLD_THE_WAREHOUSE_SLOT = """
import sys, time
import dagster as dg
from assets.instance import ensure_instance
from assets.run import process_tags

@dg.op(pool="warehouse")
def load(context):
    print("holding", flush=True)
    time.sleep(600)

@dg.job
def hold():
    load()

hold.execute_in_process(instance=ensure_instance(), run_id=sys.argv[1], tags=process_tags())
"""


@pytest.mark.slow
def test_a_run_killed_while_holding_the_warehouse_slot_is_failed_and_its_slot_freed(tmp_path):
    from assets.automation import dead_runs_sensor
    from assets.run import fail_dead_runs

    home = tmp_path / "dagster_home"  # created by the holder's ensure_instance
    run_id = "0f0e0d0c-0000-4000-8000-00000000dead"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_WAREHOUSE_SLOT, run_id], cwd=ROOT,
                              env=env_for(tmp_path, home), stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots[0].run_id == run_id
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(30)
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # Dagster alone: forever
            # the daemon's sensor (every minute), as the next `clms-etl run` does first
            tick = dead_runs_sensor(dg.build_sensor_context(instance=instance))
            assert tick.skip_message == "1 dead run(s) failed"
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
            info = instance.event_log_storage.get_concurrency_info("warehouse")
            assert info.claimed_slots == [] and info.slot_count == 1
            assert fail_dead_runs(instance) == []
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(30)


def test_instance_configurations_turn_run_monitoring_on_and_free_dead_runs_slots():
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config_schema

    for name in ("dagster.local.yaml", "dagster.production.yaml"):
        config = yaml.safe_load((ROOT / "deploy" / name).read_text())
        assert validate_config(dagster_instance_config_schema(), config).success, name
        monitoring = config["run_monitoring"]
        assert monitoring["enabled"] is True, name
        # a finished (failed) run's slots are freed within minutes, checked every minute
        assert 0 < monitoring["free_slots_after_run_end_seconds"] <= 300, name
        assert monitoring["poll_interval_seconds"] <= 120, name


def test_a_new_dagster_home_gets_the_local_configuration_with_run_monitoring(tmp_path, monkeypatch):
    from assets.instance import ensure_instance

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    with ensure_instance() as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    assert (tmp_path / "home" / "dagster.yaml").read_text() == (ROOT / "deploy" / "dagster.local.yaml").read_text()


# -- delivery folders that are not real past dates ---------------------------------------------------


def test_future_and_impossible_delivery_folders_are_refused_with_a_message_naming_them(twin_drop, tmp_path):
    drop = drop_of(twin_drop, tmp_path / "drop", "lyon", "nimes")
    shutil.copytree(drop / "lyon" / DATE.isoformat(), drop / "lyon" / "2062-11-23")
    (drop / "nimes" / DATE.isoformat()).rename(drop / "nimes" / "2026-02-30")
    today = dt.date(2026, 12, 4)

    assert delivery_dates(drop, "lyon", today) == [DATE]
    assert latest_delivery(drop, "lyon", today).date == DATE  # never the future one
    assert latest_delivery(drop, "nimes", today) is None
    [future] = refused_folders(drop, "lyon", today)
    assert "« lyon/2062-11-23 » refusé" in future.message and "dans le futur" in future.message
    [impossible] = refused_folders(drop, "nimes", today)
    assert "« nimes/2026-02-30 » refusé" in impossible.message and "pas une date réelle" in impossible.message

    # the sensor requests a run of each of the two centres, once, and logs the refusal
    res = {"drop_folder": DropFolder(path=str(drop))}
    first = drop_folder_sensor(dg.build_sensor_context(resources=res))
    assert sorted(r.run_key for r in first.run_requests) == ["lyon:refused:2062-11-23", "nimes:refused:2026-02-30"]
    assert drop_folder_sensor(dg.build_sensor_context(cursor=first.cursor, resources=res)).run_requests == []

    # that run fails naming the folder, loads nothing, and the centre's query list says why
    for centre, folder in (("lyon", "2062-11-23"), ("nimes", "2026-02-30")):
        result = dg.materialize(INGEST, partition_key=centre, resources=resources_for(drop, tmp_path),
                                instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert f"« {centre}/{folder} » refusé" in failure.event_specific_data.user_failure_data.description
        query_list = Path(failure.event_specific_data.user_failure_data.metadata["query_list"].path)
        cells = [str(c) for row in openpyxl.load_workbook(query_list)["Requêtes"].iter_rows(values_only=True)
                 for c in row if c]
        assert any(f"« {centre}/{folder} » refusé" in c for c in cells)
    assert not (tmp_path / "warehouse.duckdb").exists() or patients_by_centre(tmp_path / "warehouse.duckdb") == {}


# -- rollback -------------------------------------------------------------------------------------


def test_rollback_restores_the_previous_delivery_and_moves_the_newer_folder_aside(twin_drop, tmp_path, monkeypatch):
    from clms_etl.centres import load_registry
    from clms_etl.keys import DEMO_KEY
    from clms_etl.centre_import import read_and_validate
    from clms_etl.warehouse.load import Warehouse

    drop = drop_of(twin_drop, tmp_path / "drop", "lyon")
    db = tmp_path / "warehouse.duckdb"
    # before the fix, a folder dated 2062 was loaded; every real delivery was then refused as older
    future = drop / "lyon" / "2062-11-23"
    shutil.copytree(drop / "lyon" / DATE.isoformat(), future)
    delivery = latest_delivery(drop, "lyon", today=dt.date(2062, 12, 31))
    with Warehouse(f"duckdb:///{db}") as wh:
        wh.load_delivery("lyon", delivery.date, [delivery.path / n for n, _ in delivery.files],
                         read_and_validate(load_registry()["lyon"], delivery, DEMO_KEY).validated,
                         expectations=False)
        assert wh.current_deliveries()["delivery_date"].to_list() == [dt.date(2062, 11, 23)]

    monkeypatch.setenv("CLMS_OUTPUTS", str(tmp_path / "outputs"))
    result = CliRunner().invoke(app, ["warehouse", "rollback", "lyon", "--incoming", str(drop),
                                      "--url", f"duckdb:///{db}"])
    assert result.exit_code == 0, result.output
    assert "replaced by the delivery of 2026-11-23" in result.output
    with Warehouse(f"duckdb:///{db}") as wh:
        assert wh.current_deliveries()["delivery_date"].to_list() == [DATE]
        assert wh.read_sql("select count(*) as n from delivery where centre = 'lyon'")["n"][0] == 2  # audit kept
    assert patients_by_centre(db) == {"lyon": TWIN_PATIENTS["lyon"]}
    assert not future.exists() and (drop / "lyon" / "_rolled_back" / "2062-11-23").is_dir()  # moved, not deleted
    assert refused_folders(drop, "lyon") == []  # the nightly is unblocked

    # the next import of the centre goes through again
    again = dg.materialize(INGEST, partition_key="lyon", resources=resources_for(drop, tmp_path),
                           instance=dg.DagsterInstance.ephemeral())
    assert again.success
    # nothing older left to go back to: refused, warehouse unchanged
    refused = CliRunner().invoke(app, ["warehouse", "rollback", "lyon", "--incoming", str(drop),
                                       "--url", f"duckdb:///{db}"])
    assert refused.exit_code == 1 and "no delivery folder dated before 2026-11-23" in refused.output
    assert patients_by_centre(db) == {"lyon": TWIN_PATIENTS["lyon"]}


# -- shrinkage guard --------------------------------------------------------------------------------


def test_a_half_truncated_export_is_held_by_the_shrinkage_guard_and_lands_when_accepted(twin_drop, tmp_path):
    drop = drop_of(twin_drop, tmp_path / "drop", "montpellier")
    instance = dg.DagsterInstance.ephemeral()
    res = resources_for(drop, tmp_path)
    assert dg.materialize(INGEST, partition_key="montpellier", resources=res, instance=instance).success
    assert patients_by_centre(tmp_path / "warehouse.duckdb") == {"montpellier": 21}

    # the next night's export is cut cleanly after half its records (header + 10 of 21 patients)
    [source] = (drop / "montpellier" / DATE.isoformat()).iterdir()
    lines = source.read_bytes().split(b"\r\n")
    truncated = drop / "montpellier" / "2026-11-24" / source.name
    truncated.parent.mkdir()
    truncated.write_bytes(b"\r\n".join(lines[:11]) + b"\r\n")

    held = dg.materialize(INGEST, partition_key="montpellier", resources=res, instance=instance, raise_on_error=False)
    assert not held.success
    checks = {e.check_name: e for e in held.get_asset_check_evaluations()}
    assert checks["validation_gate"].passed and checks["row_accounting"].passed  # nothing wrong row by row
    guard = checks["shrinkage_guard"]
    assert not guard.passed
    assert guard.metadata["rows_in_warehouse"].value == 21 and guard.metadata["rows_removed"].value == 11
    assert "removes 11 of the 21 patient rows" in guard.description and "held" in guard.description
    assert "centre_warehouse" not in {e.asset_key.to_user_string() for e in held.get_asset_materialization_events()}
    assert patients_by_centre(tmp_path / "warehouse.duckdb") == {"montpellier": 21}  # nothing wiped

    accepted = dg.materialize(INGEST, partition_key="montpellier", resources=res, instance=instance,
                              tags={ingest.ACCEPT_SHRINKAGE_TAG: "true"})
    assert accepted.success
    [guard] = [e for e in accepted.get_asset_check_evaluations() if e.check_name == "shrinkage_guard"]
    assert guard.passed and guard.metadata["accepted_by_tag"].value is True
    assert patients_by_centre(tmp_path / "warehouse.duckdb") == {"montpellier": 10}
