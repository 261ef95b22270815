"""The data-query model: what reading, the identifier screen and validation raise, what the query
list and the warehouse's ``data_query`` table hold.

A data query is one problem in one cell (or row, or file), for the centre's data manager
(:class:`DataQuery`, one row of :data:`QUERY_SCHEMA`). Its rule and severity come from the rule
registry (:mod:`clms_etl.rules`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

QUERY_SCHEMA = {
    "centre": pl.String,
    "delivery_date": pl.Date,
    "file": pl.String,
    "sheet": pl.String,
    "row": pl.Int64,
    "table_name": pl.String,  # canonical table of the row concerned (null: whole file)
    "row_id": pl.String,  # canonical row concerned (null: whole file)
    "patient_id": pl.String,
    "field": pl.String,  # column as named in the centre's file
    "value": pl.String,  # as received; masked for identifier columns
    "rule": pl.String,
    "severity": pl.String,
    "message": pl.String,
}

IDENTIFIER_MASK = "<identifiant masqué>"
MAX_VALUE = 200  # characters of a cell a query quotes (a 50 MB cell would flood the query table)


def clipped(value: pl.Expr) -> pl.Expr:
    """The text ``value`` cut to :data:`MAX_VALUE` characters, with "…"."""
    return pl.when(value.str.len_chars() > MAX_VALUE).then(value.str.slice(0, MAX_VALUE) + "…").otherwise(value)


@dataclass
class DataQuery:
    """One problem in one cell (or row, or file), for the centre's data manager."""

    centre: str
    delivery_date: dt.date
    file: str
    sheet: str | None
    row: int | None
    table_name: str | None
    row_id: str | None
    patient_id: str | None
    field: str | None
    value: str | None
    rule: str
    severity: str
    message: str


def queries_frame(queries: Iterable[DataQuery]) -> pl.DataFrame:
    # Column by column: ``dataclasses.asdict`` deep-copies every field of every query.
    if isinstance(queries, QueryLog):
        return queries.to_frame()
    queries = queries if isinstance(queries, list) else list(queries)
    return pl.DataFrame({name: [getattr(q, name) for q in queries] for name in QUERY_SCHEMA}, schema=QUERY_SCHEMA)


def to_queries(frame: pl.DataFrame) -> list[DataQuery]:
    return list(map(DataQuery, *(c.to_list() for c in frame.iter_columns())))


def _flushing(name: str):
    method = getattr(list, name)

    def wrapper(self, *args, **kwargs):
        self._flush()
        return method(self, *args, **kwargs)

    wrapper.__name__ = name
    return wrapper


class QueryLog(list):
    """The queries of one read, in order: a list of :class:`DataQuery` that also takes whole
    frames of queries (:meth:`ReadContext.extend_queries`) without turning each row into an
    object. A frame stays a frame until the log is read as a list (then its rows become
    ``DataQuery`` objects in place, so the list is exactly what it would have been);
    :meth:`to_frame` concatenates the frames as they are, which is what validation needs.
    Appending (``append``, ``extend``, ``+=``) never needs the frames, so it leaves them be."""

    def __init__(self, *args):
        super().__init__(*args)
        self._pending: list[tuple[int, pl.DataFrame]] = []  # (objects before it, frame)

    def append_frame(self, frame: pl.DataFrame) -> None:
        if not frame.is_empty():
            self.__dict__.setdefault("_pending", []).append((list.__len__(self), frame))

    def _flush(self) -> None:
        pending = self.__dict__.get("_pending")
        if not pending:
            return
        self._pending = []
        for at, frame in reversed(pending):  # from the end, so earlier positions stay valid
            list.__setitem__(self, slice(at, at), to_queries(frame))

    def to_frame(self) -> pl.DataFrame:
        """Every query as one :data:`QUERY_SCHEMA` frame, in order."""
        pending = self.__dict__.get("_pending") or []
        parts, start = [], 0
        for at, frame in pending:
            if at > start:
                parts.append(queries_frame(list.__getitem__(self, slice(start, at))))
            parts.append(frame)
            start = at
        if start < list.__len__(self) or not parts:
            parts.append(queries_frame(list.__getitem__(self, slice(start, None))))
        return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")

    for _name in ("__iter__", "__len__", "__getitem__", "__setitem__", "__delitem__", "__contains__",
                  "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__repr__", "__reversed__",
                  "__add__", "__mul__", "__imul__", "__reduce__", "__reduce_ex__", "__copy__", "copy", "index",
                  "count", "insert", "pop", "remove", "reverse", "sort", "clear"):
        if hasattr(list, _name):
            locals()[_name] = _flushing(_name)
    del _name
    __hash__ = None
