"""Building the report from the warehouse: the analyses' sections, then data quality and provenance.

:func:`build_report` writes ``<outdir>/clms_report.html`` (:mod:`clms_etl.report.html`) and
``<outdir>/clms_tables.xlsx`` (:mod:`clms_etl.report.workbook`) for any list of analysis
sections; the summary, the per-centre data quality and the provenance are computed here from
the warehouse, so the report is complete (if short) before any analysis exists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from clms_etl.report.html import DEFAULT_TITLE, render_html
from clms_etl.report.quality import Provenance, provenance, provenance_section, quality_section
from clms_etl.report.sections import Section
from clms_etl.report.workbook import write_workbook

HTML_NAME = "clms_report.html"
WORKBOOK_NAME = "clms_tables.xlsx"


@dataclass(frozen=True)
class ReportOutputs:
    html: Path
    workbook: Path
    summary: str
    sections: tuple[Section, ...]  # as laid out: the analyses', then data quality and provenance
    provenance: Provenance


def cohort_summary(wh) -> str:
    """A few plain sentences on the cohort in the warehouse (counts only)."""

    s = wh.read_sql(
        "SELECT centre, COUNT(*) AS patients, "
        "SUM(CASE WHEN in_survival_population THEN 1 ELSE 0 END) AS followed, "
        "SUM(CASE WHEN local_recurrence THEN 1 ELSE 0 END) AS local_recurrences, "
        "SUM(CASE WHEN metastasis THEN 1 ELSE 0 END) AS metastases, "
        "SUM(CASE WHEN death THEN 1 ELSE 0 END) AS deaths "
        "FROM analytics.patient_summary GROUP BY centre ORDER BY centre")
    if s.is_empty():
        return "The warehouse holds no patient yet: no delivery has been loaded."
    total = {c: int(s[c].sum()) for c in ("patients", "followed", "local_recurrences", "metastases", "deaths")}
    per_centre = ", ".join(f"{c} {n}" for c, n in s.select("centre", "patients").iter_rows())
    return (
        f"{total['patients']} patients from {s.height} centres ({per_centre}). "
        f"{total['followed']} make up the survival population ({_population_rule(wh)}).\n\n"
        f"During follow-up: {total['local_recurrences']} patients with a local recurrence, "
        f"{total['metastases']} with metastases, {total['deaths']} deaths.\n\n"
        "All numbers are recomputed from the centres' current deliveries after every nightly refresh; "
        "patients appear under pseudonyms only."
    )


def _population_rule(wh) -> str:
    """The survival population rule the views follow (the one the survival analysis last ran with)."""
    from clms_etl.warehouse.analytics import DEFAULT_POPULATION, MIN_FOLLOW_UP_MONTHS, POPULATIONS

    rule = wh.read_sql("SELECT description FROM analytics.survival_population_rule")
    if rule.height:
        return rule["description"][0]
    return POPULATIONS[DEFAULT_POPULATION].describe(MIN_FOLLOW_UP_MONTHS) + "; default, no analysis stored yet"


def build_report(wh, sections: Sequence[Section], outdir: Path, *, run_id: str | None = None,
                 title: str = DEFAULT_TITLE, generated_at: dt.datetime | None = None) -> ReportOutputs:
    """Write the HTML report and the Excel workbook of ``sections`` plus the warehouse's own sections."""
    generated_at = generated_at or dt.datetime.now(dt.UTC)
    prov = provenance(wh, run_id=run_id, generated_at=generated_at)
    laid_out = (*sections, quality_section(wh), provenance_section(prov))
    summary = cohort_summary(wh)
    if notice := prov.stale_results_notice():
        summary = f"{notice}\n\n{summary}"
    outdir.mkdir(parents=True, exist_ok=True)
    html_path = outdir / HTML_NAME
    html = render_html(laid_out, title=title, summary=summary, generated_at=generated_at, run_id=prov.run_id,
                       code_version=prov.code_version, backend=prov.backend)
    _write_atomically(html_path, html.encode("utf-8"))
    workbook_tmp = outdir / f".{WORKBOOK_NAME}.tmp"
    write_workbook(laid_out, workbook_tmp, title=title, generated_at=generated_at)
    workbook_tmp.replace(outdir / WORKBOOK_NAME)
    return ReportOutputs(html_path, outdir / WORKBOOK_NAME, summary, laid_out, prov)


def _write_atomically(path: Path, data: bytes) -> None:
    # a reader (the browser, a mail client) never sees half a report
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def markdown_preview(outputs: ReportOutputs, max_rows: int = 12) -> str:
    """The summary and the section list, with the data-quality table, as Markdown (asset metadata)."""
    lines = [outputs.summary, "", "**Sections**", ""]
    for section in outputs.sections:
        parts = [f"{len(section.tables)} tables"] + ([f"{len(section.figures)} figures"] if section.figures else [])
        lines.append(f"- {section.title} ({', '.join(parts)})")
    quality = next((s for s in outputs.sections if s.key == "data_quality"), None)
    if quality is not None and quality.tables:
        lines += ["", f"**{quality.tables[0].caption}**", "", _markdown_table(quality.tables[0].frame, max_rows)]
    return "\n".join(lines)


def _markdown_table(frame: pl.DataFrame, limit: int) -> str:
    from clms_etl.report.html import display_value

    head = frame.head(limit)
    out = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * head.width]
    for row in head.iter_rows():
        out.append("| " + " | ".join(display_value(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(out)
