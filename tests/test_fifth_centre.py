"""A fifth centre the product has never seen, added with a format file and a centres.toml entry.

The centre (Toulouse, say) sends an ``.xlsx`` workbook laid out its own way: English headers,
its own codes, sizes and margins in millimetres, dates as date cells or typed ``dd.mm.yyyy``,
``n/a`` for missing; a sixth (Brest) sends the same layout as a LibreOffice ``.ods``. Nothing of
it is Python: the drop folder carries ``centres.toml`` and ``formats/<format>.toml``; the
synthetic generator writes the deliveries from those declarations and the nightly reads them
with the same declarations. Rows are counted in the workbooks with openpyxl (``.xlsx``) and
odfpy through pandas (``.ods``), not with the product's reader (calamine).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.centre_import import read_and_validate
from clms_etl.synth.generate import write_centre
from clms_etl.synth.twin import build_twin
from tests.corpus.test_nights import accounting, night_ok, run_night

DATE = dt.date(2026, 11, 23)
KEY = b"fifth-centre-test-key-0000000000"

CENTRES_TOML = """
[centres.toulouse]
format = "oncoderm"
label = "CHU de Toulouse, dermatologie"

[centres.brest]
format = "oncoderm_ods"
label = "CHU de Brest, dermatologie"
"""
WORKBOOKS = {"toulouse": ("oncoderm", "oncoderm_export.xlsx"), "brest": ("oncoderm_ods", "oncoderm_export.ods")}

FORMAT_TOML = """
name = "@FORMAT@"

[file]
name = "@FILE@"
sheet = "Registry"
decimal = "."
date_formats = ["%d.%m.%Y"]
missing = ["", "n/a", "NK"]
row_id = "{table}:{file}:{row}"

[tables.patient]
constants = { record_complete = true }

[tables.surgery]
when_any_cell = true
constants = { surgery_no = 1, surgery_kind = "primary_excision" }

[codes.sex]
M = "male"
W = "female"

[codes.yes_no]
yes = true
no = false

[codes.site]
HEAD = "head_neck"
TRUNK = "trunk"
ARM = "upper_limb"
LEG = "lower_limb"

[codes.grade]
G1 = 1
G2 = 2
G3 = 3

[codes.resection]
complete = "R0"
micro = "R1"
macro = "R2"

[codes.status]
ALIVE = "alive"
DEAD = "dead"
LOST = "lost_to_follow_up"

[codes.cause]
tumour = "clms"
other = "other"
unknown = "unknown"

[[columns]]
name = "Patient ID"
field = "patient.local_id"
identifier = "hospital_number"

[[columns]]
name = "Surname"
field = "patient.last_name"
identifier = "name"
required = false

[[columns]]
name = "Date of birth"
field = "patient.birth_date"
kind = "date"
identifier = "birth_date"

[[columns]]
name = "Gender"
field = "patient.sex"
codes = "sex"

[[columns]]
name = "Diagnosed on"
field = "patient.diagnosis_date"
kind = "date"

[[columns]]
name = "Immunosuppressed"
field = "patient.immunosuppression"
codes = "yes_no"

[[columns]]
name = "Body site"
field = "tumour.site"
codes = "site"

[[columns]]
name = "Size (mm)"
field = "tumour.size_cm"
kind = "number"
factor = 0.1

[[columns]]
name = "FNCLCC"
field = "tumour.fnclcc_grade"
codes = "grade"

[[columns]]
name = "Mitoses /10 HPF"
field = "tumour.mitoses_per_10hpf"
kind = "number"
integer = true

[[columns]]
name = "Operated on"
field = "surgery.surgery_date"
kind = "date"

[[columns]]
name = "Histological margin (mm)"
field = "surgery.histological_margin_cm"
kind = "number"
factor = 0.1

[[columns]]
name = "Resection"
field = "surgery.resection_status"
codes = "resection"

[[columns]]
name = "Local relapse on"
field = "event.local_recurrence.date"
kind = "date"

[[columns]]
name = "Status"
field = "patient.vital_status"
codes = "status"

[[columns]]
name = "Died on"
field = "event.death.date"
kind = "date"

