"""Fixtures of the molecular tests: the twin's laboratory frames, a loaded twin warehouse, the paper."""

from __future__ import annotations

import pytest

from clms_etl.keys import ENV_KEY, ENV_KEY_FILE
from tests.paper import PAPER as PUBLISHED
from tests.warehouse.helpers import TEST_KEY, load_twin, twin

PAPER = PUBLISHED["molecular"]


@pytest.fixture(scope="session")
def paper() -> dict:
    """clms_paper.json -> molecular: the published molecular section."""
    return PAPER


@pytest.fixture(scope="session")
def lab_frames() -> dict:
    """The twin laboratory delivery as canonical frames (what the warehouse stores)."""
    return twin()["molecular"].accepted


@pytest.fixture(scope="session")
def twin_summary(lab_frames):
    from clms_etl.molecular.summary import summarise

    f = lab_frames
    return summarise(f["molecular_sample"], f["cn_segment"], f["variant"], f["fusion"])


@pytest.fixture(scope="session")
def twin_warehouse_url(tmp_path_factory) -> str:
    """A DuckDB warehouse loaded with the five twin deliveries (read it; write results only)."""
    from clms_etl.molecular.run import write_outputs
    from clms_etl.warehouse.load import Warehouse

    root = tmp_path_factory.mktemp("molecular_twin")
    url = f"duckdb:///{root / 'warehouse.duckdb'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ENV_KEY_FILE, raising=False)
        mp.setenv(ENV_KEY, TEST_KEY.decode())
        with Warehouse(url) as wh:
            wh.create()
            load_twin(wh, root)
            write_outputs(wh, root / "outputs", "test")  # the stored results, as the nightly leaves them
    return url


@pytest.fixture(scope="session")
def twin_read(twin_warehouse_url):
    """(summary, analytics.patient_summary) read back from the loaded twin warehouse."""
    from clms_etl.molecular.run import read_summary
    from clms_etl.warehouse.load import Warehouse

    with Warehouse(twin_warehouse_url) as wh:
        return read_summary(wh)
