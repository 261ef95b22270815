"""Steps off the nightly refresh's critical path yield the CPU to the steps on it.

On two cores the PostgreSQL refresh is CPU-bound (bench/README.md, "Session 14"): the Python steps
and the database server share the cores. The night waits on one chain — the warehouse check, the
survival analysis, its result suites, then the exports — while OMOP and the clinician report
finish before the exports do. OMOP (57 CPU-seconds of its own) ran beside the survival analysis at the
same priority: the analysis took 39 s alone, 71 s in the night. A step of those
runs its process at a lower priority (``nice`` +:data:`BACKGROUND_NICENESS`): it still gets every
cycle the chain leaves.

On DuckDB too: OMOP reads its rows first, then builds the CDM from them beside the analyses (a DuckDB
file's reader keeps its writers out only while it reads).

Every thread of the process: on Linux a thread has its own nice value and ``os.nice`` changes the
calling thread's only, so the pools polars, Arrow or DuckDB started before (OMOP reads its rows with
them first) kept working at full priority.

Only in a process of its own (the multiprocess executor forks one per step, which ends with the
step): a process running several steps (the in-process executor of unchanged nights, ``clms-etl
run``, tests) keeps its priority. On Kubernetes each step is its own pod and the scheduler decides.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import dagster as dg

BACKGROUND_NICENESS = 10


def background_priority(context: dg.AssetExecutionContext) -> dict[str, str]:
    """Lower this step's process priority when the process runs this step alone (see the module); returns
    the asset's ``cpu_priority`` metadata saying what was done."""
    plan = context.get_step_execution_context().execution_plan
    if len(plan.step_keys_to_execute) != 1 or multiprocessing.parent_process() is None:
        return {"cpu_priority": "unchanged (the step shares its process)"}
    if os.name != "posix":  # (os.nice: Unix only)
        return {"cpu_priority": "unchanged (no nice on this system)"}
    niceness, threads = lower_priority(BACKGROUND_NICENESS)
    return {"cpu_priority": f"background: nice {niceness} (off the refresh's critical path, {threads} threads)"}


def lower_priority(increment: int) -> tuple[int, int]:
    """``os.nice(increment)`` for the calling thread, then every other thread of the process brought to the
    same niceness (one already lower keeps its own); returns that niceness and the threads at it. Where the
    threads are not listed in ``/proc/self/task`` (not Linux), ``os.nice`` is the process's, as POSIX has it.
    Threads started afterwards inherit the niceness of the thread that starts them."""
    niceness = os.nice(increment)
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return niceness, 1
    me, lowered = threading.get_native_id(), 1
    for task in tasks.iterdir():
        tid = int(task.name)
        if tid == me:
            continue
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(niceness, os.getpriority(os.PRIO_PROCESS, tid)))
            lowered += 1
        except ProcessLookupError:  # (the thread ended meanwhile)
            pass
    return niceness, lowered
