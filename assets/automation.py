"""Jobs, the drop-folder sensor and the nightly schedule."""


import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from assets.ingest import centre_import, centre_warehouse
from assets.quality import quality_dashboard
from assets.warehouse import warehouse
from assets.partitions import REGISTRY
from assets.resources import DropFolder
from assets.unchanged import nothing_loaded_since_refresh
from assets.run_workers import DEPLOYMENT_PRELOAD
from clms_etl.deliveries import latest_delivery, refused_folders


def _seconds_to_next_claim(self) -> float:
    """Seconds until this run tries its pending pool claims again (0: now): the earliest timeout of the steps
    still waiting, never negative."""
    timeouts = [self._pending_timeouts[key] for key in self._pending_claims if key in self._pending_timeouts]
    return max(0.0, min(timeouts) - time.time()) if timeouts else 0.0


def sleep_while_waiting_for_a_pool() -> bool:
    """Make a run whose step waits for a pool slot sleep until its next claim, as Dagster means it to.

    The installed Dagster's ``InstanceConcurrencyContext.interval_to_next_pending_claim_check`` returns
    ``min(0, ...)``, never positive, so the executor's loop never sleeps: an import run waiting for the
    ``warehouse`` pool spun a core until it got the slot (42 % of the import runs' CPU samples in a
    1,000,000-patient night, three runs of four spinning while one loads; bench/README.md, "Session 17").
    The claims themselves keep Dagster's schedule. Replaced only while the installed code has that line;
    returns whether it was replaced."""
    import inspect

    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

    if "min([0," not in inspect.getsource(InstanceConcurrencyContext.interval_to_next_pending_claim_check):
        return False
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = _seconds_to_next_claim
    return True


SLEEPS_WHILE_WAITING_FOR_A_POOL = sleep_while_waiting_for_a_pool()


def step_preload(*modules: str) -> list[str]:
    """What the forkserver of a run's step processes imports: the code location, ``modules``, then the
    deployment (last: it freezes what was imported before it, assets/deployment_preload.py)."""
    return ["assets.definitions", *modules, DEPLOYMENT_PRELOAD]


def warm_executor(*preload: str, in_process_if: Callable[[dg.DagsterInstance], bool] | None = None,
                  extra_concurrent: int = 0) -> dg.ExecutorDefinition:
    """Dagster's default executor (``multiprocess`` unless the run config says ``in_process``) whose
    step processes are forked from a forkserver that imported the code location and ``preload``
    once per run. With the default start method (``spawn``) every step re-imports dagster, polars,
    pandera and the code location in a fresh interpreter: 5 CPU-seconds a step here, which made a
    40-centre night (5 steps a centre) spend most of its time starting Python (bench/README.md,
    "The whole night"). A run config that sets ``start_method`` keeps its own.

    ``in_process_if(instance)`` true at the start of a run whose config left the default
    (multiprocess): the run executes its steps in its own process instead — no forkserver, no
    forks — with the same retries. For runs whose steps have nothing to do (the refresh of a night
    without a load), where starting processes would be the whole cost.

    ``extra_concurrent``: step processes beyond one per core (Dagster's default ``max_concurrent``), for a
    job whose background steps (:mod:`assets.priority`) take only the cycles the others leave. A run
    config that sets ``max_concurrent`` keeps its own."""
    preload_modules = step_preload(*preload)
    default = dg.multi_or_in_process_executor

    @dg.executor(name="warm_multi_or_in_process_executor", config_schema=default.config_schema,
                 requirements=lambda config: dg.multiple_process_executor_requirements() if "multiprocess" in config else [])
    def warm(init_context: dg.InitExecutorContext):
        config = dict(init_context.executor_config)
        if "multiprocess" in config:
            multiprocess = dict(config["multiprocess"] or {})
            if in_process_if is not None and in_process_if(init_context.instance):
                config = {"in_process": {"retries": multiprocess.get("retries", {"enabled": {}})}}
            else:
                multiprocess.setdefault("start_method", {"forkserver": {"preload_modules": preload_modules}})
                if extra_concurrent and not multiprocess.get("max_concurrent"):
                    multiprocess["max_concurrent"] = (os.cpu_count() or 1) + extra_concurrent
                config = {"multiprocess": multiprocess}
        return default.executor_creation_fn(dg.InitExecutorContext(
            job=init_context.job, executor_def=init_context.executor_def, executor_config=config,
            instance=init_context.instance))

    return warm


# The import runs the drop-folder sensor requests execute their steps in the run's own process
# (Dagster's in-process executor). An import run's steps are a chain (read + validate, its checks,
# the load): parallel step processes buy nothing, and the forkserver was a second interpreter
# importing the code location in every run -- the night's main cost at 40 centres (bench/README.md,
# "One interpreter per import run"). The in-process executor claims the steps' pool slots like the
# multiprocess one (dagster/_core/executor/in_process.py, InstanceConcurrencyContext), so concurrent
# runs' loads still queue on the `warehouse` pool (tests/test_dagster_platform.py proves it).
IMPORT_RUN_CONFIG = {"execution": {"config": {"in_process": {}}}}

