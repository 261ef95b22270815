"""Warehouse.block_copy: the blocks of a per-patient view read from one copy of it on PostgreSQL."""

from __future__ import annotations

import pytest

from clms_etl.warehouse import Warehouse
from tests.warehouse.helpers import load_twin

VIEW = "analytics.patient_summary"


def _blocks(wh: Warehouse, relation: str) -> list:
    """The view's rows in three blocks of pseudonyms, as the exports cut them."""
    ids = wh.read_sql(f"SELECT patient_id FROM {VIEW} ORDER BY {wh.bytewise('patient_id')}")["patient_id"]
    bounds = [None, ids[len(ids) // 3], ids[2 * len(ids) // 3], None]
    return [wh.read_sql(f"SELECT * FROM {relation} WHERE {wh.range_clause('patient_id', low, high)} "
                        "ORDER BY patient_id", {"low": low, "high": high}) for low, high in zip(bounds, bounds[1:])]


def test_the_blocks_of_the_copy_are_the_views(warehouse_url, tmp_path):
    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        expected = _blocks(wh, VIEW)
        survival = wh.read_sql("SELECT * FROM analytics.survival ORDER BY patient_id, endpoint")
        with wh.block_copy(VIEW, "patient_id") as copy, wh.block_copy("analytics.survival", "patient_id") as other:
            got = _blocks(wh, copy)
            # on PostgreSQL computed from the copy of patient_summary: the view's rows and types all the same
            copied = wh.read_sql(f"SELECT * FROM {other} ORDER BY patient_id, endpoint")
        assert survival.height == 5 * 79 and copied.equals(survival, null_equal=True) and copied.schema == survival.schema
        assert sum(b.height for b in expected) == 79 and [b.height for b in got] == [b.height for b in expected]
        for old, new in zip(expected, got, strict=True):
            assert new.equals(old, null_equal=True) and new.schema == old.schema
        if wh.backend == "postgresql":
            assert copy.startswith("pg_temp.") and other.startswith("pg_temp.")
            with wh.engine.connect() as conn:  # dropped with the connection's transaction: nothing left
                left = conn.exec_driver_sql("SELECT COUNT(*) FROM pg_class WHERE relname LIKE 'block_copy_%%'")
                assert left.scalar() == 0
        else:
            assert (copy, other) == (VIEW, "analytics.survival")


@pytest.mark.postgres
def test_without_the_temporary_right_the_blocks_are_read_from_the_view(pg_url, pg_databases, tmp_path):
    """The analyst role has no TEMPORARY right (clms_etl.warehouse.roles): its exports read the view."""
    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
    with Warehouse(pg_databases.reader_without_temporary(pg_url)) as wh:
        with wh.block_copy(VIEW, "patient_id") as relation:
            assert relation == VIEW
            assert sum(b.height for b in _blocks(wh, relation)) == 79


def test_the_survival_analysis_reads_the_views_rows_computing_patient_summary_once(warehouse_url, tmp_path,
                                                                                  monkeypatch, request):
    """study.load_inputs: the patients and the endpoints the views give, rows and types; on PostgreSQL
    no query it sends reads a per-patient view (the patients are copied once, the endpoints computed
    from the copy), and the copy is gone afterwards; the analyst role, without TEMPORARY, reads the views."""
    from clms_etl.survival.study import PATIENTS_SQL, SURVIVAL_SQL, load_inputs

    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        expected = [wh.read_sql(PATIENTS_SQL), wh.read_sql(SURVIVAL_SQL)]
        sent, read_sql = [], wh.read_sql
        monkeypatch.setattr(wh, "read_sql", lambda sql, params=None: sent.append(sql) or read_sql(sql, params))
        got = load_inputs(wh)
        for new, old, key in zip(got, expected, (["patient_id"], ["patient_id", "endpoint"])):
            assert new.height == old.height > 0 and new.schema == old.schema
            assert new.sort(key).equals(old.sort(key), null_equal=True)
        reads_views = [s for s in sent if "analytics.patient_summary" in s or "analytics.survival" in s]
        if wh.backend == "postgresql":
            assert len(sent) == 2 and reads_views == [], sent
            assert wh.read_sql("SELECT COUNT(*) AS n FROM pg_class WHERE relname = 'survival_inputs'")["n"][0] == 0
        else:
            assert len(reads_views) == 2
    if warehouse_url.startswith("postgresql"):
        with Warehouse(request.getfixturevalue("pg_databases").reader_without_temporary(warehouse_url)) as wh:
            assert [f.height for f in load_inputs(wh)] == [e.height for e in expected]
