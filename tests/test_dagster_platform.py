"""The Dagster platform around the code location.

The project's CLIs (``dg check defs`` / ``dg list defs`` / ``dg scaffold defs`` / ``dg dev``, with
no warning), the whole asset graph on the synthetic twin, two centres' runs launched together
against one DuckDB file (the ``warehouse`` pool), transient vs. permanent warehouse faults, the
multiprocess executor, the nightly schedule, the webserver's GraphQL API, the Dagster instance
examples, and the plot in the materialisation metadata.

The slow tests (marked ``slow``) stay in the default run: ``-m "not slow"`` skips them locally.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from assets import ingest
from assets.metadata import bar_chart, table_metadata
from assets.automation import nightly_schedule
from assets.definitions import defs
from assets.partitions import REGISTRY
from assets.resources import local_resources
from tests.dagster_resources import resources_for

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CENTRES = list(REGISTRY)  # nice, montpellier, lyon, nimes, molecular (the laboratory: no patient)
TWIN_PATIENTS = {"nice": 24, "montpellier": 21, "lyon": 19, "nimes": 15}  # 79 in all
POOL = "warehouse"
# the import run's steps that open the warehouse (pool `warehouse`): centre_warehouse, whose
# shrinkage guard reads the centre's current rows inside the load's transaction
OPENS_THE_WAREHOUSE = ("centre_warehouse",)
# what the nightly refresh materialises (the warehouse and everything downstream of it)
NIGHTLY_ASSETS = {"warehouse", "quality_dashboard", "survival_analysis", "molecular_summary", "cbioportal_study",
                  "clinician_report", "analysis_exports", "omop_cdm"}
ALL_ASSETS = {"centre_import", "centre_warehouse", *NIGHTLY_ASSETS}


# -- helpers ----------------------------------------------------------------------------------


resources = resources_for


def platform_defs(res: dict, executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    """The code location's definitions (same assets, checks, jobs, schedule, sensor) on other resources."""
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                          schedules=defs.schedules, sensors=defs.sensors, resources=res, executor=executor)


# The step processes are forked from a server that imported these once (the default, `spawn`,
# starts each step in a fresh interpreter: same result, measured 1.6x slower here).
PRELOAD = [__name__, "clms_etl.centre_import", "clms_etl.validate", "clms_etl.warehouse.load", "matplotlib.figure"]


def import_job_from_env() -> dg.JobDefinition:
    """Reconstructable target for the multiprocess executor: every step process imports this
    module and rebuilds the job, its resources read from the CLMS_* variables it inherited."""
    executor = dg.multiprocess_executor.configured(
        {"max_concurrent": 2, "start_method": {"forkserver": {"preload_modules": PRELOAD}}})
    return platform_defs(local_resources(), executor=executor).resolve_job_def("import_centre")


def dagster_home(tmp: Path) -> Path:
    """A DAGSTER_HOME with the project's one-machine instance config (SQLite, `warehouse` pool = 1)."""
    home = tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    # Create its SQLite storage once, here: processes or threads creating it together race
    # ("table alembic_version already exists", "table run_tags already exists").
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.has_run("storage-ready")
        instance.all_instigator_state()
        instance.event_log_storage.get_concurrency_keys()
    return home


def clms_env(tmp: Path, drop: Path, home: Path | None = None) -> dict[str, str]:
    """Environment of a subprocess: the code location's paths under ``tmp`` (never data/)."""
    env = dict(os.environ)
    env.update(CLMS_INCOMING=str(drop), CLMS_OUTPUTS=str(tmp / "outputs"),
               CLMS_WAREHOUSE_URL=f"duckdb:///{tmp / 'warehouse.duckdb'}", CLMS_HANDOFF=str(tmp / "handoff"),
               DAGSTER_HOME=str(home or dagster_home(tmp)), VIRTUAL_ENV=str(BIN.parent),
               PYTHONWARNINGS="ignore", DAGSTER_DISABLE_TELEMETRY="1")
    env.pop("CLMS_DEPLOYMENT", None)
    return env


