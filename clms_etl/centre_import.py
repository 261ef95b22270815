"""One centre's import as plain functions: read → validate → query list (→ warehouse load).

The Dagster layer (``assets/``) calls these steps one asset each; the same functions serve
tests and scripts without Dagster.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from clms_etl.centres import Centre
from clms_etl.deliveries import Delivery
from clms_etl.files import make_private, private_dir
from clms_etl.formats import FileLayout, file_layout
from clms_etl.identifiers import screen_read, screen_text, screen_validated
from clms_etl import rules
from clms_etl.data_queries import IDENTIFIER_MASK, DataQuery, clipped, queries_frame
from clms_etl.readers.base import ImportFailure, ReadContext, is_foreign_panic


@dataclass
class CentreImport:
    """What became of one delivery: validated frames, or the reason it could not be read."""

    centre: str
    delivery: Delivery
    validated: object | None  # clms_etl.validate.ValidatedDelivery
    failure: str | None = None

    @property
    def queries(self) -> pl.DataFrame:
        if self.validated is not None:
            return self.validated.queries
        return queries_frame([
            DataQuery(self.centre, self.delivery.date, "", None, None, None, None, None, None, None,
                      "import_failed", rules.severity("import_failed"), self.failure or "import impossible")
        ])


def read_and_validate(centre: Centre, delivery: Delivery, pseudonym_key: bytes) -> CentreImport:
    """Read a delivery with its centre's reader and validate it; an unreadable delivery is a
    :class:`CentreImport` with ``failure`` set (never an exception for bad data)."""
    from clms_etl.validate import validate

    ctx = ReadContext(centre.name, delivery.path, delivery.date, pseudonym_key)
    try:
        result = centre.reader.read(ctx)
    except ImportFailure as failure:
        # a failure message quotes the file: screened like everything else that leaves the reader
        return CentreImport(centre.name, delivery, None, screen_text(str(failure), ctx.identifiers))
    except BaseException as exc:
        if not is_foreign_panic(exc):
            raise
        # a native library's panic in a reader without its own guard: a clear failure, not a Rust trace
        return CentreImport(centre.name, delivery, None,
                            f"{centre.name} {delivery.date}: une bibliothèque de lecture a planté "
                            f"({type(exc).__name__}) sur un fichier de la livraison; import de ce centre arrêté "
                            f"(les données précédentes restent en place).")
    # Queries name the centre's own columns when its reader says which column holds a field.
    source_columns = getattr(centre.reader, "SOURCE_COLUMNS", None)
    # Nothing the reader found leaves it unscreened: identifiers masked, shifted lines quarantined.
    result, screened = screen_read(result, ctx.identifiers, source_columns)
    validated = validate(result, source_columns)
    validated.queries = _as_received(validated, delivery.path, ctx.identifiers, file_layout(centre.declaration))
    screen_validated(validated, screened)
    validated.assert_balanced()
    validated.answers = _answers(delivery.path, ctx.identifiers)
    return CentreImport(centre.name, delivery, validated)


def _as_received(validated, folder: Path, identifiers, layout: FileLayout | None) -> pl.DataFrame:
    """The queries with validation's values (canonical: 20,0 cm, 31/07/2007) replaced by the cells'
    text as in the centre's file (200, 2007-07-31), read as its format declares (``layout``). Never
    an identifier column's cell (those stay as validation shows them), and the result is screened
    with validation's other queries."""
    from clms_etl.readers.raw_cells import raw_cells

    queries = validated.queries.with_row_index("_i")
    cell = ["file", "sheet", "row", "field"]
    checked = queries.slice(validated.from_reader).filter(
        pl.col("row").is_not_null(), pl.col("field").is_not_null(), ~pl.col("field").is_in(list(identifiers.columns)),
        pl.col("value") != IDENTIFIER_MASK)
    if checked.is_empty():
        return validated.queries
    raw = raw_cells(folder, checked.select(cell), layout)
    replaced = checked.join(raw, on=cell, how="inner", nulls_equal=True).select("_i", "raw")
    return (queries.join(replaced, on="_i", how="left", maintain_order="left")
            .with_columns(value=pl.coalesce(clipped(pl.col("raw")), "value")).drop("_i", "raw"))


def _answers(folder: Path, identifiers) -> pl.DataFrame:
    """The centre's answers of a query workbook returned in the delivery, screened like every
    text that leaves the reader (a data manager may well type a name in an answer)."""
    from clms_etl.query_list import read_answers

    answers = read_answers(folder)
    return answers.with_columns(pl.Series("answer", [screen_text(a, identifiers) for a in answers["answer"]],
                                          dtype=pl.String))


def query_list_path(outputs: Path, centre: str, delivery_date: dt.date) -> Path:
    return outputs / "queries" / f"requetes_{centre}_{delivery_date.isoformat()}.xlsx"


def write_query_list(outputs: Path, imported: CentreImport, status: pl.DataFrame | None = None) -> Path:
    """The Excel list a centre's data manager works through (errors first). ``status``: the
    centre's rows of the warehouse's ``data_query_status`` once this delivery is loaded, for each
    line's status and the problems this delivery resolved (the list is written again then)."""
    from clms_etl.query_list import write_query_workbook

    path = query_list_path(outputs, imported.centre, imported.delivery.date)
    private_dir(path.parent)
    written = write_query_workbook(imported.queries, path, imported.centre, status)
    make_private(written)
    return written


def write_loaded_query_list(outputs: Path, imported: CentreImport, status: pl.DataFrame) -> Path:
    """The query list once ``imported`` is loaded (``status``: the centre's ``data_query_status``
    rows then). Written again only when the statuses change it (an answer, a problem this delivery
    resolved): otherwise the list :func:`write_query_list` wrote before the load is that very file,
    and writing it again (a second Excel workbook per import run) would change no byte."""
    from clms_etl.query_list import status_changes_workbook

    path = query_list_path(outputs, imported.centre, imported.delivery.date)
    if path.exists() and not status_changes_workbook(imported.queries, imported.centre, status):
        return path
    return write_query_list(outputs, imported, status)
