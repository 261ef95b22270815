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
