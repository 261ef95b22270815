"""What an analysis hands to the report: titled sections of tables and figures.

The analyses (:mod:`clms_etl.survival`, :mod:`clms_etl.molecular`) build :class:`Section`s
from their own results; the report (:mod:`clms_etl.report.html`) and the Excel workbook only
lay them out, so neither knows how a number was computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl


@dataclass(frozen=True)
class ReportTable:
    """A table as it should be read: already in display layout (formatted strings are fine)."""

    key: str  # short identifier, also the Excel sheet name (<= 31 characters), e.g. "table1"
    caption: str  # e.g. "Table 1. Characteristics of the 79 patients"
    frame: pl.DataFrame
    note: str = ""  # footnote: conventions (CI transform, test used, population)
    # Indentation of each row (0: a heading such as "Primary site", 1: its items), shown by the first
    # cell's markup (HTML) or indent (Excel), never by leading spaces; empty: every row at level 0.
    row_levels: tuple[int, ...] = ()

    def __post_init__(self):
        if self.row_levels and len(self.row_levels) != self.frame.height:
            raise ValueError(f"table {self.key}: {len(self.row_levels)} row levels for {self.frame.height} rows")


@dataclass(frozen=True)
class ReportFigure:
    key: str  # e.g. "figure2"
    caption: str
    png: Path
    svg: Path | None = None
    note: str = ""


@dataclass(frozen=True)
class Section:
    key: str  # e.g. "survival"
    title: str
    text: str = ""  # short plain-text introduction (paragraphs separated by blank lines)
    tables: tuple[ReportTable, ...] = field(default_factory=tuple)
    figures: tuple[ReportFigure, ...] = field(default_factory=tuple)
