"""A column no row fills keeps its SQL type when read: sparse items compute like full ones."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

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


# Every type the COPY read parses, with what tends to go wrong in a text round trip: NULL beside '',
# quotes, commas and line breaks in text, non-ASCII, NaN and infinities, fractions of a second, numerics of
# several scales (and SUM/AVG's), a time zone, and a column of each type that no row fills.
_PG_TYPES_SQL = """
SELECT * FROM (VALUES
  (1, 2::bigint, 3::smallint, 1.5::float8, 0.1::float4, 1.25::numeric, 12.5::numeric(10, 3), TRUE,
   DATE '2026-01-02', TIMESTAMP '2026-01-02 03:04:05.123456', TIMESTAMPTZ '2026-06-02 03:04:05+02',
   'Nîmes, "Carémeau"' || chr(10) || 'ligne 2', 'a'::char(3), 'v'::varchar),
  (NULL, -9223372036854775807, NULL, 'NaN', 'Infinity', -3, NULL, FALSE, DATE '1899-12-31',
   TIMESTAMP '2026-01-02 03:04:05', TIMESTAMPTZ '2026-12-05 02:00:00.5+00', '', NULL, NULL),
  (7, NULL, -4, '-Infinity', NULL, 0.000001, 0, NULL, NULL, NULL, NULL, NULL, 'ß', '日本語')
) AS t(i4, i8, i2, f8, f4, num, num3, b, d, ts, tstz, txt, c, v)
CROSS JOIN (SELECT SUM(5::bigint) AS sum_bigint, AVG(3) AS avg_int, COUNT(*) AS n, NULL::int AS null_int,
  NULL::float4 AS null_real, NULL::numeric AS null_numeric, NULL::boolean AS null_bool, NULL::date AS null_date,
  NULL::timestamp AS null_ts, NULL::timestamptz AS null_tstz, NULL::text AS null_text,
  NULL::char(2) AS null_char) AS a
ORDER BY i8 NULLS LAST
"""


def _pg_reads(url: str, queries: list[tuple[str, dict]], monkeypatch, tmp_path=None) -> tuple[list, list, list]:
    """Each query read by the COPY path and by the row path, and which the COPY path read itself."""
    from clms_etl.warehouse import load

    copied = []
    copy_read = load._copy_read

    def spy(conn, sql, params):
        found = copy_read(conn, sql, params)
        copied.append(found is not None)
        return found

    with Warehouse(url) as wh:
        if tmp_path is not None:
            from tests.warehouse.helpers import load_twin

            wh.create()
            load_twin(wh, tmp_path / "files")
        monkeypatch.setattr(load, "_copy_read", spy)
        columnwise = [wh.read_sql(q, p) for q, p in queries]
        monkeypatch.setattr(load, "_copy_read", lambda conn, sql, params: None)  # every result through rows
        row_by_row = [wh.read_sql(q, p) for q, p in queries]
    return columnwise, row_by_row, copied


def _assert_same_frames(queries, columnwise, row_by_row) -> None:
    for (query, _), new, old in zip(queries, columnwise, row_by_row, strict=True):
        assert new.schema == old.schema, query
        assert new.equals(old, null_equal=True), query


@pytest.mark.postgres
@pytest.mark.parametrize("zone", ["", "Europe/Paris"])
def test_postgresql_copy_reads_every_type_as_the_row_by_row_read(pg_url, monkeypatch, zone):
    """COPY's CSV, parsed by polars, gives the frames psycopg's Python rows give: same dtypes (integers
    Int64, numerics Decimal(38, scale), timestamptz in the session's time zone, columns of nulls the
    driver's type), same values, NULL apart from '' — and parameters bound as the row path binds them."""
    url = pg_url + (f"?options=-c%20TimeZone%3D{zone.replace('/', '%2F')}" if zone else "")
    queries = [
        (_PG_TYPES_SQL, {}),
        ("SELECT :text AS text, :day AS day, CAST(:n AS integer) AS n, 'x' LIKE '%' AS percent, "
         "CAST(:stamp AS timestamptz) AS stamp", {"text": "l'hôpital; 100 %", "day": dt.date(2026, 12, 5), "n": 3,
                                                  "stamp": dt.datetime(2026, 12, 5, 2, tzinfo=dt.UTC)}),
        ("SELECT 1 AS n, CAST('a' AS text) AS s WHERE FALSE", {}),  # no row: the driver's types
        ("SELECT CAST(NULL AS text) AS s, CAST(NULL AS double precision) AS x;", {}),
    ]
    columnwise, row_by_row, copied = _pg_reads(url, queries, monkeypatch)
    assert copied == [True] * len(queries)
    assert columnwise[0].height == 3 and columnwise[0]["txt"].null_count() == 1 and "" in columnwise[0]["txt"]
    if zone:
        assert columnwise[0].schema["tstz"] == pl.Datetime("us", zone)
    _assert_same_frames(queries, columnwise, row_by_row)


@pytest.mark.postgres
def test_postgresql_copy_reads_the_warehouse_as_the_row_by_row_read(pg_url, tmp_path, monkeypatch):
    """Every table, view and result table of a loaded PostgreSQL warehouse, and the exports' block
    reads (a byte-wise range of pseudonyms), read through COPY as through psycopg's rows; a type COPY's
    text is not parsed for (json) goes to the rows."""
    import clms_etl.analyses  # noqa: F401  (the result tables, as the code location declares them)
    from clms_etl.warehouse import analytics, schema

    names = (*schema.metadata.tables, *schema.results_metadata.tables, *(v.qualified for v in analytics.VIEWS))
    queries = [(f"SELECT * FROM {name} ORDER BY 1 NULLS LAST, 2 NULLS LAST", {}) for name in names]
    queries += [('SELECT * FROM analytics.patient_summary WHERE patient_id COLLATE "C" >= :low '
                 'AND patient_id COLLATE "C" < :high ORDER BY patient_id', {"low": "4", "high": "b"}),
                ("""SELECT CAST('{"a": 1}' AS jsonb) AS j""", {})]
    columnwise, row_by_row, copied = _pg_reads(pg_url, queries, monkeypatch, tmp_path)
    assert copied[-1] is False and copied[:-1].count(True) >= len(names)
    assert sum(f.height for f in columnwise) > 1000
    _assert_same_frames(queries, columnwise, row_by_row)
