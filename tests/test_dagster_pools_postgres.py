"""The `warehouse` pool on production's Dagster storage (PostgreSQL): a claim that finds the pool's
limit row already there does not fail the run (dagster#33552, worked around in
assets/private_instance.py).

Found by the 1,000,000-patient night on PostgreSQL (bench/README.md): two import runs claimed the new
pool at the same moment, and the one that lost the race failed with ``InFailedSqlTransaction`` before
its load started. The race itself is a matter of timing; what the losing run does is not: it
initialises a pool whose row exists, which is what these tests do, one call after another.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from tests.warehouse.conftest import _libpq, pg_admin_url, pg_databases  # noqa: F401  (fixtures)

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).parents[1]
POOL = "warehouse"


@pytest.fixture
def production_home(pg_admin_url, pg_databases, tmp_path, monkeypatch):  # noqa: F811
    """A DAGSTER_HOME with deploy/dagster.production.yaml on a fresh PostgreSQL database."""
    info = psycopg.conninfo.conninfo_to_dict(_libpq(pg_admin_url))
    monkeypatch.setenv("DAGSTER_PG_HOST", str(info.get("host", "127.0.0.1")))
    monkeypatch.setenv("DAGSTER_PG_USER", str(info.get("user", "postgres")))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", str(info.get("password", "")))
    monkeypatch.setenv("DAGSTER_PG_DB", pg_databases.new().rsplit("/", 1)[1])
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.production.yaml", home / "dagster.yaml")
    return home


def _default_limit(home: Path) -> int:
    return yaml.safe_load((home / "dagster.yaml").read_text())["concurrency"]["pools"]["default_limit"]


def _slots(instance: dg.DagsterInstance) -> int:
    return instance.event_log_storage.get_concurrency_info(POOL).slot_count


def test_a_run_claiming_a_pool_another_run_just_created_does_not_fail(production_home):
    with dg.DagsterInstance.from_config(str(production_home)) as instance:
        storage = instance.event_log_storage
        assert storage.initialize_concurrency_limit_to_default(POOL)  # the run that won the race
        assert storage.initialize_concurrency_limit_to_default(POOL)  # the one that lost it
        assert _slots(instance) == _default_limit(production_home)
        assert storage.claim_concurrency_slot(POOL, "run-a", "centre_warehouse", 0).is_claimed


def test_a_changed_default_pool_limit_reaches_the_pool_on_postgresql(production_home):
    with dg.DagsterInstance.from_config(str(production_home)) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    config = yaml.safe_load((production_home / "dagster.yaml").read_text())
    config["concurrency"]["pools"]["default_limit"] = 2  # the operator narrows the pool
    (production_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(production_home)) as instance:
        assert instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
        assert _slots(instance) == 2
        assert [p.limit for p in instance.event_log_storage.get_pool_limits() if p.name == POOL] == [2]