[[columns]]
name = "Cause of death"
field = "event.death.cause"
codes = "cause"

[[columns]]
name = "Last seen"
field = "event.last_news.date"
kind = "date"
"""


def fifth_centre_truth():
    """The twin's Montpellier charts (one operation, events as columns) under a new centre's name,
    without metastases: this centre's export has no metastasis columns."""
    truth = build_twin(0).for_centre("montpellier")
    truth.event = truth.event.filter(pl.col("event_kind") != "metastasis")
    return truth


@pytest.fixture(scope="module")
def drop(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fifth") / "drop"
    (root / "formats").mkdir(parents=True)
    (root / "centres.toml").write_text(CENTRES_TOML, "utf-8")
    for centre, (fmt, file) in WORKBOOKS.items():
        declared = FORMAT_TOML.replace("@FORMAT@", fmt).replace("@FILE@", file)
        (root / "formats" / f"{fmt}.toml").write_text(declared, "utf-8")
        write_centre(root, centre, fmt, fifth_centre_truth(), 0, 0.0, DATE)
    return root


def workbook_rows(drop: Path, centre: str) -> list[tuple]:
    """The non-blank rows (header first) of a centre's delivered workbook, read the way a data
    manager's spreadsheet would."""
    (folder,) = (drop / centre).iterdir()
    path = folder / WORKBOOKS[centre][1]
    if path.suffix == ".ods":
        import pandas as pd

        frame = pd.read_excel(path, engine="odf", sheet_name="Registry", header=None, dtype=object)
        rows = [tuple(None if pd.isna(v) else v for v in r) for r in frame.itertuples(index=False)]
    else:
        book = openpyxl.load_workbook(path, read_only=True)
        try:
            rows = list(book["Registry"].iter_rows(values_only=True))
        finally:
            book.close()
    return [r for r in rows if any(v is not None for v in r)]


@pytest.mark.parametrize("centre", list(WORKBOOKS))
def test_the_generator_writes_the_new_centre_from_its_declaration_alone(drop, centre):
    header, *records = workbook_rows(drop, centre)
    assert header[:4] == ("Patient ID", "Surname", "Date of birth", "Gender")
    assert len(records) == fifth_centre_truth().patient.height


@pytest.mark.parametrize("centre", list(WORKBOOKS))
def test_the_new_centre_is_read_back_to_its_truth(drop, centre):
    imported = read_and_validate(load_registry(drop)[centre], latest_delivery(drop, centre), KEY)
    assert imported.failure is None, imported.failure
    truth = fifth_centre_truth()
    patient = pl.concat([imported.validated.accepted["patient"], imported.validated.quarantined["patient"]],
                        how="diagonal")
    assert patient.height == truth.patient.height
    assert sorted(patient["sex"].drop_nulls()) == sorted(truth.patient["sex"].drop_nulls())
    tumour = pl.concat([imported.validated.accepted["tumour"], imported.validated.quarantined["tumour"]],
                       how="diagonal")
    # millimetres in the file, centimetres in the warehouse
    assert sorted(tumour["size_cm"].drop_nulls().round(4)) == sorted(truth.tumour["size_cm"].drop_nulls().round(4))
    event = pl.concat([imported.validated.accepted["event"], imported.validated.quarantined["event"]],
                      how="diagonal")
    expected = truth.event.group_by("event_kind").len().sort("event_kind")
    assert event.group_by("event_kind").len().sort("event_kind").rows() == expected.rows()
    errors = imported.validated.queries.filter(pl.col("severity") == "error", pl.col("file").is_not_null())
    assert errors.filter(pl.col("rule").is_in(["unknown_code", "unparseable_date", "unparseable_number"])).is_empty()


@pytest.mark.slow
def test_the_new_centres_run_through_the_nightly_with_every_row_accounted(drop, tmp_path):
    night_ok(run_night(drop, tmp_path), tmp_path)
    counted = accounting(tmp_path / "warehouse.duckdb")
    assert set(counted) == set(WORKBOOKS)
    for centre, (read, stored, quarantined) in counted.items():
        assert read == len(workbook_rows(drop, centre)) - 1 == stored + quarantined  # (header row)
        assert stored > 0
