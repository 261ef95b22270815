"""No secret in Dagster: the pseudonym key and the warehouse password stay in the environment.

A run of the code location's own resources (``local_resources()``) in a real instance
(a temporary ``DAGSTER_HOME`` with the project's SQLite storage), against a PostgreSQL warehouse
whose URL carries a password: neither the key nor the password is anywhere in ``DAGSTER_HOME``
(run storage, event logs, snapshots, compute logs: every file's raw bytes), nor in what the
webserver's Resources page serves (the repository snapshot behind its GraphQL API).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
from alembic import command

from assets.definitions import defs
from assets.resources import WarehouseResource, local_resources
from clms_etl import keys
from tests.warehouse.helpers import alembic_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.postgres


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{password}@{host}"  # trust auth on the test server: any password


def test_neither_the_key_nor_the_warehouse_password_reach_dagster_storage_or_graphql(pg_url, twin_drop, tmp_path,
                                                                                      monkeypatch):
    key = f"storage-test-key-{uuid.uuid4().hex}"
    password = f"Pg-pw-{uuid.uuid4().hex[:16]}"
    url = _with_password(pg_url, password)
    command.upgrade(alembic_config(pg_url), "head")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    for name, value in {"CLMS_WAREHOUSE_URL": url, keys.ENV_KEY: key, "CLMS_INCOMING": str(twin_drop),
                        "CLMS_OUTPUTS": str(tmp_path / "outputs"), "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CLMS_DEPLOYMENT", raising=False)

    code_location = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                                   resources=local_resources())
    with dg.DagsterInstance.get() as instance:
        result = code_location.resolve_job_def("import_centre").execute_in_process(
            partition_key="nice", instance=instance)
        assert result.success
        loaded = result.asset_materializations_for_node("centre_warehouse")[0].metadata
        assert str(getattr(loaded["warehouse"], "value", loaded["warehouse"])).startswith("postgresql (127.0.0.1")

    # what the webserver's Resources page serves (GraphQL resolves it from this snapshot)
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    snap = RepositorySnap.from_def(code_location.get_repository_def())
    served = serialize_value(snap)
    configured = {r.name: {k: json.loads(v) if isinstance(v, str) else v for k, v in r.configured_values.items()}
                  for r in snap.resources}
    assert configured["pseudonym_key"] == {"key_env": keys.ENV_KEY, "key_file_env": keys.ENV_KEY_FILE}
    assert configured["warehouse"]["url_env"] == "CLMS_WAREHOUSE_URL" and not configured["warehouse"]["url"]
    assert key not in served and password not in served

    raw = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert len(raw) > 100_000  # the instance did store the run
    assert key.encode() not in raw and password.encode() not in raw


def test_a_warehouse_url_with_a_password_cannot_be_a_resource_setting():
    with pytest.raises(Exception, match="password cannot be a configuration value"):
        WarehouseResource(url="postgresql+psycopg://loader:hunter2-hunter2@db/clms")
    assert WarehouseResource(url="duckdb:///tmp/warehouse.duckdb").resolved_url == "duckdb:///tmp/warehouse.duckdb"
