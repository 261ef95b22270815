"""The query workbook a centre's data manager works through in Excel.

One workbook per centre and delivery: sheet « Requêtes » lists every data query (errors first,
then by file and row) with an empty « Réponse du centre » column to fill in; sheet « Synthèse »
counts them per rule and severity. The bytes depend only on the queries (fixed creation date),
so the same delivery always gives the same file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import xlsxwriter

from clms_etl.readers.base import ERROR, WARNING

SEVERITY_FR = {ERROR: "erreur", WARNING: "avertissement"}
# (header, query column or None for the centre's answer, width in characters)
COLUMNS = [
    ("Fichier", "file", 28),
    ("Feuille", "sheet", 14),
    ("Ligne", "row", 8),
    ("Patient (pseudonyme)", "patient_id", 24),
    ("Champ", "field", 26),
    ("Valeur reçue", "value", 18),
    ("Règle", "rule", 30),
    ("Gravité", "severity", 14),
    ("Message", "message", 80),
    ("Réponse du centre", None, 40),
]
FIXED_CREATED = dt.datetime(2000, 1, 1)  # reproducible bytes: no wall-clock time in the file
EXCEL_MAX_ROWS = 1_048_576


def write_query_workbook(queries: pl.DataFrame, path: Path, centre: str) -> Path:
    """Write ``centre``'s queries (QUERY_SCHEMA rows; other centres' rows are left out) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = _ordered(queries.filter(pl.col("centre") == centre))
    shown = rows.head(EXCEL_MAX_ROWS - 1)

    workbook = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False,
                                               "strings_to_urls": False})
    workbook.set_properties({"title": f"Requêtes de données – {centre}", "created": FIXED_CREATED,
                             "author": "clms-etl"})
    header = workbook.add_format({"bold": True, "bg_color": "#DDE4EE", "border": 1, "text_wrap": True,
                                  "valign": "top"})
    cell = workbook.add_format({"valign": "top"})
    wrapped = workbook.add_format({"valign": "top", "text_wrap": True})
    error = workbook.add_format({"valign": "top", "font_color": "#9C0006", "bold": True})

    sheet = workbook.add_worksheet("Requêtes")
    for j, (title, column, width) in enumerate(COLUMNS):
        sheet.write_string(0, j, title, header)
        sheet.set_column(j, j, width, wrapped if column in ("message", None) else cell)
    for i, record in enumerate(shown.iter_rows(named=True), start=1):
        for j, (_, column, _) in enumerate(COLUMNS):
            value = record[column] if column else None
            if column == "severity":
                sheet.write_string(i, j, SEVERITY_FR.get(value, value or ""), error if value == ERROR else cell)
            elif value is None:
                sheet.write_blank(i, j, None)
            elif isinstance(value, int):
                sheet.write_number(i, j, value)
            else:
                sheet.write_string(i, j, str(value))
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(shown.height, 1), len(COLUMNS) - 1)

    _summary(workbook, rows, header, wrapped, truncated=rows.height - shown.height)
    workbook.close()
    return path


def _ordered(queries: pl.DataFrame) -> pl.DataFrame:
    """Errors first, then warnings; within each, by file, sheet and row as the centre sees them."""
    return queries.with_columns(_rank=_severity_rank()).sort(
        ["_rank", "file", "sheet", "row", "field", "rule", "message"], nulls_last=True, maintain_order=True
    ).drop("_rank")


def _severity_rank() -> pl.Expr:
    return pl.col("severity").replace_strict({ERROR: 0, WARNING: 1}, default=2, return_dtype=pl.Int8)


def _summary(workbook, rows: pl.DataFrame, header, wrapped, truncated: int) -> None:
    counts = (
        rows.group_by("rule", "severity", maintain_order=True)
        .agg(pl.len().alias("n"), pl.col("message").first().alias("example"))
        .with_columns(_rank=_severity_rank())
        .sort(["_rank", "n", "rule"], descending=[False, True, False])
    )
    sheet = workbook.add_worksheet("Synthèse")
    for j, (title, width) in enumerate([("Règle", 34), ("Gravité", 14), ("Nombre", 10), ("Exemple de message", 90)]):
        sheet.write_string(0, j, title, header)
        sheet.set_column(j, j, width, wrapped if j == 3 else None)
    for i, (rule, severity, n, example, _) in enumerate(counts.iter_rows(), start=1):
        sheet.write_string(i, 0, rule)
        sheet.write_string(i, 1, SEVERITY_FR.get(severity, severity or ""))
        sheet.write_number(i, 2, n)
        sheet.write_string(i, 3, example or "")
    total = counts.height + 1
    bold = workbook.add_format({"bold": True})
    sheet.write_string(total, 0, "Total", bold)
    sheet.write_number(total, 2, rows.height, bold)
    if truncated:
        sheet.write_string(total + 2, 0, f"Liste tronquée : {truncated} requêtes au-delà de la limite d'Excel "
                                         f"ne figurent pas dans la feuille « Requêtes ».", bold)
    sheet.freeze_panes(1, 0)
