"""Property-based fuzzing of cells: any value typed in any cell of any format is read, accounted
for, or refused with a message naming the file — never an exception, never a lost row.

Bounded for CI: a fixed seed (``derandomize``) and a fixed number of examples per format
(``CLMS_FUZZ_EXAMPLES``, default 25). A longer run: ``CLMS_FUZZ_EXAMPLES=2000 .venv/bin/python
-m pytest tests/corpus/fuzz -p no:randomly`` (see bench/README.md).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import openpyxl
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clms_etl.centres import load_registry
from clms_etl.deliveries import open_delivery
from clms_etl.centre_import import read_and_validate
from clms_etl.synth.generate import generate
from tests.warehouse.helpers import TEST_KEY

EXAMPLES = int(os.environ.get("CLMS_FUZZ_EXAMPLES", "25"))
DATE = dt.date(2026, 11, 23)
REGISTRY = load_registry()
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# What people type: separators and quotes of every format, dates and numbers in odd shapes,
# signs Excel and Windows put in text, and plain noise.
TYPED = st.one_of(
    st.sampled_from(["", " ", "NA", "ND", "?", '"', '""', '"quoted', 'end"', ";", ",", "\t", "=1+1", "#N/A",
                     "1e308", "-1e12", "31/02/2020", "00/00/0000", "2062-01-01", "1899-12-31", "12/2014",
                     "mars 2014", "< 5", "15 mm", "1,5", "1.5", "-0", "NaN", "inf", "\u00a0", "\ufeff", "\x00",
                     "🙂", "é" * 300]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=40),
    st.integers(min_value=-10**12, max_value=10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_twin")
    generate(root, seed=0, delivery_date=DATE)
    return root


def _check(centre: str, drop: Path, file_name: str, data_rows: int) -> None:
    imported = read_and_validate(REGISTRY[centre], open_delivery(drop, centre, DATE), TEST_KEY)
    if imported.failure is not None:
        assert file_name in imported.failure and "Traceback" not in imported.failure, imported.failure
        return
    acc = {r["table"]: r for r in imported.validated.accounting.iter_rows(named=True)}
    assert all(r["rows_read"] == r["rows_accepted"] + r["rows_quarantined"] for r in acc.values()), acc
    assert acc["patient"]["rows_read"] == data_rows, (acc["patient"], data_rows)


def _type_in_a_text_file(twin: Path, tmp: Path, data, centre: str, name: str, encoding: str, sep: str,
                         end: str) -> None:
    """Type a drawn value in a drawn cell of a text delivery, then read it."""
    drop = tmp / "drop"
    shutil.rmtree(drop, ignore_errors=True)
    shutil.copytree(twin / centre, drop / centre)
    path = drop / centre / DATE.isoformat() / name
    lines = path.read_bytes().decode(encoding).split(end)
    rows = [line for line in lines[1:] if line]
    i = data.draw(st.integers(1, len(rows)))
    cells = lines[i].split(sep)
    j = data.draw(st.integers(0, len(cells) - 1))
    cells[j] = data.draw(TYPED.filter(lambda s: s.encode(encoding, "ignore").decode(encoding) == s))
    lines[i] = sep.join(cells)
    path.write_bytes(end.join(lines).encode(encoding))
    _check(centre, drop, path.name, len(rows))


@FUZZ
@given(data=st.data())
def test_montpellier_any_typed_cell_is_read_or_refused_with_its_file_named(twin, tmp_path, data):
    _type_in_a_text_file(twin, tmp_path, data, "montpellier", "clms_montpellier.csv", "cp1252", ";", "\r\n")


@FUZZ
@given(data=st.data())
def test_nimes_any_typed_cell_is_read_or_refused_with_its_file_named(twin, tmp_path, data):
    _type_in_a_text_file(twin, tmp_path, data, "nimes", "nimes_dossiers.txt", "mac_roman", "\t", "\r")


def _nice_workbook(twin: Path, tmp: Path):
    """A fresh copy of the twin's Nice delivery: its drop folder, workbook path and open workbook."""
    drop = tmp / "drop"
    shutil.rmtree(drop, ignore_errors=True)
    shutil.copytree(twin / "nice", drop / "nice")
    path = drop / "nice" / DATE.isoformat() / "export_dermato_nice.xlsx"
    return drop, path, openpyxl.load_workbook(path)


def _xlsx_text(text: str) -> str:
    return ILLEGAL_CHARACTERS_RE.sub("", text)  # what Excel itself cannot store in a cell


@FUZZ
@given(data=st.data())
def test_nice_any_typed_cell_is_read_or_refused_with_its_file_named(twin, tmp_path, data):
    drop, path, book = _nice_workbook(twin, tmp_path)
    sheet = book[data.draw(st.sampled_from(book.sheetnames))]
    patients = book["Patients"].max_row - 1
    row = data.draw(st.integers(2, sheet.max_row))
    column = data.draw(st.integers(1, sheet.max_column))
    value = data.draw(st.one_of(st.sampled_from([-1e12, 1e12, 2958466, 0, -1]), TYPED.map(_xlsx_text),
                                st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**12, 10**12)))
    cell = sheet.cell(row, column)
    if isinstance(value, str) and value.startswith("="):
        value = "'" + value  # a formula is another case: stored as the text a person typed
    cell.value = value
    if isinstance(value, (int, float)) and data.draw(st.booleans()):
        cell.number_format = "dd/mm/yyyy"  # a number shown as a date: Excel serials, far out of range too
    book.save(path)
    _check("nice", drop, path.name, patients)


@FUZZ
@given(data=st.data())
def test_nice_any_number_in_a_date_cell_is_read_or_refused_with_its_file_named(twin, tmp_path, data):
    drop, path, book = _nice_workbook(twin, tmp_path)
    sheet = book[data.draw(st.sampled_from(book.sheetnames))]
    dates = [c.column for c in sheet[1] if "date" in str(c.value).lower()]
    cell = sheet.cell(data.draw(st.integers(2, sheet.max_row)), data.draw(st.sampled_from(dates)))
    cell.value = data.draw(st.one_of(st.sampled_from([-1e12, 1e12, 2958466, 2958465.99, 0, -1, 60]),
                                     st.floats(-1e15, 1e15), st.integers(-10**12, 10**12)))
    cell.number_format = "dd/mm/yyyy"  # Excel serials, far out of its range too
    book.save(path)
    _check("nice", drop, path.name, book["Patients"].max_row - 1)
