"""Format declarations: where they are looked up, and a mistake in one named, not a traceback."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from clms_etl.centres import load_registry
from clms_etl import formats
from clms_etl.readers.base import ImportFailure, ReadContext
from clms_etl.readers.engine import DeclaredReader

PACKAGED = formats.find("montpellier")
KEY = b"format-declaration-test-key-0000"


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = PACKAGED.read_text("utf-8")
    assert old in text
    (tmp_path / "formats").mkdir(exist_ok=True)
    path = tmp_path / "formats" / "montpellier.toml"
    path.write_text(text.replace(old, new, 1), "utf-8")
    return path


def test_a_drop_folders_own_declaration_wins_over_the_packaged_one(tmp_path):
    _edited(tmp_path, 'name = "clms_montpellier.csv"', 'name = "export.csv"')
    assert load_registry(tmp_path)["montpellier"].declaration == tmp_path / "formats" / "montpellier.toml"
    assert load_registry(tmp_path)["montpellier"].reader.FILE == "export.csv"
    assert load_registry()["montpellier"].reader.FILE == "clms_montpellier.csv"


@pytest.mark.parametrize("old, new, said", [
    ('codes = "sex"', 'codes = "gender"', "column SEXE: code list 'gender'"),
    ('kind = "number"', 'kind = "decimal"', "column TAILLE_CM: kind 'decimal'"),
    ('field = "event.death.date"', 'field = "event.burial.date"', "column DATE_DC: event kind 'burial'"),
    ('identifier = "name"', 'identifier = "nickname"', "column NOM: identifier 'nickname'"),
    ('field = "patient.local_id"', 'field = "patient.hospital_number"', "no column is the patient key"),
])
def test_a_mistake_in_a_declaration_names_the_file_and_the_column(tmp_path, old, new, said):
    with pytest.raises(ValueError, match=f"montpellier.toml: {said}"):
        formats.load(_edited(tmp_path, old, new))


def test_a_required_column_of_the_declaration_missing_from_the_file_stops_the_import(tmp_path):
    folder = tmp_path / "delivery"
    folder.mkdir()
    (folder / "clms_montpellier.csv").write_bytes(b"IPP;SEXE\r\nA1;H\r\n")
    reader = DeclaredReader(formats.load(PACKAGED))
    with pytest.raises(ImportFailure, match="colonne obligatoire « DDN » absente"):
        reader.read(ReadContext("montpellier", folder, dt.date(2026, 11, 23), KEY))


@pytest.mark.parametrize("suffix, engine", [(".xlsx", "xlsxwriter"), (".ods", "odf")])
def test_a_declared_workbook_sheet_is_read_by_calamine_with_its_date_cells(tmp_path, suffix, engine):
    import pandas as pd

    name = f"export{suffix}"
    path = _edited(tmp_path, 'name = "clms_montpellier.csv"', f'name = "{name}"\nsheet = "Registre"')
    decl = formats.load(path)
    folder = tmp_path / "delivery"
    folder.mkdir()
    cells = {"IPP": "M1", "DDN": dt.datetime(1950, 3, 4), "DATE_DIAG": "12/05/2014", "SEXE": "F", "TAILLE_CM": 1.5,
             "STATUT_VITAL": "VIVANT", "DATE_DERNIERES_NOUVELLES": dt.datetime(2020, 1, 2)}
    row = [cells.get(c.name) for c in decl.columns]
    pd.DataFrame([row], columns=[c.name for c in decl.columns], dtype=object).to_excel(
        folder / name, engine=engine, sheet_name="Registre", index=False)
    result = DeclaredReader(decl).read(ReadContext("montpellier", folder, dt.date(2026, 11, 23), KEY))
    patient = result.frames["patient"]
    assert patient.select("sex", "diagnosis_date", "age_at_diagnosis_years").row(0) == ("female", dt.date(2014, 5, 12), 64)
    assert result.frames["tumour"]["size_cm"].to_list() == [1.5]
    assert result.frames["event"].select("event_kind", "event_date").rows() == [("last_news", dt.date(2020, 1, 2))]
    assert result.source_rows == {f"{name}[Registre]": 1}
    assert result.queries_frame().filter(pl.col("severity") == "error").is_empty()


def test_another_sheet_and_values_without_a_header_in_a_declared_workbook_are_reported(tmp_path):
    import pandas as pd

    path = _edited(tmp_path, 'name = "clms_montpellier.csv"', 'name = "export.xlsx"\nsheet = "Registre"')
    decl = formats.load(path)
    folder = tmp_path / "delivery"
    folder.mkdir()
    columns = [c.name for c in decl.columns]
    row = {"IPP": "M1", "SEXE": "F", "DATE_DIAG": "12/05/2014"}
    with pd.ExcelWriter(folder / "export.xlsx", engine="xlsxwriter") as book:
        pd.DataFrame([[row.get(c) for c in columns] + ["typed beside the table"]], columns=[*columns, ""],
                     dtype=object).to_excel(book, sheet_name="Registre", index=False)
        pd.DataFrame([["M2", "F"]], columns=["IPP", "SEXE"]).to_excel(book, sheet_name="Notes", index=False)
    result = DeclaredReader(decl).read(ReadContext("montpellier", folder, dt.date(2026, 11, 23), KEY))
    queries = result.queries_frame()
    assert queries.filter(pl.col("rule") == "unknown_sheet").select("sheet", "severity").rows() == [("Notes", "warning")]
    stray = queries.filter(pl.col("rule") == "value_without_header")
    assert stray.select("sheet", "field").rows() == [("Registre", f"colonne {len(columns) + 1}")]
