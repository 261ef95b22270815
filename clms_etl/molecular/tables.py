"""Result tables of the molecular summary (see :mod:`clms_etl.warehouse.results`)."""

from __future__ import annotations

from clms_etl.warehouse.results import ResultTable

TABLES: tuple[ResultTable, ...] = ()
