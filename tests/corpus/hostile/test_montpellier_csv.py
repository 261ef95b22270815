"""Montpellier cells that start or end with a double quote: data, not CSV quoting."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl.readers.engine import reader

from .conftest import accounting, delivery_dir, import_centre

montpellier = reader("montpellier")  # the engine on clms_etl/data/formats/montpellier.toml

ROW = 4  # the third patient (header = row 1)


def _edit(path, row: int, column: str, change) -> str:
    """Apply ``change`` to the cell of ``column`` on line ``row``; returns the new cell."""
    lines = path.read_bytes().decode("cp1252").split("\r\n")
    header = lines[0].split(";")
    fields = lines[row - 1].split(";")
    j = header.index(column)
    fields[j] = change(fields[j])
    lines[row - 1] = ";".join(fields)
    path.write_bytes("\r\n".join(lines).encode("cp1252"))
    return fields[j]


def _records(path) -> int:
    """Patient records: non-blank lines under the header (the export writes one record a line)."""
    return sum(1 for line in path.read_bytes().decode("cp1252").split("\r\n")[1:] if line.strip())


@pytest.mark.parametrize("column, change, identifier", [
    ("NOM", lambda v: '"' + v, True),  # a quote opening the cell
    ("TTT_RECHUTE", lambda v: v + ' "en cours"', False),  # a quote closing the cell
    ("SITES_META", lambda v: '"' + (v or "poumon") + '"' + " ?", False),  # both, and text after
])
def test_a_cell_starting_or_ending_with_a_double_quote_is_read_with_a_query_naming_row_and_column(
        drop, column, change, identifier):
    path = delivery_dir(drop, "montpellier") / montpellier.FILE
    cell = _edit(path, ROW, column, change)
    imported = import_centre(drop, "montpellier")
    assert imported.failure is None, imported.failure
    asked = imported.validated.queries.filter(pl.col("rule") == "quote_in_cell")
    assert asked.select("file", "row", "field").rows() == [(montpellier.FILE, ROW, column)]
    assert asked["value"][0] == ("<identifiant masqué>" if identifier else cell)
    read_, _, _ = accounting(imported)["patient"]
    assert read_ == _records(path)
    patient = pl.concat([imported.validated.accepted["patient"], imported.validated.quarantined["patient"]],
                        how="diagonal")
    assert patient.filter(pl.col("source_row") == ROW).height == 1  # the row is there, not merged away


def test_a_quote_in_a_coded_cell_quarantines_its_row_naming_row_and_column(drop):
    path = delivery_dir(drop, "montpellier") / montpellier.FILE
    _edit(path, ROW, "STATUT_VITAL", lambda v: '"' + v)
    imported = import_centre(drop, "montpellier")
    assert imported.failure is None, imported.failure
    errors = imported.validated.queries.filter(pl.col("row") == ROW, pl.col("field") == "STATUT_VITAL",
                                              pl.col("severity") == "error")
    assert errors.height >= 1
    assert imported.validated.quarantined["patient"].filter(pl.col("source_row") == ROW).height == 1
    assert accounting(imported)["patient"][0] == _records(path)
