"""Turning frames and figures into metadata a user reads in the UI without a notebook."""

from __future__ import annotations

import base64

import dagster as dg
import polars as pl

_TYPES = {pl.String: "string", pl.Date: "date", pl.Boolean: "boolean", pl.Float64: "float"}


def column_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, _TYPES.get(dtype, str(dtype).lower())) for name, dtype in frame.schema.items()]
    )


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
