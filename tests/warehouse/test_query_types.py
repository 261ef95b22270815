"""A column no row fills keeps its SQL type when read: sparse items compute like full ones."""

from __future__ import annotations

import polars as pl

from clms_etl.warehouse import Warehouse


def test_a_column_every_row_leaves_null_is_read_with_its_sql_type(tmp_path):
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        frame = wh.read_sql("SELECT 1 AS n, CAST(NULL AS DOUBLE) AS size_cm, CAST(NULL AS VARCHAR) AS site, "
                         "CAST(NULL AS DATE) AS death_date, CAST(NULL AS BOOLEAN) AS pain")
    assert frame.schema == {"n": pl.Int64, "size_cm": pl.Float64, "site": pl.String, "death_date": pl.Date,
                            "pain": pl.Boolean}
    # what crashed the nightly on a delivery without sizes (Table 3's display rounds the size)
    assert frame.select(pl.col("size_cm").round(1).cast(pl.String).fill_null(""))["size_cm"].to_list() == [""]


def test_duckdb_reads_columns_typed_as_the_row_by_row_read(tmp_path, monkeypatch):
    """The column-wise (Arrow) read of DuckDB results gives the frames the row-by-row read gives:
    same types (integers Int64, floats Float64, columns of nulls typed by the driver), same values,
    over every table and view of a loaded warehouse and results of the types it leaves to the rows."""
    import clms_etl.analyses  # noqa: F401  (the result tables, as the code location declares them)
    from clms_etl.warehouse import analytics, load, schema
    from tests.warehouse.helpers import load_twin

    queries = [f"SELECT * FROM {name}" for name in (*schema.metadata.tables, *schema.results_metadata.tables,
                                                     *(v.qualified for v in analytics.VIEWS))]
    queries += ["SELECT CAST(1 AS TINYINT) AS a, CAST(2.5 AS FLOAT) AS b, CAST(NULL AS INTEGER) AS c, "
                "TIMESTAMP '2026-12-05 02:00:00' AS d, SUM(3) AS hugeint_sum, CAST(1.25 AS DECIMAL(5, 2)) AS e",
                "SELECT patient_id FROM patient WHERE FALSE"]
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        load_twin(wh, tmp_path / "files")
        # a stable order: a view without ORDER BY may come in another order from one read to the next
        ordered = [f"SELECT * FROM ({q}) q ORDER BY ALL" for q in queries]
        columnwise = [wh.read_sql(q) for q in ordered]
        monkeypatch.setattr(load, "_ARROW_AS_ROWS", frozenset())  # every result through Python rows
        row_by_row = [wh.read_sql(q) for q in ordered]
    assert sum(f.height for f in columnwise) > 1000
    for query, new, old in zip(queries, columnwise, row_by_row, strict=True):
        assert new.schema == old.schema, query
        assert new.equals(old, null_equal=True), query
