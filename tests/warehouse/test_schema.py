"""The declared schema: both backends build it, Alembic's migrated schema equals it."""

from __future__ import annotations

import polars as pl
import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from clms_etl import model
from clms_etl.warehouse import SchemaMismatch, Warehouse, analytics, schema
from tests.warehouse.helpers import alembic_config, migrated_and_declared


def test_canonical_tables_have_the_model_columns_plus_their_delivery():
    for name, columns in model.TABLES.items():
        assert schema.column_names(name) == [*columns, "delivery_id"], name


def test_every_table_and_column_is_commented():
    for table in [*schema.metadata.tables.values(), *schema.results_metadata.tables.values()]:
        assert table.comment, table.name
        for column in table.columns:
            assert column.comment, f"{table.name}.{column.name}"


def test_code_list_checks_cover_the_vocabulary():
    tumour = schema.table("tumour")
    names = {c.name for c in tumour.constraints if isinstance(c, sa.CheckConstraint)}
    assert "ck_tumour_site_code" in names and "ck_tumour_necrosis_score_code" in names
    assert any("'head_neck'" in str(c.sqltext) for c in tumour.constraints if isinstance(c, sa.CheckConstraint))


def _comments(wh: Warehouse) -> dict[tuple[str, str], str]:
    if wh.backend == "duckdb":
        sql = ("SELECT table_name, column_name, comment FROM duckdb_columns() "
               "WHERE schema_name IN ('main', 'analytics') AND comment IS NOT NULL")
    else:
        sql = ("SELECT c.relname, a.attname, col_description(c.oid, a.attnum) FROM pg_class c "
               "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid "
               "WHERE n.nspname IN ('public', 'analytics') AND a.attnum > 0 AND NOT a.attisdropped "
               "AND col_description(c.oid, a.attnum) IS NOT NULL")
    return {(t, c): text for t, c, text in wh.read_sql(sql).iter_rows()}


def test_both_backends_create_the_schema_with_comments(warehouse_url):
    with Warehouse(warehouse_url) as wh:
        wh.create()
        wh.create()  # idempotent
        comments = _comments(wh)
        for table in [*schema.metadata.tables.values(), *schema.results_metadata.tables.values()]:
            for column in table.columns:
                assert comments.get((table.name, column.name)) == column.comment
        for view in analytics.VIEWS:
            frame = wh.read_sql(f"SELECT * FROM {view.qualified} WHERE 1 = 0")
            assert frame.columns == [c for c, _ in view.columns], view.name
            for column, text in view.columns:
                assert comments.get((view.name, column)) == text, (view.name, column)


def test_a_schema_out_of_date_is_named(tmp_path):
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.create()
        with wh.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE patient DROP COLUMN record_complete")
        with pytest.raises(SchemaMismatch, match="patient: missing columns \\['record_complete'\\]"):
            wh.check_schema()


def test_opening_a_current_duckdb_warehouse_leaves_its_views_in_place(tmp_path, monkeypatch):
    # every step of the night opens the warehouse: unchanged views are not dropped and recreated
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.create()
    recreated = []
    monkeypatch.setattr(analytics, "create_analytics", recreated.append)
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.ensure_schema()
    assert recreated == []


@pytest.mark.parametrize("change", ["sql", "description", "column comment"])
def test_duckdb_views_that_differ_from_the_code_are_recreated(tmp_path, monkeypatch, change):
    import dataclasses

    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.create()
    view = analytics.VIEWS_BY_NAME["delivery_status"]
    if change == "sql":
        changed = dataclasses.replace(view, sql=view.sql.replace("WHERE d.is_current", "WHERE d.is_current AND TRUE"))
    elif change == "description":
        changed = dataclasses.replace(view, description=view.description + " Changed.")
    else:
        changed = dataclasses.replace(view, columns=((view.columns[0][0], "Changed."), *view.columns[1:]))
    monkeypatch.setattr(analytics, "VIEWS", tuple(changed if v.name == view.name else v for v in analytics.VIEWS))
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.ensure_schema()
        with wh.engine.connect() as conn:
            assert analytics.duckdb_views_current(conn)
        stored = wh.read_sql("SELECT sql, comment FROM duckdb_views() WHERE view_name = 'delivery_status'").row(0)
    assert ("AND true" in stored[0].replace("TRUE", "true")) == (change == "sql")
    assert stored[1].endswith("Changed.") == (change == "description")


def _views(url: str) -> dict[str, str]:
    libpq = "postgresql://" + url.split("://", 1)[1]
    with psycopg.connect(libpq) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_viewdef(c.oid, true), obj_description(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'analytics' AND c.relkind = 'v'"
        ).fetchall()
    return {name: (definition, comment) for name, definition, comment in rows}


