"""Planted defects are where the truth manifest says, as it says, and nowhere else."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from clms_etl.synth.defects import KINDS
from clms_etl.synth.generate import generate

DATE = dt.date(2026, 11, 23)
TEXT_FORMATS = {  # file name -> (encoding, delimiter): the contract's, read with the csv module
    "clms_montpellier.csv": ("cp1252", ";"),
    f"CLMSLYON_DATA_{DATE.isoformat()}.csv": ("utf-8", ","),
    "nimes_dossiers.txt": ("mac_roman", "\t"),
}


def read_grid(path: Path, sheet: str | None) -> list[list[str]]:
    """Cells as text, row 1 = header, with standard readers only."""
    if path.suffix == ".xlsx":
        ws = openpyxl.load_workbook(path, read_only=True, data_only=True)[sheet]
        out = []
        for row in ws.iter_rows(values_only=True):
            cells = []
            for v in row:
                if isinstance(v, dt.datetime):
                    v = v.date().isoformat()
                elif isinstance(v, float) and v.is_integer():
                    v = int(v)
                cells.append("" if v is None else str(v))
            out.append(cells)
        return out
    encoding, delimiter = TEXT_FORMATS[path.name]
    text = path.read_bytes().decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


@pytest.fixture(scope="module", params=[0, 1, 2])
def planted(request, tmp_path_factory):
    seed = request.param
    clean = tmp_path_factory.mktemp(f"clean{seed}")
    bad = tmp_path_factory.mktemp(f"bad{seed}")
    generate(clean, seed=seed, delivery_date=DATE)
    result = generate(bad, seed=seed, defect_rate=0.3, delivery_date=DATE)
    return clean, bad, result.defects


def test_manifest_is_written_next_to_the_deliveries(planted):
    _, bad, manifest = planted
    on_disk = pl.read_csv(bad / "_truth" / "defects.csv", schema_overrides={"value": pl.String, "sheet": pl.String})
    assert on_disk.height == manifest.height > 0
    assert set(on_disk.columns) >= {"centre", "file", "sheet", "row", "column", "kind"}


def test_every_manifest_row_points_at_the_value_written_in_the_file(planted):
    clean, bad, manifest = planted
    for d in manifest.iter_rows(named=True):
        path = bad / d["centre"] / DATE.isoformat() / d["file"]
        grid = read_grid(path, d["sheet"])
        header = grid[0]
        cell = grid[d["row"] - 1][header.index(d["column"])]
        assert cell == d["value"], d
        clean_grid = read_grid(clean / d["centre"] / DATE.isoformat() / d["file"], d["sheet"])
        if d["kind"] == "duplicate_patient_row":
            assert d["row"] > len(clean_grid), "a duplicate is an extra row"
            assert grid[d["row"] - 1] in grid[1 : len(clean_grid)], "and repeats an existing one"
        else:
            assert clean_grid[d["row"] - 1][header.index(d["column"])] != cell, d


def test_nothing_but_the_manifest_rows_differs_from_the_clean_delivery(planted):
    """Only the named rows change (a wide row may echo a date in a derived column, e.g.
    Montpellier's last news = the death date), and each named cell is among the changes."""
    clean, bad, manifest = planted
    named = {(d["centre"], d["file"], d["sheet"], d["row"], d["column"])
             for d in manifest.iter_rows(named=True) if d["kind"] != "duplicate_patient_row"}
    found = set()
    for centre_dir in (p for p in bad.iterdir() if p.is_dir() and p.name not in ("_truth", "molecular")):
        for path in (centre_dir / DATE.isoformat()).iterdir():
            if path.suffix not in (".xlsx", ".csv", ".txt") or "DataDictionary" in path.name:
                continue
            sheets = openpyxl.load_workbook(path, read_only=True).sheetnames if path.suffix == ".xlsx" else [None]
            for sheet in sheets:
                a, b = read_grid(path, sheet), read_grid(clean / centre_dir.name / DATE.isoformat() / path.name, sheet)
                for r, (ra, rb) in enumerate(zip(a, b), start=1):
                    for c, (x, y) in enumerate(zip(ra, rb)):
                        if x != y:
                            found.add((centre_dir.name, path.name, sheet, r, a[0][c]))
    assert named <= found
    assert {f[:4] for f in found} == {n[:4] for n in named}


def test_every_defect_kind_is_planted_somewhere_across_seeds(tmp_path):
    kinds = set()
    for seed in range(3):
        kinds |= set(generate(tmp_path / str(seed), seed=seed, defect_rate=0.4, delivery_date=DATE).defects["kind"])
    assert kinds == set(KINDS)


def test_each_defective_patient_carries_a_single_defect(planted):
    _, _, manifest = planted
    assert manifest["patient_key"].is_duplicated().sum() == 0
