"""The shared copy of ``analytics.patient_summary`` on PostgreSQL: computed once for the night's readers,
never read once the warehouse has changed (clms_etl/warehouse/shared_copy.py)."""

from __future__ import annotations

import threading

import polars as pl
import psycopg
import pytest

from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.analytics import POPULATIONS
from clms_etl.warehouse.shared_copy import COPIES_SCHEMA
from tests.warehouse.helpers import OTHER_KEY, TEST_KEY, settled_statistics, twin_mapping

pytestmark = pytest.mark.postgres
VIEW = "analytics.patient_summary"
SCANS = "SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'event'"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg", "postgresql")


def _copied(wh: Warehouse) -> pl.DataFrame:
    """patient_summary as a step reads it (a temporary copy of the view)."""
    with wh.temporary_copy("step_copy", view="patient_summary") as copy:
        return wh.read_sql(f"SELECT * FROM {copy} ORDER BY patient_id")


def _view(wh: Warehouse) -> pl.DataFrame:
    return wh.read_sql(f"SELECT * FROM {VIEW} ORDER BY patient_id")


@pytest.fixture
def warehouse_url(pg_url) -> str:
    """PostgreSQL only (``loaded``'s warehouse): DuckDB shares no copy."""
    return pg_url


def _event_scans(wh: Warehouse, url: str) -> list[tuple]:
    wh.engine.dispose()  # a backend reports its counts when it ends
    return settled_statistics(url, SCANS)


def test_a_second_reader_reads_the_shared_copy_instead_of_computing_the_view(loaded, pg_url):
    first = _copied(loaded)
    scans = _event_scans(loaded, pg_url)
    second = _copied(loaded)
    assert _event_scans(loaded, pg_url) == scans != [(0,)]  # the events were read once, by the first
    assert first.height == 79 and second.equals(first, null_equal=True) and second.equals(_view(loaded), null_equal=True)


@pytest.mark.parametrize("write", [
    "UPDATE patient SET age_at_diagnosis_years = 111 WHERE patient_id = (SELECT MIN(patient_id) FROM patient)",
    "DELETE FROM event WHERE patient_id = (SELECT MIN(patient_id) FROM event) AND event_kind = 'last_news'",
    "UPDATE surgery SET clinical_margin_cm = 1.5 WHERE surgery_no = 1",
    "UPDATE tumour SET size_cm = 4.2",
])
def test_a_write_committed_after_the_copy_is_seen_by_the_next_reader(loaded, pg_url, write):
    before = _copied(loaded)
    with psycopg.connect(_libpq(pg_url)) as other:  # another session, by hand: no load, no audit
        assert other.execute(write).rowcount > 0
    after = _copied(loaded)
    assert after.equals(_view(loaded), null_equal=True) and not after.equals(before, null_equal=True)


def test_a_new_survival_population_rule_is_seen_by_the_next_reader(loaded):
    before = _copied(loaded)
    loaded.replace_results({"survival_population_rule": POPULATIONS["paper"].frame(120)})
    after = _copied(loaded)
    assert after.equals(_view(loaded), null_equal=True)
    assert after["in_survival_population"].sum() < before["in_survival_population"].sum()


def test_the_same_rule_written_by_the_next_analysis_keeps_the_copy(loaded, pg_url):
    rule = {"survival_population_rule": POPULATIONS["paper"].frame(3)}
    loaded.replace_results(rule, run_id="last-night")
    _copied(loaded)
    scans = _event_scans(loaded, pg_url)
    loaded.replace_results(rule, run_id="tonight")  # every analysis writes its rule, under its own run id
    copied = _copied(loaded)
    assert _event_scans(loaded, pg_url) == scans
    assert copied.equals(_view(loaded), null_equal=True)


def test_a_copy_emptied_by_a_crash_is_made_again(loaded, pg_url):
    _copied(loaded)
    with psycopg.connect(_libpq(pg_url)) as other:  # what crash recovery does to an unlogged table
        other.execute(f"TRUNCATE {COPIES_SCHEMA}.patient_summary")
    assert _copied(loaded).equals(_view(loaded), null_equal=True)


def test_a_stale_copy_being_read_elsewhere_leaves_the_reader_the_view(loaded, pg_url):
    """The copy is not replaced under a reader that holds it: the next step reads the view itself, at once."""
    _copied(loaded)
    with psycopg.connect(_libpq(pg_url)) as holder, psycopg.connect(_libpq(pg_url)) as other:
        holder.execute(f"SELECT COUNT(*) FROM {COPIES_SCHEMA}.patient_summary")  # its transaction stays open
        other.execute("UPDATE tumour SET size_cm = 4.3")
        other.commit()
        result: list[pl.DataFrame] = []
        step = threading.Thread(target=lambda: result.append(_copied(loaded)))
        step.start()
        step.join(timeout=60)
        assert not step.is_alive()
        holder.rollback()
    assert result[0].equals(_view(loaded), null_equal=True) and (result[0]["size_cm"] == 4.3).all()


def test_the_analyst_role_reads_the_view(loaded, pg_url, pg_databases):
    _copied(loaded)
    with Warehouse(pg_databases.reader_without_temporary(pg_url)) as wh:
        assert _view(wh).equals(_view(loaded), null_equal=True)


def test_a_rekey_drops_the_shared_copies(loaded):
    _copied(loaded)
    loaded.rekey(twin_mapping(), TEST_KEY, OTHER_KEY, run_id="rekey-test")
    left = loaded.read_sql("SELECT COUNT(*) AS n FROM pg_tables WHERE schemaname = :s", {"s": COPIES_SCHEMA})
    assert left["n"][0] == 0


def test_the_migrations_record_writes_to_the_tables_the_view_reads(pg_databases):
    from clms_etl.warehouse.analytics import base_tables
    from tests.warehouse.helpers import migrated_and_declared

    for url in migrated_and_declared(pg_databases):
        with psycopg.connect(_libpq(url)) as conn:
            triggered = {t for t, in conn.execute("SELECT tgrelid::regclass::text FROM pg_trigger "
                                                  "WHERE tgname = 'warehouse_changed'")}
        assert triggered == set(base_tables("patient_summary")) == {"patient", "tumour", "surgery", "event"}
