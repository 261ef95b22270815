"""What every centre format module provides to the generator.

A format module turns a :class:`~clms_etl.synth.truth.Truth` into :class:`RawTable` s — the
cells exactly as the centre's export would hold them — and writes them to disk. Keeping the
cells in memory between the two steps is what lets :mod:`clms_etl.synth.defects` damage a
precise (file, row, column) and record it in the truth manifest.

Row numbers follow what a data manager sees: the header is row 1, the first record row 2
(Excel's numbering; for a one-line-per-record text file, the line number).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from clms_etl.synth.truth import Truth

Cell = str | int | float | dt.date | None


@dataclass
class RawTable:
    """One sheet or file of a delivery, as cells.

    ``refs[i]`` lists the canonical rows that produced row i: ``patient:<key>``,
    ``surgery:<key>:<no>``, ``event:<key>:<no>`` (a wide format puts several on one row).
    """

    file: str
    sheet: str | None
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    refs: list[tuple[str, ...]] = field(default_factory=list)

    def add(self, row: dict[str, Cell], *refs: str) -> None:
        self.rows.append([row.get(c) for c in self.columns])
        self.refs.append(refs)

    def col(self, name: str) -> int:
        return self.columns.index(name)

    @property
    def label(self) -> str:
        return f"{self.file}[{self.sheet}]" if self.sheet else self.file


@dataclass(frozen=True)
class Slot:
    """A column where a format-level defect can be planted, and how to make the bad value."""

    file: str
    sheet: str | None
    column: str
    make: Callable[[Cell, np.random.Generator], Cell]


class DeliveryWriter(Protocol):
    """Streams RawTables of successive chunks into one delivery folder."""

    def append(self, tables: list[RawTable]) -> None: ...

    def close(self) -> list[Path]: ...


class CentreFormat(Protocol):
    """The shape of ``clms_etl.synth.formats.<format>``."""

    name: str

    def render(self, truth: Truth, rng: np.random.Generator, first_row: int = 0) -> list[RawTable]:
        """Cells of ``truth`` (one centre) in this format."""

    def writer(self, delivery_dir: Path, delivery_date: dt.date) -> DeliveryWriter: ...

    def locate(self, table: str, field: str) -> tuple[str, str | None, str] | None:
        """(file, sheet, column) holding a canonical field, or None if the format lacks it."""

    def slots(self) -> dict[str, list[Slot]]:
        """Columns open to each format-level defect kind."""


def pick(choices: list[str]) -> Callable[[Cell, np.random.Generator], Cell]:
    """A Slot maker writing one of ``choices`` whatever the cell held (bad dates, unknown codes)."""
    return lambda value, rng: str(rng.choice(choices))


def iter_rows(frame) -> Iterable[dict]:
    return frame.iter_rows(named=True)
