"""The canonical contract: every table and column the readers produce and the warehouse stores.

Declared once, in ``clms_etl/data/contract.toml`` (data, not code: a new column or code is an edit
a data manager can review, and nothing there can drift from what is derived). This module loads
it into frozen dataclasses; everything else is derived from :data:`TABLES`:

* the polars schemas of the canonical frames (:data:`clms_etl.model.TABLES`),
* the pandera models of validation (``validations/canonical.py``: dtypes, descriptions, titles,
  code lists and ranges),
* the SQLAlchemy tables with their comments, NOT NULL, keys and CHECK constraints
  (:mod:`clms_etl.warehouse.schema`), hence the Alembic migrations and the data dictionary,
* the Dagster column schemas of the warehouse assets (``assets/metadata.py``),
* the labels, units and code lists the data queries are written with.

Conventions: a range is inclusive unless ``min_exclusive``; ``nullable`` is the warehouse's (a
canonical frame may hold nulls anywhere, validation reports a missing value as a data query);
``label`` is French (what a centre's data manager reads) and is absent for the laboratory's
columns, whose English names are its own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

import polars as pl

CONTRACT_FILE = "data/contract.toml"
DTYPES: dict[str, type[pl.DataType]] = {
    "String": pl.String, "Int8": pl.Int8, "Int16": pl.Int16, "Int32": pl.Int32, "Int64": pl.Int64,
    "Float64": pl.Float64, "Boolean": pl.Boolean, "Date": pl.Date,
}
PSEUDONYM_LENGTH = 21  # "P" + 20 hex digits (clms_etl.keys.pseudonym)


@dataclass(frozen=True)
class Column:
    """One canonical column and every fact about it."""

    name: str
    dtype: type[pl.DataType]
    comment: str  # English: the database comment, the data dictionary, the Dagster column description
    nullable: bool = True  # in the warehouse
    label: str | None = None  # French, for the centres' data managers
    unit: str | None = None  # a key of UNITS
    codes: str | None = None  # a key of VOCABULARIES: the only values allowed
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    pseudonym: bool = False  # a patient pseudonym ("P" + 20 hex digits)

    @property
    def allowed(self) -> tuple | None:
        """The code list, or None for a column that is not coded."""
        return VOCABULARIES[self.codes] if self.codes else None

    @property
    def has_range(self) -> bool:
        return self.min is not None or self.max is not None

    @property
    def unit_label(self) -> str | None:
        """The unit as a French reader reads it after a value (``ans``, ``cm``), if any."""
        return UNITS[self.unit] if self.unit else None

    @property
    def value_labels(self) -> dict[str, str]:
        """French labels of the column's codes (empty when its code list has none)."""
        return value_labels(self.codes) if self.codes else {}

    def description(self) -> str:
        """The comment with the unit, range and code list spelled out (pandera, Dagster)."""
        facts = []
        if self.unit:
            facts.append(f"unit: {self.unit}")
        if self.has_range:
            low = "" if self.min is None else f"{self.min} {'<' if self.min_exclusive else '≤'} "
            high = "" if self.max is None else f" ≤ {self.max}"
            facts.append(f"range: {low}{self.name}{high}")
        if self.allowed:
            facts.append("allowed: " + ", ".join(str(v) for v in self.allowed))
        return self.comment + (f" ({'; '.join(facts)})" if facts else "")


@dataclass(frozen=True)
class Table:
    name: str
    source: str  # "centre" (a chart) or "laboratory"
    comment: str
    key: tuple[str, ...]  # primary key in the warehouse
    columns: tuple[Column, ...]  # domain columns, then provenance
    parent: tuple[str, str, str] | None = None  # (column, parent table, parent column)
    checks: tuple[tuple[str, str], ...] = ()  # (name, SQL condition) across columns

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name}.{name} is not in the contract")

    @property
    def polars_schema(self) -> dict[str, type[pl.DataType]]:
        return {c.name: c.dtype for c in self.columns}


def _column(spec: dict) -> Column:
    return Column(**{**spec, "dtype": DTYPES[spec["dtype"]]})


def parse(text: str):
    """The contract in ``text`` (TOML): (tables, provenance columns, the warehouse's delivery
    column, code lists, value labels, units). A contract that names an unknown code list or unit,
    or labels a code its list lacks, is refused with the place named."""
    data = tomllib.loads(text)
    vocabularies = {name: tuple(values) for name, values in data["vocabularies"].items()}
    provenance = tuple(_column(c) for c in data["provenance"])
    tables = {}
    for name, spec in data["tables"].items():
        parent = None
        if "parent" in spec:
            parent_table, parent_column = spec["parent"].split(".")
            parent = (parent_column, parent_table, parent_column)
        tables[name] = Table(
            name, spec["source"], spec["comment"], tuple(spec["key"]),
            (*(_column(c) for c in spec["columns"]), *provenance),
            parent, tuple(spec.get("checks", {}).items()),
        )
    # A typo in the file fails here, at import, not in a night's run (an unknown column key
    # already fails in Column(**spec)).
    for codes, labels in data["value_labels"].items():
        if set(labels) - set(vocabularies.get(codes, ())):
            raise ValueError(f"value labels of {codes}: {sorted(set(labels) - set(vocabularies.get(codes, ())))} "
                             "are not codes of that list")
    for table in tables.values():
        for column in table.columns:
            if column.codes is not None and column.codes not in vocabularies:
                raise ValueError(f"{table.name}.{column.name}: unknown code list {column.codes}")
            if column.unit is not None and column.unit not in data["units"]:
                raise ValueError(f"{table.name}.{column.name}: unknown unit {column.unit}")
    return (tables, provenance, _column(data["warehouse_provenance"]), vocabularies, data["value_labels"],
            dict(data["units"]))


CONTRACT_TEXT = resources.files("clms_etl").joinpath(CONTRACT_FILE).read_text("utf-8")
TABLES, PROVENANCE, DELIVERY_COLUMN, VOCABULARIES, _VALUE_LABELS, UNITS = parse(CONTRACT_TEXT)
PROVENANCE_NAMES = tuple(c.name for c in PROVENANCE)
CLINICAL_TABLES = tuple(t for t, spec in TABLES.items() if spec.source == "centre")
MOLECULAR_TABLES = tuple(t for t, spec in TABLES.items() if spec.source == "laboratory")


def value_labels(codes: str) -> dict[str, str]:
    """French labels of the values of code list ``codes`` (empty when it has none)."""
    return dict(_VALUE_LABELS.get(codes, {}))


def field_labels(table_name: str) -> dict[str, str]:
    """Column -> French label of the columns of ``table_name`` that have one."""
    return {c.name: c.label for c in TABLES[table_name].columns if c.label}


def column_value_labels() -> dict[str, dict[str, str]]:
    """Column name -> French labels of its codes, over every table (a column name means one
    thing in every table: two code lists under one name are an error)."""
    out: dict[str, dict[str, str]] = {}
    for spec in TABLES.values():
        for column in spec.columns:
            if column.value_labels and out.setdefault(column.name, column.value_labels) != column.value_labels:
                raise ValueError(f"{column.name}: two code lists under one column name")
    return out


def coded_columns(table_name: str) -> dict[str, tuple]:
    """Column -> its code list, for the coded columns of ``table_name``."""
    return {c.name: c.allowed for c in TABLES[table_name].columns if c.allowed}
