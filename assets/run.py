"""The whole nightly through Dagster, without the UI: ``clms-etl run`` and ``make demo``.

One import run per centre that delivered (a partition of ``import_centre``), then one run of
``nightly_refresh``, all in this machine's instance (``DAGSTER_HOME``). The runs are created
from the code location (``workspace.yaml``'s ``clms_etl``, loaded in this process) as the UI
creates them, so they show under their jobs and assets in the UI afterwards (a job run with
``execute_in_process`` has no code location: its job page says "No runs found"). The steps still
execute in this process. Afterwards the drop-folder sensor's cursor says what was imported, so
that the daemon (``dg dev``) does not import it again. A centre with no delivery is skipped and
said so; a centre whose drop folder holds a refused folder (not a real, past date) runs, and
fails naming it.

The runs execute in this process. Should it be killed (``kill -9``) while a run holds a slot
of the ``warehouse`` pool, nothing in Dagster ends that run (the monitoring daemon only watches
runs its launcher started): the next ``clms-etl run`` fails such runs of this host whose process
is gone and frees their slots (:func:`fail_dead_runs`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from assets.ingest import ACCEPT_SHRINKAGE_TAG
from assets.instance import ensure_instance

HOST_TAG, PID_TAG = "clms/host", "clms/pid"
# The runs' full logs are in the Dagster UI; the terminal gets warnings and the summary. The steps
# run in this process (the code location's default executor would start one process per step).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}},
         "execution": {"config": {"in_process": {}}}}
# The code location as workspace.yaml names it (tests/test_nightly_run.py holds them equal): runs
# tagged with this location show on its jobs' pages.
CODE_LOCATION, CODE_MODULE = "clms_etl", "assets.definitions"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Outcome:
    name: str  # a centre, or nightly_refresh
    status: str  # ok | skipped | failed | freed (a dead run's slots)
    detail: str = ""
    run_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def line(self) -> str:
        run = f"  (run {self.run_id[:8]})" if self.run_id else ""
        return f"{self.name:<16} {self.status:<8} {self.detail}{run}"


def process_tags() -> dict[str, str]:
    """Tags saying which process runs a run (see :func:`fail_dead_runs`)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs of this host still marked in progress whose process is gone: mark them failed and free
    their concurrency slots. Returns their run ids."""
    in_progress = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.CANCELING]
    dead = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=in_progress,
                                                         tags={HOST_TAG: socket.gethostname()})):
        run = record.dagster_run
        pid = int(run.tags.get(PID_TAG, "0"))
        if pid and pid != os.getpid() and not _alive(pid):
            instance.report_run_failed(run, f"the process that ran it (pid {pid}) ended without finishing it "
                                            "(killed?): marked failed, its pool slots freed")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            dead.append(run.run_id)
    return dead


def code_location(instance: dg.DagsterInstance):
    """The code location of ``workspace.yaml``, loaded in this process (its resources read the
    ``CLMS_*`` variables of this process)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.remote_representation.code_location import InProcessCodeLocation
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    target = LoadableTargetOrigin(module_name=CODE_MODULE, working_directory=str(PROJECT_ROOT))
    return InProcessCodeLocation(InProcessCodeLocationOrigin(target, location_name=CODE_LOCATION), instance=instance)


def execute_from_location(location, instance: dg.DagsterInstance, job_name: str, *, tags: dict[str, str],
                          partition_key: str | None = None):
    """Create a run of ``job_name`` with the code location as its origin (what the UI's launch does:
    the run is listed on the job's page) and execute it in this process."""
    from dagster._core.execution.api import execute_run

    [repository] = location.get_repositories().values()
    remote_job = repository.get_full_job(job_name)
    job = location.get_reconstructable_job(repository.name, job_name)
    if partition_key is not None:
        tags = {**tags, **job.get_definition().get_tags_for_partition_key(partition_key, selected_asset_keys=None)}
    plan = location.get_execution_plan(remote_job, QUIET, step_keys_to_execute=None, known_state=None,
                                       instance=instance).execution_plan_snapshot
    run = instance.create_run(
        job_name=job_name, run_id=None, run_config=QUIET, resolved_op_selection=None,
        step_keys_to_execute=plan.step_keys_to_execute, op_selection=None, status=None, root_run_id=None,
        parent_run_id=None, tags={**remote_job.tags, **tags}, job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan, parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
        asset_selection=None, asset_check_selection=None, asset_graph=repository.asset_graph)
    return execute_run(job, run, instance)


