"""Production's Dagster storage (PostgreSQL) keeps its connections open in each process
(assets/private_instance.py, ``_hold_storage_connections``).

Found by the 1,000,000-patient night on PostgreSQL (bench/README.md, "Session 15"): Dagster's
PostgreSQL storages opened a new connection, hence a new server process, for every read and write:
about 9,000 a night, 7,700 of them during the imports (the run workers' events, the waiting steps'
pool claims four times a second), at about 4 ms of the server's CPU each.
"""

from __future__ import annotations

import os

import dagster as dg
import pytest

from tests.test_dagster_pools_postgres import POOL, production_home  # noqa: F401  (fixture)
from tests.warehouse.conftest import _libpq, pg_admin_url, pg_databases  # noqa: F401  (fixtures)
from tests.warehouse.helpers import settled_statistics

pytestmark = pytest.mark.postgres


def _sessions(admin: str, database: str) -> int:
    """Sessions ever opened on ``database`` (``pg_stat_database``), once every ended one is counted."""
    return settled_statistics(admin, "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,))[0][0]


def test_a_process_reuses_its_storage_connections_on_postgresql(production_home, pg_admin_url):  # noqa: F811
    admin, database = _libpq(pg_admin_url), os.environ["DAGSTER_PG_DB"]
    with dg.DagsterInstance.from_config(str(production_home)) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(POOL)
        instance.get_runs(limit=1)
        before = _sessions(admin, database)
        for attempt in range(20):  # what a run does: read runs, write and read events, claim its pool
            instance.get_runs(limit=1)
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="probe"))
            instance.get_latest_materialization_event(dg.AssetKey("probe"))
            storage.claim_concurrency_slot(POOL, f"run-{attempt}", "centre_warehouse", 0)
        opened = _sessions(admin, database) - before
    assert opened <= 3, f"{opened} connections opened for 80 storage calls: one per call, not one per storage"
