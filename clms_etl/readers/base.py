"""What every reader shares: the result shape, raising data queries, column matching, delivery files.

A reader is a module ``clms_etl.readers.<format>`` with one function::

    def read(ctx: ReadContext) -> ReadResult

It turns one delivery folder into canonical frames (:mod:`clms_etl.model`) plus the data
queries it raised while parsing. It never drops a row: a cell it cannot understand becomes
null in the canonical row **and** an error-level query pointing at that row, and the row is
quarantined later. A problem that makes the whole delivery unreadable (missing required
column, unreadable file) raises :class:`ImportFailure` with a message naming file and column.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from clms_etl import rules
from clms_etl.data_queries import MAX_VALUE, QUERY_SCHEMA, DataQuery, QueryLog, clipped, queries_frame, to_queries
from clms_etl.formats import fold, normalise_name  # (re-exported: the readers compare names and codes so)
from clms_etl.identifiers import Identifiers


# What the readers say, by name, and REDCap's own facts: data (``data/readers.toml``).
READERS = tomllib.loads((Path(__file__).parents[1] / "data" / "readers.toml").read_text("utf-8"))


def say(message: str, **slots) -> str:
    """The reader message ``message`` of ``data/readers.toml``, its ``{slots}`` filled."""
    return READERS["messages"][message].format(**slots)


class ImportFailure(Exception):
    """The delivery cannot be imported at all; the previous import stays in place. ``rule``: the
    data query it becomes where an adapter refuses one file of a delivery, not all of it."""

    def __init__(self, message: str, file: str | None = None, column: str | None = None, rule: str | None = None):
        super().__init__(message)
        self.file, self.column, self.rule = file, column, rule


@dataclass
class ReadContext:
    centre: str
    delivery_dir: Path
    delivery_date: dt.date
    pseudonym_key: bytes
    queries: list[DataQuery] = field(default_factory=lambda: QueryLog())
    # the delivery's identifier cells and birth dates, registered raw by the reader: everything that
    # leaves the reader is screened against them (clms_etl.identifiers)
    identifiers: Identifiers = field(default_factory=Identifiers)

    def query(self, *, file: str, sheet: str | None = None, row: int | None = None,
              table: str | None = None, row_id: str | None = None, patient_id: str | None = None,
              field: str | None = None, value=None, rule: str, message: str) -> None:
        """One query under ``rule``, with the registry's severity (:mod:`clms_etl.rules`)."""
        text = None if value is None else str(value)
        text = text[:MAX_VALUE] + "…" if text is not None and len(text) > MAX_VALUE else text
        self.queries.append(DataQuery(self.centre, self.delivery_date, file, sheet, row, table, row_id, patient_id,
                                      field, text, rule, rules.severity(rule), message))

    def extend_queries(self, frame: pl.DataFrame) -> None:
        """Append one query per row of ``frame`` (columns of :data:`QUERY_SCHEMA`; ``centre`` and
        ``delivery_date`` may be left out; ``severity`` is always the registry's), in frame order,
        exactly as :meth:`query` would: values longer than :data:`MAX_VALUE` characters cut with "…". For many
        alike queries at once."""
        if frame.is_empty():
            return
        rules.check_registered(frame["rule"].unique())
        given = {"centre": pl.lit(self.centre), "delivery_date": pl.lit(self.delivery_date)}
        frame = frame.with_columns(**{k: given.get(k, pl.lit(None, dtype=t)) for k, t in QUERY_SCHEMA.items()
                                      if k not in frame.columns and k != "severity"},
                                   severity=rules.severity_expr(pl.col("rule")))
        frame = frame.select([pl.col(k).cast(t) for k, t in QUERY_SCHEMA.items()])
        frame = frame.with_columns(clipped(pl.col("value")).alias("value"))
        if isinstance(self.queries, QueryLog):
            self.queries.append_frame(frame)  # kept as a frame until someone reads it as a list
        else:
            self.queries.extend(to_queries(frame))


@dataclass
class ReadResult:
    centre: str
    delivery_date: dt.date
    frames: dict[str, pl.DataFrame]
    queries: list[DataQuery]
    files: list[Path]
    # source rows read per file (label "file" or "file[sheet]"): the accounting starts here
    source_rows: dict[str, int] = field(default_factory=dict)

    def queries_frame(self) -> pl.DataFrame:
        return queries_frame(self.queries)


# --- column matching ------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnSpec:
    """A column a reader needs: its key in the reader, the names it may carry, and if required."""

    key: str
    names: tuple[str, ...]
    required: bool = True


def match_columns(ctx: ReadContext, header: list[str], specs: list[ColumnSpec], file: str,
                  sheet: str | None = None) -> dict[str, int]:
    """Map each spec key to its column index by normalised name.

    Missing required column -> ImportFailure; a duplicated header among the needed columns
    -> ImportFailure (which one to trust is the centre's call); an unknown column -> a
    warning query, and the column is ignored.
    """
    where = f"{file} (feuille {sheet})" if sheet else file
    normalised = [normalise_name(h) if h is not None else "" for h in header]
    found: dict[str, int] = {}
    for spec in specs:
        wanted = {normalise_name(n) for n in (spec.key, *spec.names)}
        hits = [i for i, h in enumerate(normalised) if h in wanted]
        if len(hits) > 1:
            raise ImportFailure(say("duplicate_header", where=where, column=header[hits[0]], n=len(hits),
                                    columns=", ".join(str(i + 1) for i in hits)), file, header[hits[0]])
        if hits:
            found[spec.key] = hits[0]
        elif spec.required:
            column = spec.names[0] if spec.names else spec.key
            raise ImportFailure(say("missing_column", where=where, column=column), file, column)
    known = set(found.values())
    for i, h in enumerate(header):
        if i not in known and h not in (None, "") and normalised[i]:
            ctx.query(file=file, sheet=sheet, row=1, field=str(h), value=str(h), rule="unknown_column",
                      message=say("unknown_column", column=h))
    return found


