"""Turning frames and figures into metadata a user reads in the UI without a notebook."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping, Sequence

import dagster as dg
import polars as pl

from clms_etl import contract


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


def markdown_table(frame: pl.DataFrame, limit: int = 15) -> dg.MetadataValue:
    """A Markdown preview of the first rows (frames here never hold identifiers)."""
    head = frame.head(limit)
    if head.is_empty():
        return dg.MetadataValue.md("_(no row)_")
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row) + " |")
    if frame.height > limit:
        lines.append(f"\n_{frame.height - limit} more rows_")
    return dg.MetadataValue.md("\n".join(lines))


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """Dagster 1.13 has no image metadata type: a base64 PNG inside Markdown shows the plot."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def bar_chart_png(categories: Sequence[str], series: Mapping[str, Sequence[int]], title: str,
                  xlabel: str = "rows") -> bytes:
    """A small stacked horizontal bar chart as PNG bytes (one bar per category, one colour per series).

    Drawn on a bare ``Figure`` with the Agg canvas: no pyplot global state, safe in any thread
    or run worker, no display needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 0.45 * max(len(categories), 1) + 1.2), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    left = [0] * len(categories)
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for i, (label, values) in enumerate(series.items()):
        ax.barh(list(categories), list(values), left=left, label=label, color=colours[i % len(colours)])
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.invert_yaxis()  # first category on top, as in the tables next to it
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def expectations_check_result(report) -> dg.AssetCheckResult:
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
        "failed_expectations": markdown_table(failures, 30),
        "summary": dg.MetadataValue.md(f"```\n{report.summary()}\n```"),
    }
    if report.data_docs_index:
        metadata["data_docs"] = dg.MetadataValue.path(str(report.data_docs_index))
    return dg.AssetCheckResult(passed=bool(report.success), metadata=metadata, severity=dg.AssetCheckSeverity.ERROR)
