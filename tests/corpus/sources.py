"""Rows of a drop folder counted straight from the files, without the product's readers.

The independent side of "nothing lost": each format's patient rows are counted with the
standard library and openpyxl, the way a data manager would count them in the file.
"""

from __future__ import annotations

import csv
import io
import tomllib
from pathlib import Path

import openpyxl


def _nice(folder: Path) -> int:
    book = openpyxl.load_workbook(folder / "export_dermato_nice.xlsx", read_only=True)
    try:
        return sum(1 for row in book["Patients"].iter_rows(min_row=2, values_only=True) if any(v is not None for v in row))
    finally:
        book.close()


def _lines(path: Path, encoding: str, end: str) -> int:
    return sum(1 for line in path.read_bytes().decode(encoding).split(end)[1:] if line.strip())


def _lyon(folder: Path) -> int:
    [data] = [p for p in folder.iterdir() if "_DATA_" in p.name]
    rows = csv.DictReader(io.StringIO(data.read_text(encoding="utf-8-sig"), newline=""))
    return sum(1 for r in rows if not r["redcap_repeat_instrument"])


COUNTERS = {
    "nice": _nice,
    "montpellier": lambda f: _lines(f / "clms_montpellier.csv", "cp1252", "\r\n"),
    "lyon": _lyon,
    "nimes": lambda f: _lines(f / "nimes_dossiers.txt", "mac_roman", "\r"),
}


def formats(drop: Path) -> dict[str, str]:
    """Centre -> format, from the packaged registry and the drop folder's own centres.toml."""
    from importlib import resources

    entries = tomllib.loads(resources.files("clms_etl").joinpath("data/centres.toml").read_text("utf-8"))["centres"]
    if (drop / "centres.toml").is_file():
        entries |= tomllib.loads((drop / "centres.toml").read_text("utf-8")).get("centres", {})
    return {name: e["format"] for name, e in entries.items() if not e.get("laboratory")}


def patient_rows(drop: Path) -> dict[str, int]:
    """Patient rows of the latest delivery of every centre present in ``drop``."""
    out = {}
    for centre, fmt in formats(drop).items():
        if not (drop / centre).is_dir():
            continue
        latest = max(p for p in (drop / centre).iterdir() if p.is_dir())
        out[centre] = COUNTERS[fmt](latest)
    return out