def number_within(key: str) -> pl.Expr:
    """1..n within runs of equal ``key`` of a frame sorted by it (a window without hashing)."""
    idx = pl.int_range(pl.len(), dtype=pl.Int32)
    return idx - pl.when(pl.col(key).ne_missing(pl.col(key).shift())).then(idx).forward_fill() + 1


def repeated_rows(rows: pl.DataFrame, key: pl.Series) -> pl.Series:
    """The rows sharing a ``key`` (null: none) to report: each repeat, the first too when the copies differ."""
    dup = key.is_not_null() & key.is_duplicated()
    if not dup.any():
        return dup
    groups = pl.DataFrame({"i": dup.arg_true(), "k": key.filter(dup), "h": rows.filter(dup).hash_rows()})
    differ = groups.filter(pl.col("h").n_unique().over("k") > 1)["i"]
    return dup & (~key.is_first_distinct() | pl.int_range(key.len(), eager=True).is_in(differ.implode()))


def leaves_folder(folder: Path, path: Path) -> bool:
    """True when ``path``, symbolic links followed, is not inside ``folder``: a link in a delivery
    must not make the reader read (or hash) a file the centre did not deliver."""
    return not path.resolve().is_relative_to(folder.resolve())


def find_delivery_file(folder: Path, name: str) -> Path:
    """The delivery's file ``name`` (case-insensitive: Windows exports change the case), or an
    :class:`ImportFailure` naming it (also when it is a link to a file outside the delivery)."""
    path = folder / name
    if not path.is_file() and folder.is_dir():
        same = [p for p in folder.iterdir() if p.is_file() and p.name.lower() == name.lower()]
        if len(same) == 1:
            path = same[0]
    if path.is_file():
        if leaves_folder(folder, path):
            raise ImportFailure(say("link_outside", file=path.name), path.name)
        return path
    raise ImportFailure(say("file_missing", file=name, folder=folder), name)


# Signals to the process, not faults of a file: never turned into an ImportFailure.
PROCESS_SIGNALS = (KeyboardInterrupt, SystemExit, GeneratorExit)


def is_foreign_panic(exc: BaseException) -> bool:
    """A native library's crash surfacing in Python: pyo3 turns a Rust panic (fastexcel/calamine,
    polars) into ``PanicException``, a ``BaseException`` that ``except Exception`` lets through."""
    return not isinstance(exc, (Exception, *PROCESS_SIGNALS))


def read_guarded(ctx: ReadContext, name: str, read_file: Callable[[ReadContext, Path], ReadResult],
                 locate: Callable[[Path], str | None] | None = None) -> ReadResult:
    """``read_file(ctx, path)`` on the delivery's file ``name``, any unexpected error — a native
    library's panic included — turned into an :class:`ImportFailure` naming the file: a delivery
    never ends in a raw traceback (the cause stays chained for the logs). ``locate(path)``, when
    given, names the place in the file that made it fail (``"feuille X, cellule B7"``) for the
    message; Ctrl-C and SystemExit go through untouched."""
    path = find_delivery_file(ctx.delivery_dir, name)
    try:
        return read_file(ctx, path)
    except (ImportFailure, *PROCESS_SIGNALS):
        raise
    except BaseException as exc:
        try:
            where = locate(path) if locate is not None else None
        except Exception:  # the locator is a courtesy: its failure must not hide the first one
            where = None
        cause = "la bibliothèque de lecture a planté" if is_foreign_panic(exc) else "lecture impossible"
        raise ImportFailure(say("unreadable", file=name, where=f" ({where})" if where else "", cause=cause,
                                error=type(exc).__name__), name) from exc


def field_counts(text: str, data: bytes, height: int, separator: str, quote: str | None) -> np.ndarray:
    """Fields of each record of a CSV (header excluded; ``data``: ``text`` in UTF-8), the way the CSV
    dialect counts them; -1 everywhere when they cannot be told (then no record is reported for its width).

    Without quotes (or without quoting: ``quote`` None) a record is a line: separators are
    counted per line on the raw bytes.
    """
    if quote is None or b'"' not in data:
        buf = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(buf == 10)
        if len(ends) == 0 or ends[-1] != len(buf) - 1:
            ends = np.append(ends, len(buf))  # a last line without line break
        if len(ends) - 1 == height:
            return np.diff(np.searchsorted(np.flatnonzero(buf == ord(separator)), ends)) + 1
    try:
        counts = [len(r) for r in csv.reader(io.StringIO(text, newline=""), delimiter=separator)][1:]
    except csv.Error:  # (a quoted field over the csv module's size limit): counts unknown
        counts = []
    return np.array(counts if len(counts) == height else [-1] * height)
