"""Result tables of the survival analysis (see :mod:`clms_etl.warehouse.results`)."""

from __future__ import annotations

from clms_etl.warehouse.results import ResultTable

TABLES: tuple[ResultTable, ...] = ()
