"""The harmonised warehouse: one SQLAlchemy schema for DuckDB (default) and PostgreSQL.

* :mod:`~clms_etl.warehouse.schema` — base tables (canonical model, ``data_query``, ``delivery``);
* :mod:`~clms_etl.warehouse.analytics` — the ``analytics`` views analysts query;
* :mod:`~clms_etl.warehouse.load` — :class:`Warehouse`: atomic, idempotent, bulk loads, one
  pseudonym key (fingerprint, re-key) and the audit trail;
* :mod:`~clms_etl.warehouse.roles` — PostgreSQL loader and analyst roles;
* :mod:`~clms_etl.warehouse.expectations` — Great Expectations suites run after each load;
* :mod:`~clms_etl.warehouse.docs` — ``docs/warehouse.md`` generated from the schema.

Nothing here imports Dagster; Great Expectations is imported only when expectations run.
"""

from clms_etl.warehouse.load import (DeliveryHeld, DeliveryRefused, IntegrityProblem, KeyMismatch, LoadReport,
                                     SchemaMismatch, Shrinkage, Warehouse)

__all__ = ["DeliveryHeld", "DeliveryRefused", "IntegrityProblem", "KeyMismatch", "LoadReport", "SchemaMismatch",
           "Shrinkage", "Warehouse"]
