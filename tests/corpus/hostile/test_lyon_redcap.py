"""Lyon REDCap values typed in another instrument's columns: reported, never silently ignored."""

from __future__ import annotations

import csv
import io

import polars as pl
import pytest

from .conftest import accounting, delivery_dir, import_centre


def _data_file(drop):
    return next(p for p in delivery_dir(drop, "lyon").iterdir() if "_DATA_" in p.name)


def _rows(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def _set(path, form: str, column: str, value: str) -> int:
    """Fill ``column`` on the first row of ``form`` ("" = the patient rows); the row number (header = 1)."""
    text = path.read_text(encoding="utf-8")
    reader = list(csv.reader(io.StringIO(text, newline="")))
    header = reader[0]
    i = next(k for k, r in enumerate(reader[1:], start=1) if r[header.index("redcap_repeat_instrument")] == form)
    reader[i][header.index(column)] = value
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(reader)
    path.write_text(out.getvalue(), encoding="utf-8")
    return i + 1


@pytest.mark.parametrize("form, column, value", [
    ("evenement", "chir_date", "2015-03-02"),  # a surgery typed on an event row
    ("", "evt_type", "1"),  # an event typed on the patient row
    ("chirurgie", "meta_site___1", "1"),  # a metastasis site ticked on a surgery row
])
def test_a_value_in_another_instruments_column_is_a_query_naming_row_and_column(drop, form, column, value):
    path = _data_file(drop)
    row = _set(path, form, column, value)
    imported = import_centre(drop, "lyon")
    assert imported.failure is None, imported.failure
    asked = imported.validated.queries.filter(pl.col("rule") == "value_in_other_instrument")
    assert asked.select("file", "row", "field", "value").rows() == [(path.name, row, column, value)]
    records = _rows(path)
    read_ = {t: n for t, (n, _, _) in accounting(imported).items()}
    assert read_["patient"] == sum(1 for r in records if not r["redcap_repeat_instrument"])
    assert read_["surgery"] == sum(1 for r in records if r["redcap_repeat_instrument"] == "chirurgie")
