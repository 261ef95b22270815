"""Fixtures of the warehouse tests: a DuckDB file in tmp_path, fresh PostgreSQL databases.

PostgreSQL: ``CLMS_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
names a server and a role allowed to create databases; every test module gets its own
databases (``clms_wh_<random>``), dropped when the module ends. Without a reachable server the
PostgreSQL tests are skipped, unless ``CLMS_REQUIRE_POSTGRES=1`` (``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from psycopg import sql

from clms_etl.keys import ENV_KEY, ENV_KEY_FILE
from tests.warehouse.helpers import TEST_KEY

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _libpq(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def _with_database(url: str, database: str, user: str | None = None) -> str:
    info = psycopg.conninfo.conninfo_to_dict(_libpq(url))
    info["dbname"] = database
    if user:
        info["user"] = user
        info.pop("password", None)
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    auth = info.get("user", "postgres") + (f":{info['password']}" if info.get("password") else "")
    return f"postgresql+psycopg://{auth}@{host}:{port}/{database}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get("CLMS_TEST_POSTGRES_URL", DEFAULT_PG_URL)
    try:
        with psycopg.connect(_libpq(url), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        message = (f"PostgreSQL not reachable at {url} ({exc.__class__.__name__}): "
                   "set CLMS_TEST_POSTGRES_URL / start PostgreSQL to run")
        if os.environ.get("CLMS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (CLMS_REQUIRE_POSTGRES=1 makes these tests mandatory)")
        pytest.skip(message)
    return url


class PgDatabases:
    """Creates fresh databases on demand; drops them (and test roles) when the module ends."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.databases: list[str] = []
        self.roles: list[str] = []

    def new(self) -> str:
        name = f"clms_wh_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        return _with_database(self.admin_url, name)

    def url_as(self, url: str, user: str) -> str:
        return _with_database(url, url.rsplit("/", 1)[1], user)

    def role_name(self, kind: str) -> str:
        name = f"clms_test_{kind}_{uuid.uuid4().hex[:8]}"
        self.roles.append(name)
        return name

    def reader_without_temporary(self, url: str) -> str:
        """``url`` as a new role that reads every table and view but may create no temporary table (as
        the analyst role, clms_etl.warehouse.roles): TEMPORARY revoked from PUBLIC on that database."""
        role, database = self.role_name("reader"), url.rsplit("/", 1)[1]
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA analytics TO {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public, analytics TO {}").format(
                sql.Identifier(role)))
        return self.url_as(url, role)

    def cleanup(self) -> None:
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            for name in self.databases:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in self.roles:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def pg_databases(pg_admin_url):
    dbs = PgDatabases(pg_admin_url)
    yield dbs
    dbs.cleanup()


@pytest.fixture
def pg_url(pg_databases) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg_databases.new()


@pytest.fixture(autouse=True)
def pseudonym_key_env(monkeypatch):
    """The warehouse tests run with a test key (PostgreSQL refuses to run without one)."""
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_KEY, TEST_KEY.decode())


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path) -> str:
    """An empty warehouse URL on each backend."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def loaded(warehouse_url, tmp_path):
    """The twin's deliveries loaded into an empty warehouse (``warehouse_url``)."""
    from clms_etl.warehouse import Warehouse
    from tests.warehouse.helpers import load_twin

    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        yield wh
