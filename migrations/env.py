"""Alembic environment of the warehouse: the target is the declared schema (clms_etl.warehouse.schema).

URL, first found: ``-x url=...``, the ``sqlalchemy.url`` option (set by code calling Alembic),
``CLMS_WAREHOUSE_URL``. Migrations are for PostgreSQL; the views of the ``analytics`` schema are
created by the revisions themselves (Alembic's autogenerate compares tables only).
"""

from __future__ import annotations

import os
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

import clms_etl.analyses  # noqa: F401  (declares the result tables: results_metadata)
from clms_etl.warehouse.load import normalise_url
from clms_etl.warehouse.schema import ANALYTICS_SCHEMA, metadata, results_metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# base tables (default schema) and the analyses' result tables (analytics schema)
target_metadata = [metadata, results_metadata]


def include_name(name, type_, parent_names) -> bool:
    """Autogenerate looks at the default schema and ``analytics`` only (its views are the
    revisions' own DDL: Alembic compares tables)."""
    if type_ == "schema":
        return name in (None, ANALYTICS_SCHEMA)
    return True


def _url() -> str:
    url = (context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
           or os.environ.get("CLMS_WAREHOUSE_URL"))
    if not url:
        raise SystemExit("No database URL: pass -x url=postgresql+psycopg://... or set CLMS_WAREHOUSE_URL.")
    return normalise_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      include_schemas=True, include_name=include_name,
                      dialect_opts={"paramstyle": "named"}, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      include_schemas=True, include_name=include_name,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
