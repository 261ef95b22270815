"""This machine's Dagster instance: ``DAGSTER_HOME``, its ``dagster.yaml`` and its storage, created once.

Dagster creates an instance's SQLite storage lazily, in whichever process opens it first: five runs
started together on a fresh home all create the tables and stamp Alembic, and the home is left
with "alembic_version has more than one head" for good. :func:`ensure_instance` creates it under
an exclusive file lock before any run starts: the first process creates, the others wait and
then find it made.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import dagster as dg

from clms_etl.files import private_home

DEFAULT_DAGSTER_HOME = Path("data/dagster_home")
# The one-machine instance (SQLite storage, `warehouse` pool of 1, run monitoring on).
LOCAL_INSTANCE_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.local.yaml"


def ensure_instance() -> dg.DagsterInstance:
    """The instance of ``DAGSTER_HOME`` (default ``data/dagster_home``), its storage created once."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".storage.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        if not (home / "dagster.yaml").exists():
            shutil.copyfile(LOCAL_INSTANCE_YAML, home / "dagster.yaml")
        instance = dg.DagsterInstance.get()
        # touch every storage: run, schedule and event log (with its concurrency tables)
        instance.has_run("storage-ready")
        instance.all_instigator_state()
        instance.event_log_storage.get_concurrency_keys()
    private_home(home)  # owner-only, whoever created it and whatever the storage just wrote
    return instance
