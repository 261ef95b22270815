"""CSV files written for people open right in Excel: UTF-8 with a BOM when they hold non-ASCII text."""

from __future__ import annotations

import polars as pl

from clms_etl.report.csv_files import write_csv


def test_the_analyses_tables_with_non_ascii_text_carry_a_bom(twin_report):
    tables = twin_report.html.parent.parent / "tables"
    table1 = (tables / "table1.csv").read_bytes()
    assert table1.startswith(b"\xef\xbb\xbf")  # Excel then reads UTF-8, "±" stays "±"
    assert "Mean ± SD" in table1.decode("utf-8-sig")
    assert pl.read_csv(tables / "table1.csv").columns[0] == "Characteristic"  # readers skip the BOM
    for path in tables.glob("*.csv"):
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") == (not raw.isascii()), path.name


def test_an_ascii_only_csv_gets_no_bom(tmp_path):
    path = write_csv(pl.DataFrame({"a": [1, 2], "b": ["x", None]}), tmp_path / "plain.csv")
    assert path.read_bytes() == b"a,b\n1,x\n2,\n"
