"""Shared copies of the per-patient ``analytics`` views on PostgreSQL: computed once for all their readers.

PostgreSQL computes ``analytics.patient_summary`` from every patient's operations and events each time
it is read (15–20 s at 1,000,000 patients), and the nightly refresh reads it in five processes: the
warehouse's Great Expectations, the survival analysis, its result suites, the exports and the report. A
**shared copy** holds the view's rows in ``analytics_copies.<view>``, with the state of the warehouse they
were computed from; a reader finding the warehouse in that state reads the copy (into its own temporary
copy, :meth:`~clms_etl.warehouse.Warehouse.temporary_copy`), any other makes it again first. The view
itself stays live for the analysts, who read it directly (the analyst role has no right here).

The state has three parts, all read in the transaction that makes the copy:

* ``warehouse_change``'s row count and latest transaction: a statement trigger on every base table the
  view reads appends a row in each transaction that writes it (:func:`trigger_statements`), so a write
  committed after the copy was made — a load, a rollback, a re-key, an edit by hand — makes it stale;
* the content of the result tables the view reads, but their ``run_id`` (``survival_population_rule``: every
  survival analysis rewrites it, usually with the same rule);
* the view's definition in the database (a migration that changes it).

It is stored as the copy's table comment, with its row count: the copy is ``UNLOGGED`` (not written to the
WAL: it is a cache), and a crash empties such a table, which a copy of rows found empty then shows.
Nothing is shared on DuckDB (it computes the view about as fast as it would read a copy), or for a role
without the right to make the copy; they read the view, as before.
"""

from __future__ import annotations

import sqlalchemy as sa

from clms_etl.warehouse import analytics
from clms_etl.warehouse.schema import ANALYTICS_SCHEMA, RESULT_TABLES, metadata, warehouse_change

COPIES_SCHEMA = "analytics_copies"
SHARED_VIEWS = tuple(v.name for v in analytics.VIEWS if v.per_patient)  # the views computed from every patient's rows
_FUNCTION = "warehouse_changed"
_LOCK_TIMEOUT = "1s"  # a copy being read elsewhere is not replaced under its readers: read the view instead


def trigger_statements() -> list[str]:
    """PostgreSQL DDL: the schema of the shared copies, and the statement triggers that append a row to
    ``warehouse_change`` for each transaction writing a base table of a shared view. ``SECURITY DEFINER``:
    the loader role, which may only append to ``warehouse_change``, writes it through the owner's function."""
    out = [f"CREATE SCHEMA IF NOT EXISTS {COPIES_SCHEMA}",
           f"CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
           f"SET search_path FROM CURRENT AS $$ BEGIN "
           f"INSERT INTO {warehouse_change.name} (transaction_id, table_name, changed_at) "
           f"VALUES (txid_current(), TG_TABLE_NAME, now()) ON CONFLICT DO NOTHING; RETURN NULL; END $$"]
    for table in sorted({t for view in SHARED_VIEWS for t in analytics.base_tables(view)}):
        out += [f"DROP TRIGGER IF EXISTS {_FUNCTION} ON {table}",
                f"CREATE TRIGGER {_FUNCTION} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}()"]
    return out


def _triggers_with_the_change_table(target, connection: sa.Connection, tables=(), **kw) -> None:
    # Warehouse.create on PostgreSQL (the tests' databases; production runs the migrations): once the
    # base tables exist, when warehouse_change was created with them
    if connection.dialect.name == "postgresql" and any(t is warehouse_change for t in tables or ()):
        for statement in trigger_statements():
            connection.exec_driver_sql(statement)


sa.event.listen(metadata, "after_create", _triggers_with_the_change_table)


def _state_sql(view: str) -> str:
    results = sorted(analytics.analytics_names(analytics.VIEWS_BY_NAME[view].sql) - set(analytics.VIEWS_BY_NAME))
    # their declared columns: not run_id, which every analysis writes anew
    rows = {name: f"CAST(ROW({', '.join(c.name for c in RESULT_TABLES[name].columns)}) AS TEXT)" for name in results}
    contents = " || '/' || ".join(
        f"md5(COALESCE((SELECT string_agg(r, ';' ORDER BY r) FROM (SELECT {rows[name]} AS r "
        f"FROM {ANALYTICS_SCHEMA}.{name}) t), ''))" for name in results) or "''"
    return (f"SELECT (SELECT COUNT(*) || '/' || COALESCE(MAX(transaction_id), 0) FROM {warehouse_change.name}) "
            f"|| '/' || md5(pg_get_viewdef('{ANALYTICS_SCHEMA}.{view}'::regclass)) || '/' || {contents}")


