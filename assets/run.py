"""The whole nightly through Dagster, without the UI: ``clms-etl run`` and ``make demo``.

One import run per centre that delivered (a partition of ``import_centre``), then one run of
``nightly_refresh``, all in this machine's instance (``DAGSTER_HOME``), so they show in the UI
afterwards. A centre with no delivery is skipped and said so; a centre whose drop folder holds a
refused folder (not a real, past date) runs, and fails naming it.

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
# The runs' full logs are in the Dagster UI; the terminal gets warnings and the summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


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


def _definitions(incoming: Path) -> dg.Definitions:
    """The code location's jobs with the drop folder at ``incoming``."""
    from assets.definitions import defs
    from assets.resources import DropFolder

    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                          resources={**defs.resources, "drop_folder": DropFolder(path=str(incoming))})


def _check_reason(evaluation) -> str:
    if evaluation.description:
        return evaluation.description
    summary = evaluation.metadata.get("summary")  # expectation checks: a count, then one line per failure
    lines = [line.strip() for line in str(summary.value).strip("`\n").splitlines()] if summary else []
    detail = next((line for line in lines if line.startswith("[")), lines[0] if lines else "failed")
    return f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}: {detail}"


def _reason(result: dg.ExecuteInProcessResult) -> str:
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


def _outcome(name: str, result: dg.ExecuteInProcessResult, done: str) -> Outcome:
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
    instance = ensure_instance()
    # an earlier failure, cleaned up: said, but not a failure of this nightly
    outcomes = [Outcome(f"run {run_id[:8]}", "freed", "its process had died: marked failed, its pool slots freed")
                for run_id in fail_dead_runs(instance)]
    defs = _definitions(incoming)
    job = defs.resolve_job_def("import_centre")
    partitions = set(job.partitions_def.get_partition_keys())
    registry = load_registry(incoming)
    accept = set(accept_shrinkage)
    outcomes += [Outcome(name, "failed", "--accept-shrinkage names no centre of the registry") for name in
                 sorted(accept - set(registry))]
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
        result = job.execute_in_process(partition_key=centre, instance=instance, raise_on_error=False,
                                        run_config=QUIET, tags=tags)
        loads = result.asset_materializations_for_node("centre_warehouse") if result.success else []
        status = str(loads[0].metadata["status"].value) if loads else ""
        outcomes.append(_outcome(centre, result, f"{status} delivery {delivery.date}" if delivery else status))
    if refresh:
        result = defs.resolve_job_def("nightly_refresh").execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET, tags=process_tags())
        outcomes.append(_outcome("nightly_refresh", result, "warehouse checks, analyses, report and exports"))
    return outcomes
