"""Scale runs: many centres reusing the four formats, streamed chunk by chunk."""

from __future__ import annotations

import csv
import datetime as dt
import tomllib

import openpyxl
import pytest

from clms_etl.synth.generate import generate

DATE = dt.date(2026, 11, 23)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale")
    # chunks of 250: several per centre, so streaming is exercised
    result = generate(out, seed=3, patients=3_001, centres=6, delivery_date=DATE, workers=2, chunk_size=250)
    return out, result


def test_scale_run_writes_every_centre_with_its_format_declared(scaled):
    out, result = scaled
    declared = tomllib.loads((out / "centres.toml").read_text())["centres"]
    assert list(declared) == ["nice", "montpellier", "lyon", "nimes", "centre05-nice", "centre06-montpellier"]
    assert sum(result.patients.values()) == 3_001
    for centre in declared:
        assert any((out / centre / DATE.isoformat()).iterdir())


def test_scale_files_hold_one_record_per_patient_across_chunks(scaled):
    out, result = scaled
    book = openpyxl.load_workbook(out / "centre05-nice" / DATE.isoformat() / "export_dermato_nice.xlsx", read_only=True)
    ids = [r[0] for r in book["Patients"].iter_rows(min_row=2, values_only=True)]
    assert len(ids) == len(set(ids)) == result.patients["centre05-nice"]
    text = (out / "centre06-montpellier" / DATE.isoformat() / "clms_montpellier.csv").read_bytes().decode("cp1252")
    rows = list(csv.DictReader(text.splitlines(), delimiter=";"))
    assert len(rows) == len({r["IPP"] for r in rows}) == result.patients["centre06-montpellier"]


def test_scale_molecular_cases_link_to_generated_patients(scaled):
    out, _ = scaled
    manifest = list(csv.DictReader((out / "molecular" / DATE.isoformat() / "manifest.csv").open(encoding="utf-8")))
    assert manifest
    book = openpyxl.load_workbook(out / "nice" / DATE.isoformat() / "export_dermato_nice.xlsx", read_only=True)
    nice_ids = {str(r[0]) for r in book["Patients"].iter_rows(min_row=2, values_only=True)}
    for m in manifest:
        if m["centre"] == "nice":
            assert m["local_id"] in nice_ids