def _constraints(url: str) -> dict[str, str]:
    """Every constraint (keys, foreign keys, checks) and comment: what autogenerate does not compare."""
    libpq = "postgresql://" + url.split("://", 1)[1]
    with psycopg.connect(libpq) as conn:
        rows = conn.execute(
            "SELECT c.conrelid::regclass::text || '.' || c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname IN ('public', 'analytics')"
        ).fetchall()
        rows += conn.execute(
            "SELECT 'comment ' || c.relname || '.' || coalesce(a.attname, ''), d.description FROM pg_description d "
            "JOIN pg_class c ON c.oid = d.objoid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0 "
            "WHERE n.nspname IN ('public', 'analytics')"
        ).fetchall()
    return dict(rows)


@pytest.mark.postgres
def test_migrated_schema_equals_the_declared_one(pg_databases):
    migrated, declared = pg_databases.new(), pg_databases.new()
    command.upgrade(alembic_config(migrated), "head")
    engine = sa.create_engine(migrated)
    try:
        with engine.connect() as conn:
            opts = {"compare_type": True, "include_schemas": True,
                    "include_name": lambda name, type_, parents: type_ != "schema" or name in (None, "analytics")}
            diffs = compare_metadata(MigrationContext.configure(conn, opts=opts),
                                     [schema.metadata, schema.results_metadata])
    finally:
        engine.dispose()
    assert diffs == []
    with Warehouse(declared) as wh:
        wh.create()
    assert _views(migrated) == _views(declared)
    migrated_constraints, declared_constraints = _constraints(migrated), _constraints(declared)
    migrated_constraints.pop("alembic_version.alembic_version_pkc")
    assert len(declared_constraints) > 200
    assert migrated_constraints == declared_constraints
    # and back down to nothing, and up again
    command.downgrade(alembic_config(migrated), "base")
    command.upgrade(alembic_config(migrated), "head")
    assert _views(migrated) == _views(declared)


@pytest.mark.postgres
def test_every_table_a_delivery_owns_finds_a_deliverys_rows_by_index_on_postgresql(pg_databases):
    """A replacing load counts, upserts over and deletes the rows of the source's previous delivery: without an
    index leading with ``delivery_id``, each of those statements read the whole table, for every load of the
    night (a 40-centre replacing night at 1,000,000 patients: bench/README.md, "Session 15"). Both the migrated
    and the declared schema have it."""
    owned = [t.name for t in schema.metadata.sorted_tables if "delivery_id" in t.c and t.name != "delivery"]
    assert {"patient", "tumour", "surgery", "event", "gene_status", "data_query"} <= set(owned)
    for url in migrated_and_declared(pg_databases):
        with psycopg.connect("postgresql://" + url.split("://", 1)[1]) as conn:
            leading = {table for table, in conn.execute(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND a.attname = 'delivery_id'")}
        assert set(owned) <= leading, f"{url}: no index leading with delivery_id on {sorted(set(owned) - leading)}"


@pytest.mark.postgres
def test_a_result_table_too_large_for_a_unique_index_has_none_and_its_key_is_checked_on_write(pg_databases):
    """Each night replaces ph_residual's rows (one per event and term: 4.1 million at 1,000,000 patients) in one
    transaction; a unique index checked every new key against the rows being replaced (41 s of the survival
    step's write, 1.5 s without: bench/README.md, "Session 16"). The key is still checked, before the write."""
    from clms_etl.survival.tables import PH_RESIDUAL

    assert not PH_RESIDUAL.indexed and all(spec.indexed for name, spec in schema.RESULT_TABLES.items()
                                           if name != PH_RESIDUAL.name)
    for url in migrated_and_declared(pg_databases):
        with psycopg.connect("postgresql://" + url.split("://", 1)[1]) as conn:
            assert conn.execute("SELECT COUNT(*) FROM pg_indexes WHERE schemaname = 'analytics' "
                                "AND tablename = 'ph_residual'").fetchone()[0] == 0
            assert conn.execute("SELECT COUNT(*) FROM pg_indexes WHERE schemaname = 'analytics' "
                                "AND tablename = 'ph_test'").fetchone()[0] == 1
    row = {"endpoint": "OS", "model": "univariate", "term": "age", "event_index": 1, "time_months": 2.0,
           "transformed_time": 0.5, "scaled_residual": 0.1}
    with pytest.raises(ValueError, match="duplicate keys"):
        PH_RESIDUAL.conform(pl.DataFrame([row, {**row, "scaled_residual": 0.2}]))
