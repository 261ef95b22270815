"""VCF records the warehouse cannot hold: position 0, an allele of megabytes."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from clms_etl.warehouse.load import IntegrityProblem, Warehouse
from tests.warehouse.conftest import (  # noqa: F401  (fixtures: a fresh PostgreSQL database, the test key)
    pg_admin_url, pg_databases, pg_url, pseudonym_key_env, warehouse_url,
)

from .conftest import accounting, delivery_dir, import_centre, run_import
from .lab import data_lines, edit_field, rows_read

LAB = "molecular"


def _record(folder):
    """A VCF of the twin and the physical line of its first record."""
    path = sorted((folder / "ngs").glob("*.vcf"))[0]
    return path, data_lines(path)[0]


def test_a_variant_at_position_zero_is_quarantined_with_a_query_naming_file_line_and_pos(drop):
    folder = delivery_dir(drop, LAB)
    path, line = _record(folder)
    edit_field(path, line, 1, "0")
    imported = import_centre(drop, LAB)
    label = f"ngs/{path.name}"
    query = imported.validated.queries.filter(pl.col("file") == label, pl.col("row") == line, pl.col("field") == "POS")
    assert query.select("severity", "value").rows() == [("error", "0")]
    held = imported.validated.quarantined["variant"].filter(pl.col("source_file") == label,
                                                           pl.col("source_row") == line)
    assert held.height >= 1
    assert {t: n for t, (n, _, _) in accounting(imported).items()} == rows_read(folder)


def test_a_variant_at_position_zero_ends_the_run_at_once_without_retries(drop, tmp_path):
    folder = delivery_dir(drop, LAB)
    path, line = _record(folder)
    edit_field(path, line, 1, "0")
    result = run_import(drop, tmp_path, LAB)
    events = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in events  # bad data is never retried
    assert result.success  # the variant is quarantined, the rest of the lab's delivery loaded
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        asked = con.sql("SELECT source_file, source_row, field FROM data_query WHERE rule = 'number_out_of_range'"
                        ).fetchall()
        loaded = con.sql("SELECT count(*) FROM variant WHERE source_file = ? AND source_row = ?",
                         params=[f"ngs/{path.name}", line]).fetchall()[0][0]
    finally:
        con.close()
    assert (f"ngs/{path.name}", line, "POS") in asked and loaded == 0


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_row_breaking_a_warehouse_constraint_is_refused_once_naming_file_row_and_field(drop, tmp_path, backend,
                                                                                         request):
    # validation is the first line of defence; the database's own checks are the last, and
    # what they refuse is bad data: an IntegrityProblem (never retried), naming the row
    imported = import_centre(drop, LAB)
    v = imported.validated
    variant = v.accepted["variant"]
    file, row = variant.row(0, named=True)["source_file"], variant.row(0, named=True)["source_row"]
    v.accepted["variant"] = variant.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(0).otherwise(pl.col("pos")).cast(pl.Int64).alias("pos"))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}" if backend == "duckdb" else request.getfixturevalue("pg_url")
    files = [p for p in imported.delivery.path.rglob("*") if p.is_file()]
    with Warehouse(url) as wh:
        wh.create()
        with pytest.raises(IntegrityProblem) as refused:
            wh.load_delivery(LAB, imported.delivery.date, files, v, expectations=False)
        assert wh.read_sql("SELECT count(*) AS n FROM variant")["n"][0] == 0  # nothing changed
    assert f"{file} row {row}, field pos (pos_range" in str(refused.value)


def test_a_fifty_megabyte_alt_allele_is_quarantined_with_a_query_not_stored_as_reportable(drop):
    folder = delivery_dir(drop, LAB)
    path, line = _record(folder)
    edit_field(path, line, 4, "A" * 50_000_000)
    imported = import_centre(drop, LAB)
    v = imported.validated
    label = f"ngs/{path.name}"
    query = v.queries.filter(pl.col("file") == label, pl.col("row") == line, pl.col("field") == "ALT")
    assert query.select("rule", "severity").rows() == [("allele_too_long", "error")]
    assert len(query["value"][0]) <= 201  # the query keeps a sample of the value, not 50 MB
    assert v.accepted["variant"].filter(pl.col("source_file") == label, pl.col("source_row") == line).is_empty()
    held = v.quarantined["variant"].filter(pl.col("source_file") == label, pl.col("source_row") == line)
    assert held.height == 1 and len(held["alt"][0]) <= 1001
    assert {t: n for t, (n, _, _) in accounting(imported).items()} == rows_read(folder)