def patients_by_centre(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.sql("select centre, count(*) from patient group by centre").fetchall())
    finally:
        con.close()


def step_events(instance: dg.DagsterInstance, run_id: str, step_key: str) -> list[dg.EventLogEntry]:
    return [e for e in instance.all_logs(run_id) if e.step_key == step_key and e.dagster_event is not None]


def step_interval(instance: dg.DagsterInstance, run_id: str, step_key: str) -> tuple[float, float]:
    events = {e.dagster_event.event_type_value: e.timestamp for e in step_events(instance, run_id, step_key)}
    return events["STEP_START"], events["STEP_SUCCESS"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it spawned."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


# -- the project's CLIs -------------------------------------------------------------------------


def dg_cli() -> Path:
    cli = BIN / "dg"
    if not cli.exists():
        pytest.skip(f"the dg executable (dagster-dg-cli) is not installed next to {sys.executable}")
    return cli


# Dagster's log WARNING, a deprecated or superseded command or configuration, a dg warning
# ("To suppress this warning, ...")
WARNING_LINE = re.compile(r"warning|deprecat|supersed", re.IGNORECASE)


def warnings_in(output: str) -> list[str]:
    return [line for line in output.splitlines() if WARNING_LINE.search(line)]


@pytest.mark.slow
def test_dg_check_defs_and_list_defs_load_the_code_location_without_warnings(tmp_path):
    dg_cli_path = dg_cli()
    env = clms_env(tmp_path, tmp_path / "incoming")
    # both at once: each loads the code location in its own process
    check = subprocess.Popen([str(dg_cli_path), "check", "defs"], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listing = subprocess.Popen([str(dg_cli_path), "list", "defs", "--json"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check_out, check_err = check.communicate(timeout=300)
    list_out, list_err = listing.communicate(timeout=300)
    assert check.returncode == 0, check_out + check_err
    assert "All definitions loaded successfully" in check_out
    assert warnings_in(check_out + check_err) == []
    assert listing.returncode == 0, list_err
    assert warnings_in(list_err) == []
    listed = json.loads(list_out)
    assert {a["asset_key"] for a in listed["assets"]} == ALL_ASSETS
    assert {c["key"] for c in listed["asset_checks"]} == {
        "centre_import:validation_gate", "centre_import:row_accounting", "centre_warehouse:shrinkage_guard",
        "warehouse:great_expectations",
        "survival_analysis:result_expectations", "molecular_summary:result_expectations",
        "cbioportal_study:k_anonymity", "omop_cdm:omop_quality"}
    assert {j["name"] for j in listed["jobs"]} == {"import_centre", "nightly_refresh"}
    assert [s["name"] for s in listed["schedules"]] == ["nightly_refresh_0200"]
    assert sorted(s["name"] for s in listed["sensors"]) == ["dead_runs_sensor", "drop_folder_sensor"]


def project_copy(tmp: Path) -> Path:
    """The project's files (no virtual environment, no data) in a folder of their own."""
    copy = tmp / "clms-etl"
    generated = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info")
    shutil.copytree(ROOT, copy, ignore=lambda folder, names: {*generated(folder, names), *(
        {".venv", ".git", "data"} & set(names) if Path(folder) == ROOT else ())})
    return copy


@pytest.mark.slow
def test_dg_scaffold_defs_adds_an_asset_that_dg_list_defs_loads(tmp_path):
    dg_cli_path = dg_cli()
    project = project_copy(tmp_path)
    # the copy's packages before this checkout's editable install (which the instance class,
    # assets.private_instance, would otherwise import first)
    env = {**clms_env(tmp_path, tmp_path / "incoming"), "PYTHONPATH": str(project)}
    scaffold = subprocess.run([str(dg_cli_path), "scaffold", "defs", "dagster.asset", "follow_up_visits.py"],
                              cwd=project, env=env, text=True, capture_output=True, timeout=300)
    assert scaffold.returncode == 0, scaffold.stdout + scaffold.stderr
    assert warnings_in(scaffold.stdout + scaffold.stderr) == []
    assert (project / "assets" / "defs" / "follow_up_visits.py").is_file()  # in the defs folder
    listing = subprocess.run([str(dg_cli_path), "list", "defs", "--json"], cwd=project, env=env, text=True,
                             capture_output=True, timeout=300)
    assert listing.returncode == 0, listing.stderr
    assert {a["asset_key"] for a in json.loads(listing.stdout)["assets"]} == ALL_ASSETS | {"follow_up_visits"}


def test_instance_config_examples_are_valid_dagster_yaml():
    # dagster's own instance schema (no public validator in 1.13: the one `DagsterInstance` uses)
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config_schema

    for name in ("dagster.local.yaml", "dagster.production.yaml"):
        config = yaml.safe_load((ROOT / "deploy" / name).read_text())
        result = validate_config(dagster_instance_config_schema(), config)
        assert result.success, (name, [e.message for e in result.errors])
    local = yaml.safe_load((ROOT / "deploy" / "dagster.local.yaml").read_text())
    assert local["concurrency"]["pools"]["default_limit"] == 1  # DuckDB: one writer
    production = yaml.safe_load((ROOT / "deploy" / "dagster.production.yaml").read_text())
    assert "postgres" in production["storage"]
    # the pool the single-writer guard relies on is the one the assets that write the warehouse declare;
    # they go first among the steps ready. The readers claim no slot: they open the file read-only, side
    # by side (clms_etl/warehouse/file_lock.py); OMOP reads its rows first and builds with the file closed.
    assert ingest.centre_warehouse.op.pool == POOL
    writers = {"warehouse", "quality_dashboard", "survival_analysis", "molecular_summary"}
    assert {name: defs.resolve_assets_def(name).op.pool for name in NIGHTLY_ASSETS} == {
        name: POOL if name in writers else None for name in NIGHTLY_ASSETS}
    priority = {name: int(defs.resolve_assets_def(name).op.tags.get("dagster/priority", 0)) for name in NIGHTLY_ASSETS}
    assert {name for name, p in priority.items() if p} == writers
    assert priority["survival_analysis"] > priority["molecular_summary"]  # the longer writer first
    assert {defs.get_asset_checks_def(dg.AssetCheckKey(dg.AssetKey("warehouse"), "great_expectations")).node_def.pool,
            *(defs.get_asset_checks_def(dg.AssetCheckKey(dg.AssetKey(a), "result_expectations")).node_def.pool
              for a in ("survival_analysis", "molecular_summary"))} == {None}


# -- the whole graph --------------------------------------------------------------------------


@pytest.mark.slow
def test_whole_graph_on_the_twin_every_partition_then_the_nightly_refresh(twin_drop, tmp_path):
    d = platform_defs(resources(twin_drop, tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    import_job = d.resolve_job_def("import_centre")
    imports = {c: import_job.execute_in_process(partition_key=c, instance=instance) for c in CENTRES}
    nightly = d.resolve_job_def("nightly_refresh").execute_in_process(instance=instance)

    assert all(r.success for r in imports.values()) and nightly.success
    for centre, result in imports.items():
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"validation_gate": True, "row_accounting": True, "shrinkage_guard": True}, centre
    assert instance.get_materialized_partitions(dg.AssetKey("centre_warehouse")) == set(CENTRES)
    assert patients_by_centre(tmp_path / "warehouse.duckdb") == TWIN_PATIENTS
    assert sorted((e.asset_key.to_user_string(), e.check_name, e.passed) for e in nightly.get_asset_check_evaluations()) == [
        ("cbioportal_study", "k_anonymity", True),
        ("molecular_summary", "result_expectations", True), ("omop_cdm", "omop_quality", True),
        ("survival_analysis", "result_expectations", True), ("warehouse", "great_expectations", True)]

    # what a user reads in the UI, without a notebook
    imported = imports["nice"].asset_materializations_for_node("centre_import")[0].metadata
    assert imported["dagster/row_count"].value == TWIN_PATIENTS["nice"]
    assert {c.name for c in imported["dagster/column_schema"].schema.columns} >= {"patient.patient_id", "patient.centre"}
    assert Path(imported["query_list"].path).is_file()
    assert imported["rows_plot"].value.startswith("![rows accepted and quarantined per table](data:image/png;base64,")
    # typed tables with proper column names (no "len"), not Markdown
    assert [c.name for c in imported["queries_by_rule"].schema.columns] == ["rule", "severity", "queries"]
    assert all(isinstance(imported[k], dg.TableMetadataValue) for k in ("accounting", "queries_by_rule"))
    whole = nightly.asset_materializations_for_node("warehouse")[0].metadata
    assert whole["dagster/row_count"].value == 79
    # each table's rows per centre (the asset counts them by delivery), as each row's patient says
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        by_patient = {(table, centre): n for table in ("patient", "tumour", "surgery", "event") for centre, n in con.sql(
            f"select p.centre, count(*) from {table} t join patient p using (patient_id) group by p.centre").fetchall()}
    finally:
        con.close()
    shown = {(r.data["table_name"], r.data["centre"]): r.data["rows"] for r in whole["rows_per_table_and_centre"].records
             if r.data["table_name"] != "data_query"}
    assert shown == by_patient and len(shown) == 4 * len(TWIN_PATIENTS)
    ge = next(e for e in nightly.get_asset_check_evaluations() if e.check_name == "great_expectations").metadata
    assert ge["failures"].value == 0 and Path(ge["data_docs"].path).is_file()
    results = [e.metadata for e in nightly.get_asset_check_evaluations() if e.check_name == "result_expectations"]
    assert all(m["failures"].value == 0 and Path(m["data_docs"].path).is_file() for m in results)
    # the nightly refresh runs the analyses and the report after the warehouse
    done = {e.asset_key.to_user_string() for e in nightly.get_asset_materialization_events()}
    assert done == NIGHTLY_ASSETS
    report = nightly.asset_materializations_for_node("clinician_report")[0].metadata
    assert Path(report["report_html"].path).is_file() and report["figures"].value >= 2


def test_the_nightly_refresh_before_any_delivery_succeeds_and_its_report_says_so(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    nightly = platform_defs(resources(drop, tmp_path)).resolve_job_def("nightly_refresh").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert nightly.success
    assert all(c.passed for c in nightly.get_asset_check_evaluations())
    assert {e.asset_key.to_user_string() for e in nightly.get_asset_materialization_events()} == NIGHTLY_ASSETS
    survival = nightly.asset_materializations_for_node("survival_analysis")[0].metadata
    assert survival["dagster/row_count"].value == 0 and "nothing to estimate yet" in survival["status"].value
    html = (tmp_path / "outputs" / "report" / "clms_report.html").read_text()
    assert "No survival analysis: no patient in the survival population" in html
    assert "No laboratory results in the warehouse yet" in html


# -- concurrency: one DuckDB writer -----------------------------------------------------------

# One run as the default run launcher would start it: its own process, this machine's instance
# (DAGSTER_HOME), the code location's resources from the environment.
RUN_ONE_CENTRE = """
import sys
import dagster as dg
from assets.definitions import defs

centre, run_id, how = sys.argv[1:4]
with dg.DagsterInstance.get() as instance:
    if how == "execute_in_process":
        result = defs.resolve_job_def("import_centre").execute_in_process(
            partition_key=centre, instance=instance, run_id=run_id, raise_on_error=False,
            tags={"clms/centre": centre})
    else:  # as a run worker executes a run the drop-folder sensor requested: with its run config
        from dagster._core.execution.api import execute_run  # what `dagster api execute_run` calls
        from assets.automation import IMPORT_RUN_CONFIG
        from tests.test_dagster_platform import import_job_from_env
        run = instance.create_run_for_job(import_job_from_env(), run_id=run_id, run_config=IMPORT_RUN_CONFIG,
                                          tags={"clms/centre": centre, "dagster/partition": centre})
        result = execute_run(dg.reconstructable(import_job_from_env), run, instance)
sys.exit(0 if result.success else 1)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["execute_in_process", "sensor_run_config"])
def test_two_centres_launched_together_both_land_one_writer_at_a_time(twin_drop, tmp_path, how):
    """Two runs in two processes against ONE DuckDB file: the `warehouse` pool (limit 1 in the
    instance's dagster.yaml) lets one load at a time; both land, neither fails. Both ways a run
    executes its steps in its own process: ``execute_in_process`` (``clms-etl run``) and the run
    config the drop-folder sensor gives the night's imports (in-process executor, launched runs).

    To make the contention certain rather than a matter of timing, the test holds the pool's only
    slot until both runs are waiting on it (as if a third load were in progress), then frees it.
    """
    home = dagster_home(tmp_path)
    env = clms_env(tmp_path, twin_drop, home)
    holder = ("test-holder", "hold")
    runs = {"lyon": str(uuid.uuid4()), "nimes": str(uuid.uuid4())}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(POOL)
        assert storage.get_concurrency_info(POOL).slot_count == 1  # deploy/dagster.local.yaml
        assert storage.claim_concurrency_slot(POOL, *holder, 0).is_claimed
        procs = {c: subprocess.Popen([sys.executable, "-c", RUN_ONE_CENTRE, c, run_id, how], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
                 for c, run_id in runs.items()}
        try:
            deadline = time.monotonic() + 240
            blocked: set[str] = set()
            while blocked != set(runs):
                for centre, run_id in runs.items():
                    if procs[centre].poll() is not None:
                        pytest.fail(f"{centre} run ended before reaching the pool: {procs[centre].communicate()[1][-3000:]}")
                    if centre not in blocked and instance.has_run(run_id) and any(
                            f"blocked by limit for pool {POOL}" in (e.message or "")
                            for step in OPENS_THE_WAREHOUSE for e in step_events(instance, run_id, step)):
                        blocked.add(centre)
                assert time.monotonic() < deadline, f"runs never waited on the pool: {blocked}"
                time.sleep(0.3)
            # both imports done, both loads waiting for the single writer's slot: release it
            storage.free_concurrency_slot_for_step(*holder)
            outcomes = {c: p.communicate(timeout=240) for c, p in procs.items()}
        finally:
            for p in procs.values():
                stop(p)
            storage.free_concurrency_slot_for_step(*holder)

        for centre, p in procs.items():
            assert p.returncode == 0, f"{centre}: {outcomes[centre][1][-3000:]}"
            assert instance.get_run_by_id(runs[centre]).status == dg.DagsterRunStatus.SUCCESS
        step_pids = {e.dagster_event.pid for r in runs.values() for e in instance.all_logs(r)
                     if e.dagster_event is not None and e.dagster_event.event_type_value == "STEP_START"}
        assert step_pids == {p.pid for p in procs.values()}  # each run's steps in its own process
        first, second = sorted(step_interval(instance, r, "centre_warehouse") for r in runs.values())
        assert first[1] <= second[0], "the two warehouse loads overlapped"
        assert storage.get_concurrency_info(POOL).claimed_slots == []  # nothing left holding the pool
    assert patients_by_centre(tmp_path / "warehouse.duckdb") == {c: TWIN_PATIENTS[c] for c in runs}


def test_a_step_waiting_on_the_warehouse_pool_claims_it_again_every_quarter_second_not_after_a_growing_back_off(tmp_path):
    """The slot a load frees is assigned to the next waiting step at once, but that step only takes
    it when it claims again: after Dagster's back-off (1 s growing to 15 s) the slot sat unused for
    71 s of a 40-centre night's 194 s of loads (bench/README.md, "Warm run workers")."""
    from dagster._core.execution.plan.instance_concurrency_context import _calculate_timeout_interval

    from assets.private_instance import POOL_POLL_S

    with dg.DagsterInstance.from_config(str(dagster_home(tmp_path))) as instance:  # deploy/dagster.local.yaml
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(POOL)
        assert storage.claim_concurrency_slot(POOL, "run-a", "centre_warehouse", 0).is_claimed
        waiting = storage.claim_concurrency_slot(POOL, "run-b", "centre_warehouse", 0)
        assert not waiting.is_claimed and waiting.sleep_interval == POOL_POLL_S
        # what the executor waits after its 40th blocked claim: the same quarter second, not 15 s
        assert _calculate_timeout_interval(waiting.sleep_interval, 40) == POOL_POLL_S
        storage.free_concurrency_slot_for_step("run-a", "centre_warehouse")
        assert storage.claim_concurrency_slot(POOL, "run-b", "centre_warehouse", 0).is_claimed


HOLD_DUCKDB_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])  # a writer outside Dagster: a CLI load, a notebook
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""


def test_a_warehouse_file_locked_outside_dagster_is_retried_not_failed(twin_drop, tmp_path):
    db = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_DUCKDB_LOCK, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    home = dagster_home(tmp_path)
    run_id = str(uuid.uuid4())
    released = threading.Event()

    def retry_seen(watcher) -> bool:
        try:
            return watcher.has_run(run_id) and any(e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
                                                   for step in OPENS_THE_WAREHOUSE
                                                   for e in step_events(watcher, run_id, step))
        except Exception:  # SQLite storage being written by the run at the same moment: look again
            return False

    def release_after_first_failed_attempt() -> None:
        try:
            with dg.DagsterInstance.from_config(str(home)) as watcher:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not retry_seen(watcher):
                    time.sleep(0.2)
            released.set()
        finally:  # whatever happens, the holder lets go (the assertions below say if it was too early)
            holder.stdin.write("\n")
            holder.stdin.flush()

    try:
        assert holder.stdout.readline().strip() == "locked"
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.has_run(run_id)  # the instance's SQLite storage exists before the watcher opens it too
            watcher = threading.Thread(target=release_after_first_failed_attempt, daemon=True)
            watcher.start()
            result = platform_defs(resources(twin_drop, tmp_path)).resolve_job_def("import_centre").execute_in_process(
                partition_key="lyon", instance=instance, run_id=run_id, raise_on_error=False)
            watcher.join(30)
            retried = [e for step in OPENS_THE_WAREHOUSE for e in step_events(instance, run_id, step)
                       if e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"]
    finally:
        stop(holder)
    assert released.is_set()
    assert result.success
    assert len(retried) == 1
    assert "Could not set lock" in retried[0].dagster_event.event_specific_data.error.to_string()
    assert patients_by_centre(db) == {"lyon": TWIN_PATIENTS["lyon"]}


def test_a_delivery_the_warehouse_refuses_fails_at_once_without_retries(twin_drop, tmp_path):
    job = platform_defs(resources(twin_drop, tmp_path)).resolve_job_def("import_centre")
    instance = dg.DagsterInstance.ephemeral()
    assert job.execute_in_process(partition_key="lyon", instance=instance).success
    # the day before's export arrives late, in a drop folder of its own
    older = tmp_path / "older"
    shutil.copytree(twin_drop / "lyon" / "2026-11-23", older / "lyon" / "2026-11-22")
    (older / "lyon" / "2026-11-22" / "CLMSLYON_DATA_2026-11-23.csv").rename(
        older / "lyon" / "2026-11-22" / "CLMSLYON_DATA_2026-11-22.csv")
    late = platform_defs(resources(older, tmp_path)).resolve_job_def("import_centre")
    result = late.execute_in_process(partition_key="lyon", instance=instance, raise_on_error=False)
    assert not result.success
    events = [e.event_type_value for e in result.all_events if e.step_key == "centre_warehouse"]
    assert "STEP_UP_FOR_RETRY" not in events and "STEP_FAILURE" in events  # no 2 + 6 + 14 s of retries
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "older than the one already loaded" in failure.event_specific_data.error.to_string()
    assert patients_by_centre(tmp_path / "warehouse.duckdb") == {"lyon": TWIN_PATIENTS["lyon"]}


# -- executors ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_import_job_on_the_multiprocess_executor(twin_drop, tmp_path, monkeypatch):
    # step processes rebuild the job from this module: its resources come from the environment
    monkeypatch.setenv("CLMS_INCOMING", str(twin_drop))
    monkeypatch.setenv("CLMS_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("CLMS_WAREHOUSE_URL", f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    monkeypatch.setenv("CLMS_HANDOFF", str(tmp_path / "handoff"))
    monkeypatch.delenv("CLMS_DEPLOYMENT", raising=False)
    with dg.DagsterInstance.from_config(str(dagster_home(tmp_path))) as instance:
        result = dg.execute_job(dg.reconstructable(import_job_from_env), instance=instance,
                                tags={"dagster/partition": "montpellier"})
        assert result.success
        steps = {e.step_key: e.pid for e in result.all_events if e.event_type_value == "STEP_START"}
        assert set(steps) == {"centre_import", "centre_import_validation_gate", "centre_import_row_accounting",
                              "centre_warehouse"}
        assert os.getpid() not in steps.values()  # every step ran in a process of its own
        assert len(set(steps.values())) == len(steps)
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"validation_gate": True, "row_accounting": True, "shrinkage_guard": True}
    assert patients_by_centre(tmp_path / "warehouse.duckdb") == {"montpellier": TWIN_PATIENTS["montpellier"]}


# -- schedule -----------------------------------------------------------------------------------


def test_nightly_schedule_requests_the_refresh_at_two_in_paris():
    schedule = defs.resolve_schedule_def("nightly_refresh_0200")
    assert schedule is not None and schedule.name == nightly_schedule.name
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Europe/Paris"
    assert schedule.job_name == "nightly_refresh"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    tick = dt.datetime(2026, 11, 24, 2, 0, tzinfo=ZoneInfo("Europe/Paris"))  # 01:00 UTC in winter
    context = dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    data = schedule.evaluate_tick(context)
    assert data.skip_message is None
    assert len(data.run_requests) == 1
    request = data.run_requests[0]
    assert request.job_name in (None, "nightly_refresh")
    nightly = defs.resolve_job_def("nightly_refresh")
    dg.validate_run_config(nightly, request.run_config)
    selected = {k.to_user_string() for k in nightly.asset_layer.executable_asset_keys}
    assert selected == NIGHTLY_ASSETS


# -- the webserver ------------------------------------------------------------------------------

GRAPHQL = """{
  workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } }
  assetNodes { assetKey { path } groupName isPartitioned
    assetChecksOrError { __typename ... on AssetChecks { checks { name blocking } } } }
  repositoriesOrError { __typename ... on RepositoryConnection { nodes {
    location { name } jobs { name }
    schedules { name cronSchedule executionTimezone pipelineName }
    sensors { name } } } }
}"""


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.load(response)


def serve(command: list[str], tmp: Path, log_name: str, also_wait_for: str = "") -> tuple[dict, str]:
    """Start a Dagster server (``command`` on a free port), wait until its code location is loaded
    and ``also_wait_for`` is in its log, stop it: the GraphQL answer, and the log until then.

    Python's warnings are not silenced (unlike :func:`clms_env`): the log shows them."""
    port = free_port()
    env = {k: v for k, v in clms_env(tmp, tmp / "incoming").items() if k != "PYTHONWARNINGS"}
    log_path = tmp / log_name
    log = log_path.open("w")
    server = subprocess.Popen([*command, "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert server.poll() is None, log_path.read_text()[-3000:]
            try:
                data = graphql(port, GRAPHQL)["data"]
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED" and also_wait_for in log_path.read_text():
                    return data, log_path.read_text()
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError):
                pass
            time.sleep(0.5)
        pytest.fail(f"{command[0]} not ready in 180 s: {log_path.read_text()[-3000:]}")
    finally:
        stop(server)
        log.close()
        assert server.returncode is not None


@pytest.mark.slow
def test_webserver_serves_the_code_location_over_graphql_without_warnings(tmp_path):
    webserver = BIN / "dagster-webserver"
    if not webserver.exists():
        pytest.skip(f"dagster-webserver is not installed next to {sys.executable}")
    data, log = serve([str(webserver), "-w", "workspace.yaml"], tmp_path, "webserver.log")
    # e.g. the defs folder's code location name differing from workspace.yaml's
    assert warnings_in(log) == []

    [entry] = data["workspaceOrError"]["locationEntries"]
    assert entry["name"] == "clms_etl" and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) == ALL_ASSETS
    assert nodes["centre_import"]["groupName"] == "ingest" and nodes["centre_import"]["isPartitioned"]
    assert nodes["warehouse"]["groupName"] == "warehouse" and not nodes["warehouse"]["isPartitioned"]
    checks = {(key, c["name"], c["blocking"]) for key, n in nodes.items() for c in n["assetChecksOrError"]["checks"]}
    assert checks == {("centre_import", "validation_gate", True), ("centre_import", "row_accounting", True),
                      ("centre_warehouse", "shrinkage_guard", True),
                      ("warehouse", "great_expectations", True), ("survival_analysis", "result_expectations", True),
                      ("molecular_summary", "result_expectations", True), ("cbioportal_study", "k_anonymity", False),
                      ("omop_cdm", "omop_quality", True)}
    [repository] = data["repositoriesOrError"]["nodes"]
    assert repository["location"]["name"] == "clms_etl"
    assert {j["name"] for j in repository["jobs"]} >= {"import_centre", "nightly_refresh"}
    assert repository["schedules"] == [{"name": "nightly_refresh_0200", "cronSchedule": "0 2 * * *",
                                        "executionTimezone": "Europe/Paris", "pipelineName": "nightly_refresh"}]
    assert sorted(s["name"] for s in repository["sensors"]) == ["dead_runs_sensor", "drop_folder_sensor"]


@pytest.mark.slow
def test_dg_dev_serves_the_code_location_and_runs_its_sensors_without_warnings(tmp_path):
    """`dg dev` (the README's way to start the UI, `dagster dev` being superseded): the webserver
    and the daemon load the project's code location under its name, with no warning."""
    data, log = serve([str(dg_cli()), "dev"], tmp_path, "dg_dev.log",
                      also_wait_for="Checking for new runs for sensor")  # the daemon loaded it too
    [entry] = data["workspaceOrError"]["locationEntries"]
    assert entry["name"] == "clms_etl" and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    assert {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]} == ALL_ASSETS
    assert warnings_in(log) == []


# -- metadata -----------------------------------------------------------------------------------


def test_rows_plot_is_a_png_embedded_in_markdown():
    accounting = pl.DataFrame({"table": ["patient", "tumour"], "rows_read": [10, 12],
                               "rows_accepted": [8, 12], "rows_quarantined": [2, 0]})
    value = ingest.rows_plot(accounting, "nice 2026-11-23")
    assert isinstance(value, dg.MarkdownMetadataValue)
    prefix = "![rows accepted and quarantined per table](data:image/png;base64,"
    assert value.value.startswith(prefix) and value.value.endswith(")")
    png = base64.b64decode(value.value[len(prefix):-1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 60_000  # small enough for the event log


def test_metadata_tables_are_typed_with_their_columns_and_types():
    frame = pl.DataFrame({"rule": ["margin_range"], "queries": [3], "share": [0.5], "day": [dt.date(2026, 11, 23)]})
    value = table_metadata(frame)
    assert isinstance(value, dg.TableMetadataValue)
    assert [(c.name, c.type) for c in value.schema.columns] == [
        ("rule", "string"), ("queries", "int"), ("share", "float"), ("day", "date")]
    assert value.records[0].data == {"rule": "margin_range", "queries": 3, "share": 0.5, "day": "2026-11-23"}


def test_the_bar_chart_legend_covers_no_bar():
    # every bar as long as the axis: a legend inside the axes would sit on one
    fig = bar_chart(["patient", "tumour", "surgery"], {"accepted": [10, 10, 10], "quarantined": [2, 2, 2]}, "title")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    [legend] = fig.legends or [fig.axes[0].get_legend()]
    box = legend.get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for p in fig.axes[0].patches]
    assert len(bars) == 6 and not any(box.overlaps(bar) for bar in bars)
