"""PostgreSQL roles of the warehouse: a loader that writes, an analyst that only reads ``analytics``.

:func:`create_roles` is run once per database by its owner (the role that ran the migrations),
after ``alembic upgrade head``; running it again updates the passwords and re-applies the
grants (idempotent).

* ``clms_loader`` — LOGIN; ``USAGE`` on the base schema; ``SELECT, INSERT, UPDATE, DELETE`` on
  the base tables (not ``alembic_version``) and on the result tables of ``analytics``; no DDL:
  it cannot create, alter or drop anything but the temporary staging tables of its own loads;
  only ``SELECT, INSERT`` on the audit trail (``audit_log``, ``audit_delivery``): it appends, it
  never rewrites;
  ``SELECT`` on the analytics views. It is the role of the nightly pipeline (loads and Great
  Expectations).
* ``clms_analyst`` — LOGIN; ``USAGE`` on ``analytics`` and ``SELECT`` on its views, nothing
  else: no access to the base schema (so neither the base tables nor ``data_query`` and its
  values; the views run with their owner's rights), no temporary tables, and its sessions are
  read-only by default.

``PUBLIC`` loses its default rights on the database (``CONNECT``, ``TEMPORARY``) and on the base
schema (``USAGE``): only the roles granted here, the owner and superusers get in. Default
privileges make the views and tables the owner (re)creates later — ``Warehouse.create()``
recreates the views, a new migration adds tables — inherit the same grants.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from clms_etl.warehouse.load import normalise_url
from clms_etl.warehouse.schema import ANALYTICS_SCHEMA, APPEND_ONLY_TABLES, results_metadata
from clms_etl.warehouse.shared_copy import COPIES_SCHEMA

LOADER_ROLE = "clms_loader"
ANALYST_ROLE = "clms_analyst"
BASE_WRITE = "SELECT, INSERT, UPDATE, DELETE"


def _conninfo(url: str) -> str:
    """A libpq URL (psycopg) from a SQLAlchemy URL."""
    url = normalise_url(url)
    if not url.startswith("postgresql+psycopg://"):
        raise ValueError("roles exist only on a PostgreSQL warehouse (postgresql+psycopg://...)")
    return "postgresql://" + url[len("postgresql+psycopg://"):]


def create_roles(url: str, loader_password: str, analyst_password: str, *, loader_role: str = LOADER_ROLE,
                 analyst_role: str = ANALYST_ROLE) -> None:
    """Create (or update) the loader and analyst roles and grant them their rights on ``url``'s database."""
    for name, password in ((loader_role, loader_password), (analyst_role, analyst_password)):
        if not password or len(password) < 12:
            raise ValueError(f"the password of {name} must have at least 12 characters")
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        base = conn.execute("SELECT current_schema()").fetchone()[0]
        database = conn.execute("SELECT current_database()").fetchone()[0]
        has_analytics = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [ANALYTICS_SCHEMA]).fetchone()
        if not has_analytics:
            raise RuntimeError(f"schema {ANALYTICS_SCHEMA} missing: run `alembic upgrade head` before creating roles")
        with conn.transaction():
            for name, password in ((loader_role, loader_password), (analyst_role, analyst_password)):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
                verb = "ALTER" if exists else "CREATE"
                conn.execute(sql.SQL(
                    "{} ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                ).format(sql.SQL(verb), sql.Identifier(name), sql.Literal(password)))
            for statement in _grants(database, base, loader_role, analyst_role, conn):
                conn.execute(statement)


def _grants(database: str, base: str, loader: str, analyst: str, conn) -> list[sql.Composable]:
    db, bs, an = sql.Identifier(database), sql.Identifier(base), sql.Identifier(ANALYTICS_SCHEMA)
    lo, ro = sql.Identifier(loader), sql.Identifier(analyst)
    out = [
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(db, lo, ro),
        sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(db, lo),  # staging tables of the loads
        sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM {}").format(db, ro),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(bs),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(an),
        # loader: write the base tables, read the views
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(bs, lo),
        sql.SQL("GRANT " + BASE_WRITE + " ON ALL TABLES IN SCHEMA {} TO {}").format(bs, lo),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}").format(an, lo, ro),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}, {}").format(an, lo, ro),
        # loader: rewrite the result tables of the nightly analyses (clms_etl.results)
        *[sql.SQL("GRANT " + BASE_WRITE + " ON TABLE {}.{} TO {}").format(an, sql.Identifier(t.name), lo)
          for t in results_metadata.tables.values()],
        # analyst: nothing in the base schema
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(bs, ro),
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(bs, ro),
        sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}, {}").format(an, lo, ro),
        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ro),
        # objects created later by the owner get the same rights
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT " + BASE_WRITE + " ON TABLES TO {}").format(bs, lo),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}, {}").format(an, lo, ro),
    ]
    for table in APPEND_ONLY_TABLES:  # the audit trail: the loader appends, never rewrites
        if conn.execute("SELECT to_regclass(%s)", [f"{base}.{table}"]).fetchone()[0] is not None:
            out.append(sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON TABLE {}.{} FROM {}").format(
                bs, sql.Identifier(table), lo))
    if conn.execute("SELECT to_regnamespace(%s)", [COPIES_SCHEMA]).fetchone()[0] is not None:
        # loader: make and read the shared copies of the views (clms_etl.warehouse.shared_copy); the analyst
        # reads the views themselves
        cs = sql.Identifier(COPIES_SCHEMA)
        out += [sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(cs),
                sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(cs, lo)]
    if conn.execute("SELECT to_regclass(%s)", [f"{base}.alembic_version"]).fetchone()[0] is not None:
        out.append(sql.SQL("REVOKE ALL ON TABLE {}.alembic_version FROM {}").format(bs, lo))
        out.append(sql.SQL("GRANT SELECT ON TABLE {}.alembic_version TO {}").format(bs, lo))
    return out


def main() -> None:  # pragma: no cover - thin command wrapper, create_roles is tested
    """``python -m clms_etl.warehouse.roles``: roles on ``$CLMS_WAREHOUSE_URL`` (run by the database owner).

    Passwords come from ``CLMS_LOADER_PASSWORD`` and ``CLMS_ANALYST_PASSWORD`` (never from the
    command line, which other users of the machine can read).
    """
    import os
    import sys

    missing = [v for v in ("CLMS_WAREHOUSE_URL", "CLMS_LOADER_PASSWORD", "CLMS_ANALYST_PASSWORD") if not os.environ.get(v)]
    if missing:
        sys.exit(f"set {', '.join(missing)}")
    create_roles(os.environ["CLMS_WAREHOUSE_URL"], os.environ["CLMS_LOADER_PASSWORD"], os.environ["CLMS_ANALYST_PASSWORD"])
    print(f"roles {LOADER_ROLE} and {ANALYST_ROLE} ready")


if __name__ == "__main__":  # pragma: no cover
    import clms_etl.analyses  # noqa: F401  (an entry point: declares the result tables to grant on)

    main()