def _readable(conn: sa.Connection) -> bool:
    return bool(conn.execute(sa.text(
        "SELECT CASE WHEN to_regnamespace(:s) IS NULL OR to_regclass(:t) IS NULL THEN FALSE "
        "ELSE has_schema_privilege(:s, 'USAGE') AND has_table_privilege(:t, 'SELECT') END"),
        {"s": COPIES_SCHEMA, "t": warehouse_change.name}).scalar())


def _current(conn: sa.Connection, view: str) -> bool:
    """Whether ``analytics_copies.<view>`` holds the view's rows in the warehouse's present state."""
    relation = f"{COPIES_SCHEMA}.{view}"
    stored = conn.execute(sa.text("SELECT obj_description(to_regclass(:r), 'pg_class')"), {"r": relation}).scalar()
    if not stored:
        return False
    state, _, rows = stored.rpartition(" rows ")
    if state != conn.execute(sa.text(_state_sql(view))).scalar():
        return False
    # an unlogged table is emptied by a crash; its comment is not
    return rows == "0" or bool(conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {relation})")).scalar())


def _make(engine: sa.Engine, view: str) -> bool:
    """Make ``view``'s shared copy, one maker at a time; False when this role may not, or when the copy
    is being read and cannot be replaced now."""
    relation = f"{COPIES_SCHEMA}.{view}"
    with engine.connect() as conn:
        if not conn.execute(sa.text("SELECT has_schema_privilege(:s, 'CREATE')"), {"s": COPIES_SCHEMA}).scalar():
            return False
        conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": f"shared copy {view}"})
        conn.commit()
        try:
            # the state read and the rows copied from one snapshot, taken once the lock is held
            conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            if _current(conn, view):  # made by another process while this one waited
                conn.commit()
                return True
            conn.execute(sa.text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {relation}"))
            rows = conn.execute(sa.text(
                f"CREATE UNLOGGED TABLE {relation} AS SELECT * FROM {ANALYTICS_SCHEMA}.{view}")).rowcount
            state = conn.execute(sa.text(_state_sql(view))).scalar()
            conn.execute(sa.text(f"COMMENT ON TABLE {relation} IS '{state} rows {rows}'"))
            conn.commit()
            return True
        except sa.exc.DBAPIError as e:
            if getattr(e.orig, "sqlstate", None) not in ("55P03", "42501"):  # lock not available, no privilege
                raise
            conn.rollback()
            return False
        finally:
            conn.rollback()  # (after a failure: the session lock is released outside it)
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": f"shared copy {view}"})
            conn.commit()


def shared_copies(engine: sa.Engine, views) -> dict[str, str]:
    """``{view: analytics_copies.<view>}`` for each of ``views`` with a shared copy in the warehouse's present
    state, made first when it is missing or stale. A view left out is to be read as the view: not shared,
    on DuckDB, or for a role without the right (see the module's docstring).

    >>> copies = shared_copies(wh.engine, ["patient_summary"])  # doctest: +SKIP
    """
    wanted = [v for v in views if v in SHARED_VIEWS]
    if not wanted or engine.dialect.name != "postgresql":
        return {}
    out = {}
    with engine.connect() as conn:
        if not _readable(conn):
            return {}
        stale = [v for v in wanted if not _current(conn, v)]
    for view in wanted:
        if view not in stale or _make(engine, view):
            out[view] = f"{COPIES_SCHEMA}.{view}"
    return out


def drop_statements() -> list[str]:
    """PostgreSQL: drop every shared copy (a re-key: no copy keeps the old pseudonyms)."""
    return [f"DROP TABLE IF EXISTS {COPIES_SCHEMA}.{view}" for view in SHARED_VIEWS]
