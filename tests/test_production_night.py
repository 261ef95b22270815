"""The night as production runs it: the Dagster daemon, the queued run coordinator, PostgreSQL for
Dagster's storage AND the warehouse, the production resources (``CLMS_DEPLOYMENT=production``),
each run launched in its own process.

The executors are production's: the refresh of a night with loads runs its steps on the multiprocess
executor (parallel analyses); each import run the sensor requests runs its steps in the run's own
process (``assets.automation.IMPORT_RUN_CONFIG``). An import's steps are a chain, so step processes
bought it no parallelism and cost it a second interpreter importing the code location per run, the
bulk of a 40-centre night (bench/README.md, "One interpreter per import run"); the in-process
executor claims the ``warehouse`` pool's slots like the multiprocess one, so concurrent imports'
loads still queue there (tests/test_dagster_platform.py, two centres launched together).

Nothing is executed in the test's process: the daemon's ``drop_folder_sensor`` requests one import
run per centre that delivered, the queued coordinator launches them together (reads in parallel,
loads through the ``warehouse`` pool), then ``dagster job launch`` queues the refresh, which the
daemon launches as the 02:00 schedule would. The instance is ``deploy/dagster.production.yaml``
itself, with its connection read from the ``DAGSTER_PG_*`` variables.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from bench.bench_night import DaemonNight, failures, run_events
from tests.test_dagster_platform import BIN, CENTRES, NIGHTLY_ASSETS, ROOT, TWIN_PATIENTS, clms_env
from tests.warehouse.conftest import _libpq, _with_database, pg_admin_url, pg_databases  # noqa: F401  (fixtures)
from tests.warehouse.helpers import TEST_KEY

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NIGHT_DEADLINE_S = 900  # a bound on a hung night, not a speed target (bench/bench_night.py measures)


@pytest.fixture
def production_env(pg_admin_url, pg_databases, twin_drop, tmp_path):
    """Environment of every process of the night: production instance and resources, two fresh
    PostgreSQL databases (Dagster's storage, the warehouse), the twin's deliveries."""
    storage_db = pg_databases.new().rsplit("/", 1)[1]
    warehouse_db = pg_databases.new().rsplit("/", 1)[1]
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.production.yaml", home / "dagster.yaml")
    info = psycopg.conninfo.conninfo_to_dict(_libpq(pg_admin_url))
    env = clms_env(tmp_path, twin_drop, home)
    env.update(
        CLMS_DEPLOYMENT="production", CLMS_WAREHOUSE_URL=_with_database(pg_admin_url, warehouse_db),
        CLMS_PSEUDONYM_KEY=TEST_KEY.decode(),
        DAGSTER_PG_HOST=str(info.get("host", "127.0.0.1")), DAGSTER_PG_USER=str(info.get("user", "postgres")),
        DAGSTER_PG_PASSWORD=str(info.get("password", "")), DAGSTER_PG_DB=storage_db,
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    env.pop("CLMS_PSEUDONYM_KEY_FILE", None)
    return env, storage_db, warehouse_db  # (pg_databases drops both when the module ends)


def test_the_night_as_production_runs_it_daemon_queue_postgresql(production_env, tmp_path, monkeypatch):
    env, storage_db, warehouse_db = production_env
    for name, value in env.items():  # this process opens the same instance to watch the runs
        if name.startswith(("DAGSTER_", "CLMS_")):
            monkeypatch.setenv(name, value)
    # the operator's one setup step: the warehouse schema on PostgreSQL is the migrations' business
    migrate = subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-4000:]
    with DaemonNight(env, tmp_path / "daemon.log", deadline_s=NIGHT_DEADLINE_S) as night, \
            dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        # Dagster's own storage is the PostgreSQL database, not files under DAGSTER_HOME
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"

        imports = night.wait_for_runs(instance, "import_centre", len(CENTRES))
        failed = [r for r in imports if r.status != dg.DagsterRunStatus.SUCCESS]
        assert not failed, f"imports failed: {failures(instance, failed)}"
        assert sorted(r.tags["dagster/partition"] for r in imports) == sorted(CENTRES)
        spans = []
        for run in imports:
            events = run_events(instance, run.run_id)
            # requested by the sensor, queued, then launched by the coordinator's dequeuing
            assert run.tags.get("dagster/sensor_name") == "drop_folder_sensor"
            assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING"} <= events.keys(), events
            assert events["PIPELINE_ENQUEUED"] < events["PIPELINE_STARTING"]
            messages = [e.message or "" for e in instance.all_logs(run.run_id)]
            assert any(m.startswith("Executing steps in process") for m in messages), messages
            assert not any("multiprocess executor" in m for m in messages)
            spans.append((events["PIPELINE_START"], events["PIPELINE_SUCCESS"]))
        spans.sort()
        # launched together, not one after another: some two runs were in progress at once
        assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans

        night.launch_refresh()
        (refresh,) = night.wait_for_runs(instance, "nightly_refresh", 1)
        assert refresh.status == dg.DagsterRunStatus.SUCCESS, failures(instance, [refresh])
        assert "PIPELINE_ENQUEUED" in run_events(instance, refresh.run_id)
        assert any("multiprocess executor" in (e.message or "") for e in instance.all_logs(refresh.run_id))
        materialised = {e.dagster_event.asset_key.to_user_string() for e in instance.all_logs(refresh.run_id)
                        if e.dagster_event is not None and e.dagster_event.is_step_materialization}
        assert NIGHTLY_ASSETS <= materialised
        # off the critical path, in their own step processes: at a lower CPU priority (assets/priority.py)
        priority = {e.dagster_event.asset_key.to_user_string():
                    e.dagster_event.step_materialization_data.materialization.metadata.get("cpu_priority")
                    for e in instance.all_logs(refresh.run_id)
                    if e.dagster_event is not None and e.dagster_event.is_step_materialization}
        assert all(priority[a].value.startswith("background: nice ") for a in ("omop_cdm", "clinician_report")), priority
        assert priority["survival_analysis"] is None and priority["analysis_exports"] is None

    admin = env["CLMS_WAREHOUSE_URL"]
    with psycopg.connect(_libpq(admin)) as conn:  # counted in the database itself, not through the product
        patients = dict(conn.execute("select centre, count(*) from patient group by centre").fetchall())
        refreshed = conn.execute("select count(*) from analytics.survival_estimate").fetchone()[0]
    assert patients == TWIN_PATIENTS
    assert refreshed > 0
    with psycopg.connect(_libpq(_with_database(admin, storage_db))) as conn:
        assert conn.execute("select count(*) from runs").fetchone()[0] == len(CENTRES) + 1
    assert not (Path(env["DAGSTER_HOME"]) / "history").exists()  # nothing in SQLite files


_OPEN_THE_DEPLOYMENT = """
import importlib, json, os, sys
import multiprocessing.forkserver as forkserver
forkserver.ensure_running = lambda: None  # the preload list is what is looked at, no forkserver started
sys.argv[1:] = ["api", "grpc"]  # loaded as Dagster's code server loads it
import assets.definitions
preload = forkserver._forkserver._preload_modules
for name in preload:
    importlib.import_module(name)
before = set(sys.modules)
import dagster as dg
from clms_etl.warehouse import Warehouse
with dg.DagsterInstance.get() as instance:
    instance.get_runs(limit=1)
with Warehouse(os.environ["CLMS_WAREHOUSE_URL"]) as wh:
    wh.read_sql("SELECT 1 AS one")
print(json.dumps(sorted(set(sys.modules) - before)))
"""
# what a run worker imports, if the forkserver did not, to open Dagster's storage and the warehouse
DEPLOYMENT_ROOTS = ("dagster_postgres", "psycopg", "psycopg2", "assets", "clms_etl", "sqlalchemy.dialects",
                    "dagster._core.storage", "dagster._core.run_coordinator")


def test_a_run_worker_opens_the_production_instance_and_warehouse_without_importing_them(production_env):
    """The code server forks run workers from a process that imported the modules its ``dagster.yaml``
    and warehouse URL name (assets/run_workers.py, ``preload_deployment``): a worker imports none of them
    again (0.4 CPU-seconds a run on PostgreSQL, 41 runs a night)."""
    env, _, _ = production_env
    done = subprocess.run([str(BIN / "python"), "-c", _OPEN_THE_DEPLOYMENT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    late = [m for m in imported if m.startswith(DEPLOYMENT_ROOTS)]
    assert late == [], " ".join(late)
