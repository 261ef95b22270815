"""PostgreSQL roles: connect as each one and prove what it can and cannot do."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from alembic import command

from clms_etl.keys import ENV_KEY
from clms_etl.warehouse import Warehouse, schema
from clms_etl.warehouse.docs import example_sql
from clms_etl.warehouse.roles import create_roles
from tests.warehouse.helpers import DAY2, TEST_KEY, alembic_config, delivery_files, load_twin, one_result_row, twin

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def roles_db(pg_databases, tmp_path_factory):
    """A migrated-equivalent warehouse with the twin loaded, and fresh loader / analyst roles."""
    url = pg_databases.new()
    root = tmp_path_factory.mktemp("roles")
    command.upgrade(alembic_config(url), "head")  # the production path
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_KEY, TEST_KEY.decode())
        with Warehouse(url) as wh:
            load_twin(wh, root, sources=("nice", "lyon", "molecular"))
    loader, analyst = pg_databases.role_name("loader"), pg_databases.role_name("analyst")
    create_roles(url, "loader-password-123", "analyst-password-123", loader_role=loader, analyst_role=analyst)
    create_roles(url, "loader-password-456", "analyst-password-456", loader_role=loader, analyst_role=analyst)  # idempotent
    return {"url": url, "root": root, "loader": pg_databases.url_as(url, loader),
            "analyst": pg_databases.url_as(url, analyst)}


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect("postgresql://" + url.split("://", 1)[1], autocommit=True)


def _denied(conn: psycopg.Connection, statement: str) -> None:
    with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
        conn.execute(statement)


def test_analyst_reads_the_analytics_views_and_nothing_else(roles_db):
    with _connect(roles_db["analyst"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM analytics.patient_summary").fetchone()[0] == 43
        assert conn.execute("SELECT COUNT(*) FROM analytics.survival").fetchone()[0] == 43 * 5
        assert conn.execute("SELECT COUNT(*) FROM analytics.gene_profile").fetchone()[0] > 0
        assert conn.execute("SELECT COUNT(*) FROM analytics.delivery_status").fetchone()[0] > 0
        conn.execute("SELECT * FROM analytics.query_summary").fetchall()
        for table in ("patient", "tumour", "event", "data_query", "delivery", "molecular_sample", "alembic_version"):
            _denied(conn, f"SELECT * FROM public.{table}")
        _denied(conn, "SELECT value FROM public.data_query")
        _denied(conn, "INSERT INTO public.patient (patient_id) VALUES ('P00000000000000000000')")
        _denied(conn, "DELETE FROM public.event")
        _denied(conn, "CREATE TABLE analytics.mine (x int)")
        _denied(conn, "CREATE TABLE public.mine (x int)")
        _denied(conn, "CREATE TEMP TABLE mine (x int)")
        _denied(conn, "CREATE OR REPLACE VIEW analytics.patient_summary AS SELECT 1 AS x")


def test_the_example_sql_runs_as_the_analyst(roles_db):
    with _connect(roles_db["analyst"]) as conn:
        for query in example_sql():
            conn.execute(query.sql).fetchall()


def test_loader_loads_but_cannot_change_the_schema(roles_db):
    loader_url = roles_db["loader"]
    with Warehouse(loader_url) as wh:
        wh.create()  # what a pipeline does at start: no DDL needed, none attempted
        nice = dataclasses.replace(twin()["nice"], delivery_date=DAY2)
        report = wh.load_delivery("nice", DAY2, delivery_files(roles_db["root"], "nice", DAY2, "loader"), nice,
                                  "as-loader", expectations=False)
        assert report.status == "loaded" and report.rows_replaced["patient"] == 24
        assert wh.read_sql("SELECT COUNT(*) AS n FROM delivery WHERE run_id = 'as-loader'")["n"][0] == 1
    with _connect(loader_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM analytics.patient_summary").fetchone()[0] == 43
        _denied(conn, "DROP TABLE public.patient")
        _denied(conn, "ALTER TABLE public.patient ADD COLUMN name text")
        _denied(conn, "CREATE TABLE public.names (name text)")
        _denied(conn, "CREATE TABLE analytics.names (name text)")
        _denied(conn, "DROP VIEW analytics.survival")
        _denied(conn, "UPDATE public.alembic_version SET version_num = 'x'")


def test_a_role_without_grant_cannot_connect(roles_db, pg_databases):
    stranger = pg_databases.role_name("stranger")
    with _connect(roles_db["url"]) as admin:
        admin.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(stranger)))
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        _connect(pg_databases.url_as(roles_db["url"], stranger)).close()


def test_roles_need_a_postgresql_warehouse_and_real_passwords(roles_db):
    with pytest.raises(ValueError, match="PostgreSQL"):
        create_roles("duckdb:///w.duckdb", "x" * 12, "y" * 12)
    with pytest.raises(ValueError, match="at least 12"):
        create_roles(roles_db["url"], "short", "y" * 12)



def test_loader_rewrites_the_result_tables_and_the_analyst_only_reads_them(roles_db):
    spec = next(iter(schema.RESULT_TABLES.values()))
    with Warehouse(roles_db["loader"]) as wh:
        assert wh.replace_results({spec.name: one_result_row(spec)}, "as-loader") == {spec.name: 1}
    with _connect(roles_db["analyst"]) as conn:
        assert conn.execute(f"SELECT run_id FROM analytics.{spec.name}").fetchall() == [("as-loader",)]
        _denied(conn, f"DELETE FROM analytics.{spec.name}")
        _denied(conn, f"INSERT INTO analytics.{spec.name} (run_id) VALUES ('x')")
    with _connect(roles_db["loader"]) as conn:
        _denied(conn, f"DROP TABLE analytics.{spec.name}")
        _denied(conn, f"ALTER TABLE analytics.{spec.name} ADD COLUMN name text")


def test_loads_write_the_audit_log_which_the_analyst_cannot_write_and_the_loader_only_appends(roles_db):
    with _connect(roles_db["url"]) as conn:  # the owner: the fixture's loads are in the audit trail
        actions = conn.execute("SELECT action, COUNT(*) FROM public.audit_log WHERE run_id = 'test' "
                               "GROUP BY action").fetchall()
        assert ("load", 3) in actions
        assert conn.execute("SELECT COUNT(*) FROM public.warehouse_key WHERE is_current").fetchone()[0] == 1
    row = ("INSERT INTO public.audit_log (audit_id, action, recorded_at, code_version) "
           "VALUES ('forged', 'load', now(), 'x')")
    with _connect(roles_db["analyst"]) as conn:
        _denied(conn, row)
        _denied(conn, "SELECT * FROM public.audit_log")
        _denied(conn, "UPDATE public.warehouse_key SET is_current = FALSE")
    with _connect(roles_db["loader"]) as conn:
        _denied(conn, "UPDATE public.audit_log SET os_user = 'someone else'")
        _denied(conn, "DELETE FROM public.audit_log")
        _denied(conn, "DELETE FROM public.audit_delivery")
        _denied(conn, "TRUNCATE public.audit_log")
        conn.execute("SELECT COUNT(*) FROM public.audit_log").fetchone()


def test_the_loader_makes_the_shared_copy_which_the_analyst_cannot_read(roles_db):
    from clms_etl.warehouse.shared_copy import COPIES_SCHEMA

    with Warehouse(roles_db["loader"]) as wh:
        with wh.temporary_copy("step_copy", view="patient_summary") as copy:
            assert wh.read_sql(f"SELECT COUNT(*) AS n FROM {copy}")["n"][0] == 43
        owner = wh.read_sql("SELECT tableowner FROM pg_tables WHERE schemaname = :s AND tablename = 'patient_summary'",
                            {"s": COPIES_SCHEMA})["tableowner"].to_list()
    assert owner == [roles_db["loader"].split("://", 1)[1].split("@", 1)[0]]  # made by the loader, not the owner
    with _connect(roles_db["analyst"]) as conn:
        _denied(conn, f"SELECT * FROM {COPIES_SCHEMA}.patient_summary")
    with _connect(roles_db["loader"]) as conn:  # its state: append-only, even for the loader
        _denied(conn, "DELETE FROM public.warehouse_change")
        _denied(conn, "TRUNCATE public.warehouse_change")


def test_the_loader_cannot_vacuum_the_tables_it_loads_and_the_refresh_says_so(roles_db):
    """The loader owns no table (PostgreSQL 15-16: only the owner or a superuser vacuums; 17: the MAINTAIN
    privilege): ``refresh_statistics`` names every table it left to autovacuum, and the owner's none."""
    with Warehouse(roles_db["loader"]) as wh:
        assert wh.refresh_statistics() == list(schema.LOAD_ORDER)
    with Warehouse(roles_db["url"]) as wh:
        assert wh.refresh_statistics() == []
        vacuumed = wh.read_sql("SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL")
    assert set(schema.LOAD_ORDER) <= set(vacuumed["relname"])
