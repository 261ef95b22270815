"""Turning frames and figures into metadata a user reads in the UI without a notebook."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping, Sequence

import dagster as dg
import polars as pl

from clms_etl import contract

_TYPES = {pl.String: "string", pl.Date: "date", pl.Boolean: "boolean", pl.Float64: "float", pl.Int64: "int",
          pl.Int32: "int", pl.UInt32: "int"}


def column_schema(frame: pl.DataFrame) -> dg.TableSchema:
    """The columns of a frame shown as metadata (its name and type)."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, _TYPES.get(dtype, str(dtype).lower())) for name, dtype in frame.schema.items()]
    )


def canonical_column_schema(tables: Iterable[str] = tuple(contract.TABLES), *, warehouse: bool = False) -> dg.TableSchema:
    """The contract's columns of the canonical ``tables`` as the Columns panel shows them.

    An asset here holds several tables, so a column is named ``<table>.<column>``; its type is the
    polars dtype's name (``warehouse``: the SQL type), its description the contract's (comment, unit, range, allowed values), its
    French label and unit are tags. ``warehouse``: the tables as stored, with their NOT NULL and
    each table's ``delivery_id``; otherwise the canonical frames, where any value may be null.
    """
    from clms_etl.warehouse import schema

    columns = []
    for name in tables:
        spec = contract.TABLES[name]
        sql = schema.table(name).columns
        stored = [*spec.columns, contract.DELIVERY_COLUMN] if warehouse else list(spec.columns)
        for column in stored:
            nullable = column.nullable and column.name not in spec.key if warehouse else True
            tags = {k: v for k, v in (("label_fr", column.label), ("unit", column.unit)) if v}
            columns.append(dg.TableColumn(
                f"{name}.{column.name}",
                str(sql[column.name].type).lower() if warehouse else column.dtype.__name__.lower(),
                description=column.description(),
                constraints=dg.TableColumnConstraints(nullable=nullable), tags=tags,
            ))
    return dg.TableSchema(columns=columns)


def table_metadata(frame: pl.DataFrame, limit: int = 15) -> dg.TableMetadataValue:
    """The first ``limit`` rows as a typed table (the UI shows it as a sortable table with its column
    types; frames here never hold identifiers). Values that are not text, numbers or booleans
    (dates) are given as their ISO text."""
    head = frame.head(limit)
    records = [dg.TableRecord({name: value if value is None or isinstance(value, (str, int, float, bool)) else
                               str(value) for name, value in row.items()}) for row in head.iter_rows(named=True)]
    return dg.MetadataValue.table(records=records, schema=column_schema(head))


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """Dagster 1.13 has no image metadata type: a base64 PNG inside Markdown shows the plot."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def bar_chart_png(categories: Sequence[str], series: Mapping[str, Sequence[int]], title: str,
                  xlabel: str = "rows") -> bytes:
    """A small stacked horizontal bar chart as PNG bytes (:func:`bar_chart`)."""
    buffer = io.BytesIO()
    bar_chart(categories, series, title, xlabel).savefig(buffer, format="png")
    return buffer.getvalue()


def bar_chart(categories: Sequence[str], series: Mapping[str, Sequence[int]], title: str, xlabel: str = "rows"):
    """A stacked horizontal bar chart (one bar per category, one colour per series), its legend
    above the bars, never over them.

    Drawn on a bare ``Figure`` with the Agg canvas: no pyplot global state, safe in any thread
    or run worker, no display needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 0.45 * max(len(categories), 1) + 1.6), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    left = [0] * len(categories)
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for i, (label, values) in enumerate(series.items()):
        ax.barh(list(categories), list(values), left=left, label=label, color=colours[i % len(colours)])
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.invert_yaxis()  # first category on top, as in the tables next to it
    ax.set_xlabel(xlabel)
    fig.suptitle(title, fontsize=10)
    # outside the axes: inside, it covers the end of the longest bars
    fig.legend(loc="outside upper center", ncols=max(len(series), 1), fontsize=8, frameon=False)
    return fig


def dagster_run_name(context) -> str:
    """The Data Docs run name of a check's validation: its job and the run's id (as the UI shortens it)."""
    from clms_etl.warehouse.expectations import run_name_of

    return run_name_of(context.run.job_name, context.run.run_id[:8])


def expectations_check_result(report, extra_metadata: dict | None = None) -> dg.AssetCheckResult:
    """A Great Expectations run (:class:`~clms_etl.warehouse.expectations.ExpectationsReport`) as the
    result of a blocking check: passed unless a critical expectation failed; counts, the failed
    expectations, the summary and the Data Docs page in the metadata."""
    failures = pl.DataFrame(
        [{"table": f.table, "expectation": f.expectation, "column": f.column, "severity": f.severity,
          "observed": str(f.observed)[:80], "error": (f.error or "")[:120]} for f in report.failures],
        schema={"table": pl.String, "expectation": pl.String, "column": pl.String, "severity": pl.String,
                "observed": pl.String, "error": pl.String},
    )
    metadata = {
        "expectations": len(report.outcomes),
        "failures": failures.height,
        "failed_expectations": table_metadata(failures, 30),
        "summary": dg.MetadataValue.md(f"```\n{report.summary()}\n```"),
        "data_docs_run_name": report.run_name or "",
    }
    if report.data_docs_index:
        metadata["data_docs"] = dg.MetadataValue.path(str(report.data_docs_index))
    metadata.update(extra_metadata or {})
    return dg.AssetCheckResult(passed=bool(report.success), metadata=metadata, severity=dg.AssetCheckSeverity.ERROR)