# What the steps import on first use, preloaded by the forkserver of an import run launched with the
# default (multiprocess) config -- from the UI, a backfill: each forked step would import it again.
# The warehouse driver, the query-list workbook (openpyxl reads a returned one, xlsxwriter writes),
# pandera's polars checks, matplotlib's figure for the rows plot. 3 CPU-seconds per import run when
# left to the steps (bench/README.md, "The whole night"); tests/test_night_steps.py keeps the list whole.
IMPORT_STEP_MODULES = ("clms_etl.warehouse.load", "duckdb_engine", "clms_etl.centre_import", "clms_etl.validate",
                       "clms_etl.readers.engine", "clms_etl.readers.raw_cells", "clms_etl.query_list",
                       "clms_etl.report.quality", "openpyxl", "xlsxwriter", "fastexcel",
                       "pandera.backends.polars.builtin_checks", "pandera.backends.polars.container",
                       "pandera.backends.polars.components", "pandera.backends.register_checks",
                       "matplotlib.figure", "matplotlib.backends.backend_agg")

import_job = dg.define_asset_job(
    "import_centre",
    selection=dg.AssetSelection.assets(centre_import, centre_warehouse),
    description="Read, validate and load one centre's latest delivery (one partition = one centre).",
    executor_def=warm_executor(*IMPORT_STEP_MODULES),
)


# What the refresh's steps import (preloaded by its step processes' forkserver). Great Expectations is
# imported by the suites' function only (1.7 CPU-seconds), once per step that runs suites without this.
REFRESH_STEP_MODULES = ("clms_etl.warehouse.load", "clms_etl.warehouse.expectations", "great_expectations",
                        "clms_etl.survival.run", "clms_etl.molecular.run", "clms_etl.report.build",
                        "clms_etl.report.exports", "clms_etl.report.dashboard", "clms_etl.omop.export")
# What a run's worker imports: the code server forks every run worker from a process that imported
# these once (assets/run_workers.py), import runs and refreshes alike.
RUN_WORKER_MODULES = (*IMPORT_STEP_MODULES, *REFRESH_STEP_MODULES)

# one step process more than the cores in the refresh: the clinician report (background priority) waited for a
# slot behind OMOP (background, holding the pool on DuckDB) and the exports, 30 s at the end of the
# 1,000,000-patient night (bench/README.md, "Session 17")
REFRESH_EXTRA_CONCURRENT = 1

nightly_job = dg.define_asset_job(
    "nightly_refresh",
    selection=dg.AssetSelection.assets(warehouse).downstream() | dg.AssetSelection.assets(quality_dashboard),
    description="After the night's imports: the warehouse-wide quality gate, then every analytical asset.",
    executor_def=warm_executor(*REFRESH_STEP_MODULES, in_process_if=lambda instance: nothing_loaded_since_refresh(
                                   instance, warehouse.key, centre_warehouse.key),
                               extra_concurrent=REFRESH_EXTRA_CONCURRENT),
)

nightly_schedule = dg.ScheduleDefinition(
    name="nightly_refresh_0200",
    job=nightly_job,
    cron_schedule="0 2 * * *",
    execution_timezone="Europe/Paris",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="02:00 Europe/Paris: refresh the analytical assets after the centres' imports.",
)


@dg.sensor(job=import_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches the drop folder: a new delivery for a centre requests one run of that "
           "centre's partition (run key = centre, delivery date and content hash), its steps in the run's "
           "own process. A folder that is not a "
           "real, past date is refused: the centre's run fails naming it (and its query list says so).")
def drop_folder_sensor(context: dg.SensorEvaluationContext, drop_folder: DropFolder) -> dg.SensorResult:
    seen = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for centre in REGISTRY:
        pending = _pending(drop_folder.root, centre)
        if pending is None or seen.get(centre) == pending[0]:
            continue
        run_key, refused, delivery = pending
        seen[centre] = run_key
        for folder in refused:
            context.log.warning(folder.message)
        tags = {"clms/centre": centre}
        if not refused:
            tags["clms/delivery"] = delivery.date.isoformat()
        requests.append(dg.RunRequest(run_key=run_key, partition_key=centre, tags=tags, run_config=IMPORT_RUN_CONFIG))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))


def _pending(root: Path, centre: str):
    """What the drop-folder sensor imports once for ``centre``: (run key, refused folders, latest
    delivery) — its latest delivery (run key: centre, date, content hash), or its refused folders
    (one failing run per set of them); None: nothing to import."""
    refused = refused_folders(root, centre)
    delivery = latest_delivery(root, centre)
    if refused:
        return f"{centre}:refused:{','.join(sorted(f.path.name for f in refused))}", refused, delivery
    if delivery is None or not delivery.files:
        return None
    return f"{centre}:{delivery.date.isoformat()}:{delivery.sha256[:16]}", refused, delivery


def imported_cursor(root: Path, centres, cursor: str | None = None) -> str:
    """The sensor's cursor once ``centres`` were imported from ``root`` outside the sensor (``clms-etl
    run``, the demo): their run keys added to ``cursor``, so that the sensor does not import them again."""
    seen = json.loads(cursor) if cursor else {}
    seen.update({c: pending[0] for c in centres if (pending := _pending(root, c)) is not None})
    return json.dumps(seen, sort_keys=True)


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Fails the runs of this host still marked in progress whose process is gone (a "
           "`clms-etl run` killed with kill -9) and frees their pool slots, so that the nightly does not "
           "wait for them forever (Dagster's run monitoring watches only the runs its launcher started).")
def dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    from assets.run import fail_dead_runs

    dead = fail_dead_runs(context.instance)
    for run_id in dead:
        context.log.warning(f"run {run_id}: its process is gone; marked failed, its pool slots freed")
    return dg.SkipReason(f"{len(dead)} dead run(s) failed" if dead else "no dead run")
