"""The clinicians' report: one self-contained HTML file laying out any list of sections.

Self-contained: CSS inline, figures embedded as base64 PNG (their SVG, when given, as a
download link holding a data URI), no script, no font or image fetched from anywhere, so the
file can be e-mailed, archived or opened offline. Printable on A4 (Chromium's "print to PDF"
is the reference): one section per page, a long table continues on the next page with its header
row repeated (a row is never split), a table too wide for a portrait page (more than
:data:`LANDSCAPE_ABOVE_COLUMNS` columns) goes on landscape pages, a figure is never split.

Everything that comes from data — captions, notes, cell values, centre names — goes through
jinja2's autoescaping; no markup is ever taken from a section. Cells are shown as given
(analyses hand display-ready frames, see :class:`~clms_etl.report.sections.ReportTable`);
values that are not strings are formatted by :func:`display_value`.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import jinja2
import polars as pl

from clms_etl.report.sections import ReportFigure, ReportTable, Section

DEFAULT_TITLE = "Primary cutaneous leiomyosarcoma registry — results report"
LANDSCAPE_ABOVE_COLUMNS = 10  # Table 3 and the like: printed on landscape pages
# ... and so is a table whose text is wider than a portrait page holds: its widest cell (or the
# longest word of its header, which wraps) per column, in characters of the report's table font
LANDSCAPE_ABOVE_CHARACTERS = 200
_NUMERIC = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64, pl.Float32, pl.Float64)


def display_value(value) -> str:
    """A cell as text: empty for null, floats to 3 decimals (3 significant digits below 1), dates ISO,
    booleans yes/no."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.0f}"
        if abs(value) < 1:  # p-values and proportions keep three significant digits
            return f"{value:.3g}"
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def anchor(*parts: str) -> str:
    """An HTML id from keys: lower-case letters, digits and dashes only."""
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") or "x" for p in parts)


def png_size(png: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk (None when the bytes are not a PNG)."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", png[16:24])


@dataclass(frozen=True)
class _Column:
    name: str
    numeric: bool
    date: bool


def _table_context(section: Section, table: ReportTable) -> dict:
    frame = table.frame
    rows = [[display_value(v) for v in row] for row in frame.iter_rows()]
    return {
        "key": table.key,
        "anchor": anchor(section.key, table.key),
        "caption": table.caption,
        "note": table.note,
        "columns": [_Column(name, dtype in _NUMERIC, dtype == pl.Date or isinstance(dtype, pl.Datetime))
                    for name, dtype in frame.schema.items()],
        "rows": rows,
        "levels": list(table.row_levels) or [None] * frame.height,  # None: no row headings
        "landscape": (frame.width > LANDSCAPE_ABOVE_COLUMNS
                      or _width_characters(frame.columns, rows) > LANDSCAPE_ABOVE_CHARACTERS),
    }


def _width_characters(header: list[str], rows: list[list[str]]) -> int:
    """The narrowest the table can be laid out, in characters: per column the longer of its widest cell
    (as displayed) and the longest word of its header."""
    return sum(max([*(len(row[j]) for row in rows), *(len(word) for word in str(name).split()), 0])
               for j, name in enumerate(header))


def _figure_context(section: Section, figure: ReportFigure) -> dict:
    png = figure.png.read_bytes()
    size = png_size(png)
    if size is None:
        raise ValueError(f"figure {figure.key}: {figure.png} is not a PNG file")
    svg = figure.svg.read_bytes() if figure.svg is not None and figure.svg.exists() else None
    return {
        "key": figure.key,
        "anchor": anchor(section.key, figure.key),
        "caption": figure.caption,
        "note": figure.note,
        "png_base64": base64.b64encode(png).decode("ascii"),
        "svg_base64": base64.b64encode(svg).decode("ascii") if svg else None,
        "width": size[0],
        "height": size[1],
    }


def _section_context(section: Section) -> dict:
    return {
        "key": section.key,
        "anchor": anchor(section.key),
        "title": section.title,
        "paragraphs": paragraphs(section.text),
        "tables": [_table_context(section, t) for t in section.tables],
        "figures": [_figure_context(section, f) for f in section.figures],
    }


def paragraphs(text: str) -> list[str]:
    """Plain-text paragraphs (separated by blank lines), inner line breaks folded."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text or "") if p.strip()]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals["zip"] = zip
    return env


def render_html(sections: Sequence[Section], *, title: str = DEFAULT_TITLE, summary: str = "",
                generated_at: dt.datetime | None = None, run_id: str = "manual", code_version: str = "",
                backend: str = "") -> str:
    """The report as one HTML document: header, summary, contents, then ``sections`` in order."""
    keys = [s.key for s in sections]
    if len(set(keys)) != len(keys):
        raise ValueError(f"section keys must be unique: {keys}")
    generated = (generated_at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    template = _environment().from_string(
        resources.files("clms_etl.report").joinpath("report.html.j2").read_text(encoding="utf-8"))
    return template.render(
        title=title, generated=generated, run_id=run_id, code_version=code_version or "unknown",
        backend=backend or "unknown", summary=paragraphs(summary),
        sections=[_section_context(s) for s in sections],
    )