def set_sensor_cursor(location, instance: dg.DagsterInstance, sensor_name: str, cursor: str) -> None:
    """Store ``cursor`` as the sensor's cursor in the instance, as ``dagster sensor cursor --set`` does
    (the daemon reads it at the sensor's next tick); the sensor's status is left as it is."""
    [repository] = location.get_repositories().values()
    sensor = repository.get_sensor(sensor_name)
    stored = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
    state = sensor.get_current_instigator_state(stored)  # running by default, unless someone stopped it
    state = state.with_data(state.instigator_data._replace(cursor=cursor))
    if stored is None:
        instance.add_instigator_state(state)
    else:
        instance.update_instigator_state(state)


def sensor_cursor(location, instance: dg.DagsterInstance, sensor_name: str) -> str | None:
    """The sensor's cursor stored in the instance (None: never set)."""
    [repository] = location.get_repositories().values()
    sensor = repository.get_sensor(sensor_name)
    state = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
    return state.instigator_data.cursor if state is not None and state.instigator_data is not None else None


def _check_reason(evaluation) -> str:
    if evaluation.description:
        return evaluation.description
    summary = evaluation.metadata.get("summary")  # expectation checks: a count, then one line per failure
    lines = [line.strip() for line in str(summary.value).strip("`\n").splitlines()] if summary else []
    detail = next((line for line in lines if line.startswith("[")), lines[0] if lines else "failed")
    return f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}: {detail}"


def _reason(result) -> str:
    """One line: the failed blocking checks' descriptions, else the first failed step's error."""
    checks = [e for e in result.get_asset_check_evaluations()
              if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    if checks:
        return " | ".join(_check_reason(e) for e in checks)
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.event_specific_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description.strip().splitlines()[0]
            error = data.error
            while error.cause is not None:
                error = error.cause
            return f"{event.step_key}: {error.message.strip().splitlines()[0]}"
    return "the run failed (see its logs in the Dagster UI)"


def _outcome(name: str, result, done: str) -> Outcome:
    if not result.success:
        return Outcome(name, "failed", _reason(result), result.run_id)
    return Outcome(name, "ok", done, result.run_id)


def run_nightly(incoming: Path | None = None, *, refresh: bool = True,
                accept_shrinkage: Iterable[str] = ()) -> list[Outcome]:
    """Import every centre that delivered into the warehouse, then (``refresh``) the nightly refresh."""
    from clms_etl.centres import load_registry
    from clms_etl.config import Settings
    from clms_etl.deliveries import latest_delivery, refused_folders

    incoming = Path(incoming or Settings.from_env().incoming)
    os.environ["CLMS_INCOMING"] = str(incoming)  # the code location's drop folder, unless already loaded
    instance = ensure_instance()
    # an earlier failure, cleaned up: said, but not a failure of this nightly
    outcomes = [Outcome(f"run {run_id[:8]}", "freed", "its process had died: marked failed, its pool slots freed")
                for run_id in fail_dead_runs(instance)]
    location = code_location(instance)
    from assets.automation import drop_folder_sensor, imported_cursor
    from assets.definitions import defs

    if Path(defs.resources["drop_folder"].path).resolve() != incoming.resolve():
        raise ValueError(f"the code location was loaded with the drop folder {defs.resources['drop_folder'].path}, "
                         f"not {incoming}: start a new process with CLMS_INCOMING={incoming}")
    partitions = set(defs.resolve_job_def("import_centre").partitions_def.get_partition_keys())
    registry = load_registry(incoming)
    accept = set(accept_shrinkage)
    outcomes += [Outcome(name, "failed", "--accept-shrinkage names no centre of the registry") for name in
                 sorted(accept - set(registry))]
    imported = []
    for centre in registry:
        delivery = latest_delivery(incoming, centre)
        if delivery is None and not refused_folders(incoming, centre):
            outcomes.append(Outcome(centre, "skipped", f"no delivery in {incoming / centre}"))
            continue
        if centre not in partitions:
            outcomes.append(Outcome(centre, "failed", f"not a partition of the code location: start it with "
                                                      f"CLMS_INCOMING={incoming} so that it reads its centres.toml"))
            continue
        tags = {"clms/centre": centre, **process_tags()}
        if centre in accept:
            tags[ACCEPT_SHRINKAGE_TAG] = "true"
        result = execute_from_location(location, instance, "import_centre", tags=tags, partition_key=centre)
        imported.append(centre)
        loads = result.asset_materializations_for_node("centre_warehouse") if result.success else []
        status = str(loads[0].metadata["status"].value) if loads else ""
        outcomes.append(_outcome(centre, result, f"{status} delivery {delivery.date}" if delivery else status))
    # What was just imported (or refused) is not the sensor's to import again when the daemon starts.
    name = drop_folder_sensor.name
    set_sensor_cursor(location, instance, name, imported_cursor(incoming, imported,
                                                                sensor_cursor(location, instance, name)))
    if refresh:
        result = execute_from_location(location, instance, "nightly_refresh", tags=process_tags())
        outcomes.append(_outcome("nightly_refresh", result, "warehouse checks, analyses, report and exports"))
    return outcomes
