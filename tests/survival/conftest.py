"""Fixtures of the survival tests: the twin cohort in a DuckDB warehouse, analysed once per session."""

from __future__ import annotations

import pytest

from clms_etl.survival.study import StudyResults, analyse, load_inputs
from clms_etl.warehouse import Warehouse
from tests.paper import PAPER
from tests.warehouse.helpers import load_twin


@pytest.fixture(scope="session")
def twin_warehouse_url(tmp_path_factory) -> str:
    """URL of a DuckDB warehouse holding the 79-patient twin (read it; copy the file to change it).

    No connection stays open between tests: each test opens the warehouse it needs.
    """
    root = tmp_path_factory.mktemp("survival_twin")
    url = f"duckdb:///{root / 'warehouse.duckdb'}"
    with Warehouse(url) as wh:
        wh.create()
        load_twin(wh, root)
    return url


@pytest.fixture(scope="session")
def twin_results(twin_warehouse_url) -> StudyResults:
    with Warehouse(twin_warehouse_url) as wh:
        patient_summary, survival = load_inputs(wh)
    return analyse(patient_summary, survival)
