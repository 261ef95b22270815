"""A per-patient view computed for some patients only, and a step's reads of a view from one copy of it."""

from __future__ import annotations

import polars as pl
import psycopg
import pytest

from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.analytics import view_for_patients
from tests.warehouse.helpers import load_twin

VIEW = "analytics.patient_summary"


def _some_patients(wh: Warehouse) -> list[str]:
    """Every third patient, every patient with several operations and every one without an event:
    the view's window functions and aggregates each meet a patient kept beside one left out."""
    ids = wh.read_sql(f"SELECT patient_id FROM {VIEW} ORDER BY patient_id")["patient_id"].to_list()
    operated = wh.read_sql("SELECT patient_id FROM surgery GROUP BY patient_id HAVING COUNT(*) > 1")["patient_id"]
    silent = wh.read_sql("SELECT patient_id FROM patient WHERE patient_id NOT IN (SELECT patient_id FROM event)")
    assert operated.len() > 0 and silent.height > 0  # the twin has both: the subset below is not trivial
    return sorted({*ids[::3], *operated.to_list(), *silent["patient_id"].to_list()})


def test_a_per_patient_view_for_some_patients_is_the_view_filtered(warehouse_url, tmp_path):
    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        kept = _some_patients(wh)
        listed = ", ".join(f"'{p}'" for p in kept)
        subset = f"SELECT patient_id FROM patient WHERE patient_id IN ({listed})"
        expected = wh.read_sql(f"SELECT * FROM {VIEW} WHERE patient_id IN ({listed}) ORDER BY patient_id")
        got = wh.read_sql(f"SELECT * FROM ({view_for_patients('patient_summary', subset)}) v ORDER BY patient_id")
        assert 0 < got.height == len(kept) < wh.read_sql(f"SELECT COUNT(*) AS n FROM {VIEW}")["n"][0]
        assert got.schema == expected.schema and got.equals(expected, null_equal=True)


def test_a_view_computed_across_patients_is_not_restricted_by_its_base_tables():
    with pytest.raises(ValueError, match="not computed patient by patient"):
        view_for_patients("query_summary", "SELECT patient_id FROM patient")


def _age(wh: Warehouse, patient: str) -> int:
    return wh.read_sql(f"SELECT age_at_diagnosis_years AS age FROM {VIEW} WHERE patient_id = :p", {"p": patient})["age"][0]


@pytest.mark.postgres
def test_within_views_copied_the_view_is_read_from_one_copy_made_on_entry(pg_url, tmp_path):
    """A change committed after the copy was made is not seen within the ``with`` (every read is of the
    copy, not of the view computed again), and is seen after it; the copy is gone with the ``with``."""
    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        patient = wh.read_sql(f"SELECT MIN(patient_id) AS p FROM {VIEW}")["p"][0]
        before = _age(wh, patient)
        with wh.views_copied("patient_summary"):
            with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as other:
                other.execute("UPDATE patient SET age_at_diagnosis_years = 111 WHERE patient_id = %s", [patient])
            assert _age(wh, patient) == before
            counts = wh.read_sql(f"SELECT centre, COUNT(*) AS n FROM {VIEW} GROUP BY centre")
            assert counts["n"].sum() == 79
        assert _age(wh, patient) == 111 != before
        assert wh.read_sql("SELECT COUNT(*) AS n FROM pg_class WHERE relname = 'copy_patient_summary'")["n"][0] == 0


@pytest.mark.postgres
def test_without_the_temporary_right_views_copied_reads_the_view(pg_url, pg_databases, tmp_path):
    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
    with Warehouse(pg_databases.reader_without_temporary(pg_url)) as wh, wh.views_copied("patient_summary"):
        assert wh.read_sql(f"SELECT COUNT(*) AS n FROM {VIEW}")["n"][0] == 79


def test_table_1_blocks_read_inside_views_copied_are_the_same_rows(warehouse_url, tmp_path):
    """``survival.run._patient_blocks`` as the report reads it (its copy made from the report's copy of
    the view, tests/report/test_export_blocks.py for the blocks themselves): the same rows and types as
    ``TUMOUR_EXTRA_SQL`` outside, and no copy left afterwards."""
    from clms_etl.survival.run import _patient_blocks
    from clms_etl.survival.study import TUMOUR_EXTRA_SQL

    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        expected = wh.read_sql(TUMOUR_EXTRA_SQL).sort("patient_id")
        with wh.views_copied("patient_summary"):
            blocks = list(_patient_blocks(wh, size=30))
        assert len(blocks) >= 3 and all(b.schema == expected.schema for b in blocks)
        assert pl.concat(blocks).sort("patient_id").equals(expected, null_equal=True)
        if wh.backend == "postgresql":
            left = wh.read_sql("SELECT COUNT(*) AS n FROM pg_class WHERE relname IN ('table1_patients', "
                               "'copy_patient_summary')")
            assert left["n"][0] == 0
