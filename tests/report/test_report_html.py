"""The HTML report: every section's tables and figures, the warehouse's quality numbers, provenance,
escaping, self-containment, no identifier."""

from __future__ import annotations

import base64
import importlib.metadata
import datetime as dt
import re

import polars as pl
import pytest

from clms_etl.report.html import display_value, render_html
from clms_etl.report.quality import SHA_PREFIX, code_version, describe_backend
from clms_etl.report.sections import ReportFigure, ReportTable, Section
from tests.report.helpers import identifiers, parse_report, scan_values


def test_the_report_lays_out_every_section_table_and_figure_in_order(built_report, analysis_sections):
    html = built_report.html.read_text(encoding="utf-8")
    parsed = parse_report(html)
    expected_sections = [s.key for s in analysis_sections] + ["data_quality", "provenance"]
    assert [key for key, _ in parsed.sections] == expected_sections
    assert [title for _, title in parsed.sections][:2] == [s.title for s in analysis_sections]
    expected_tables = [(s.key, t) for s in built_report.sections for t in s.tables]
    assert [(t.section, t.key) for t in parsed.tables] == [(s, t.key) for s, t in expected_tables]
    for parsed_table, (_, table) in zip(parsed.tables, expected_tables, strict=True):
        assert parsed_table.caption == table.caption
        assert parsed_table.header == table.frame.columns
        assert parsed_table.rows == [[display_value(v) for v in row] for row in table.frame.iter_rows()]
        assert parsed_table.note == table.note
    expected_figures = [(s.key, f) for s in analysis_sections for f in s.figures]
    assert [(f.section, f.key) for f in parsed.figures] == [(s, f.key) for s, f in expected_figures]
    for parsed_figure, (_, figure) in zip(parsed.figures, expected_figures, strict=True):
        assert parsed_figure.caption == figure.caption and parsed_figure.note == figure.note
        prefix = "data:image/png;base64,"
        assert parsed_figure.src.startswith(prefix)
        assert base64.b64decode(parsed_figure.src[len(prefix):]) == figure.png.read_bytes()
        if figure.svg is not None:
            assert base64.b64decode(parsed_figure.svg_href.split(",", 1)[1]) == figure.svg.read_bytes()


def test_the_patients_per_centre_table_shows_the_view_counts(built_report, report_warehouse):
    table = next(t for t in parse_report(built_report.html.read_text()).tables if t.key == "cohort_centres")
    counts = dict(report_warehouse.read_sql("SELECT centre, COUNT(*) AS n FROM patient GROUP BY centre").iter_rows())
    assert {row[0]: int(row[1]) for row in table.rows} == counts
    assert sum(counts.values()) == 79


def test_the_quality_section_numbers_equal_the_warehouse(built_report, report_warehouse):
    """Recomputed here from the base tables (delivery_count, data_query, patient), not from the views."""
    wh = report_warehouse
    rows = wh.read_sql(
        "SELECT d.centre, SUM(c.rows_read) AS rows_read, SUM(c.rows_accepted) AS rows_accepted, "
        "SUM(c.rows_quarantined) AS rows_quarantined FROM delivery d JOIN delivery_count c USING (delivery_id) "
        "WHERE d.is_current GROUP BY d.centre")
    queries = wh.read_sql("SELECT centre, severity, COUNT(*) AS n FROM data_query GROUP BY centre, severity")
    patients = dict(wh.read_sql("SELECT centre, COUNT(*) AS n FROM patient GROUP BY centre").iter_rows())
    assert queries.filter(pl.col("severity") == "error")["n"].sum() > 0  # the planted defects were queried
    assert rows["rows_quarantined"].sum() > 0
    table = next(t for t in parse_report(built_report.html.read_text()).tables if t.key == "quality_centres")
    shown = {r[0]: dict(zip(table.header, r, strict=True)) for r in table.rows}
    assert set(shown) == set(rows["centre"]) == {"nice", "montpellier", "lyon", "nimes", "molecular"}
    for centre, read, accepted, quarantined in rows.iter_rows():
        cells = shown[centre]
        assert (int(cells["Rows read"]), int(cells["Rows accepted"]), int(cells["Rows quarantined"])) == (
            read, accepted, quarantined)
        assert float(cells["Quarantined (%)"]) == pytest.approx(100 * quarantined / read, abs=0.05)
        n = {s: n for c, s, n in queries.iter_rows() if c == centre}
        assert int(cells["Queries: errors"]) == n.get("error", 0)
        assert int(cells["Queries: warnings"]) == n.get("warning", 0)
        assert int(cells["Queries: total"]) == sum(n.values())
        assert cells["Patients"] == (str(patients[centre]) if centre in patients else "")
    assert shown["nimes"]["Name"] == "CHU de Nîmes, dermatologie"  # the centres' own (French) names


def test_the_top_rules_are_the_most_frequent_rules_of_the_warehouse(built_report, report_warehouse):
    counts = report_warehouse.read_sql("SELECT rule, severity, COUNT(*) AS n FROM data_query GROUP BY rule, severity")
    table = next(t for t in parse_report(built_report.html.read_text()).tables if t.key == "quality_rules")
    shown = [(r[0], r[1], int(r[2])) for r in table.rows]
    expected = {(r, s): n for r, s, n in counts.iter_rows()}
    assert shown and all(expected[(r, s)] == n for r, s, n in shown)
    assert [n for _, _, n in shown] == sorted((n for _, _, n in shown), reverse=True)
    assert min(n for _, _, n in shown) >= sorted(expected.values(), reverse=True)[len(shown) - 1]


def test_provenance_names_deliveries_run_and_code_version(built_report, report_warehouse):
    parsed = parse_report(built_report.html.read_text())
    deliveries = report_warehouse.read_sql("SELECT centre, delivery_date, content_sha256 FROM delivery WHERE is_current")
    table = next(t for t in parsed.tables if t.key == "provenance_deliveries")
    shown = {r[0]: dict(zip(table.header, r, strict=True)) for r in table.rows}
    for centre, date, sha in deliveries.iter_rows():
        assert shown[centre]["Delivery date"] == date.isoformat()
        assert shown[centre]["SHA-256 (prefix)"] == sha[:SHA_PREFIX]
    facts = dict(r for r in next(t for t in parsed.tables if t.key == "provenance_run").rows)
    assert facts["Pipeline run"] == "run-1234abcd"
    assert facts["Code version"].split(" ")[0] == importlib.metadata.version("clms-etl")
    assert facts["Warehouse"] == "duckdb (warehouse.duckdb)"


def test_provenance_shows_the_audit_trail_of_the_warehouse_without_users(built_report, report_warehouse):
    from clms_etl.keys import key_id
    from clms_etl.warehouse.load import os_user

    parsed = parse_report(built_report.html.read_text())
    table = next(t for t in parsed.tables if t.key == "provenance_audit")
    rows = [dict(zip(table.header, r, strict=True)) for r in table.rows]
    sources = report_warehouse.read_sql("SELECT COUNT(*) AS n FROM delivery")["n"][0]
    assert [r["Action"] for r in rows].count("load") == sources
    assert {r["Key"] for r in rows} == {key_id(report_warehouse.key_fingerprint())}
    assert {r["Run"] for r in rows} == {"report-test-load"}
    assert all(r["Code version"] and r["When"].endswith("UTC") for r in rows)
    assert "os_user" not in table.header and f">{os_user()}<" not in built_report.html.read_text()


def test_the_warehouse_is_described_without_user_or_password():
    text = describe_backend("postgresql+psycopg://clms_loader:s3cr3t-Pa55@db.example.org:5432/clms")
    assert text == "postgresql (db.example.org:5432/clms)"
    assert "s3cr3t" not in text and "clms_loader" not in text


def test_the_code_version_is_the_package_version_when_git_is_unavailable(monkeypatch):
    monkeypatch.delenv("CLMS_GIT_COMMIT", raising=False)
    monkeypatch.setenv("PATH", "")  # no git executable
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", code_version())
    monkeypatch.setenv("CLMS_GIT_COMMIT", "abc123def456")
    assert code_version().endswith("(git abc123def456)")


def test_the_summary_counts_the_cohort(built_report, report_warehouse):
    s = report_warehouse.read_sql("SELECT * FROM analytics.patient_summary")
    assert f"{s.height} patients from 4 centres" in built_report.summary
    assert f"{int(s['in_survival_population'].sum())} make up the survival population (censored_before_minimum: " \
        "patients censored (alive at last contact) before 3 months are left out" in built_report.summary
    assert f"{int(s['death'].sum())} deaths" in built_report.summary


def test_everything_from_data_is_escaped(tmp_path):
    png = tmp_path / "p.png"
    png.write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="))
    evil = "<script>alert('x')</script>"
    section = Section(
        "evil", f"Title {evil}", f"Intro {evil}",
        tables=(ReportTable("t", f"Caption {evil}", pl.DataFrame({f"col {evil}": [f"cell {evil}", "a & b"]}),
                            note=f"Note {evil}"),),
        figures=(ReportFigure("f", f'Figure " onerror="alert(1) {evil}', png, note=evil),),
    )
    html = render_html([section], title=f"Report {evil}", summary=f"Summary {evil}", run_id=evil)
    assert "<script" not in html.lower()
    assert 'onerror="alert' not in html
    assert html.count("&lt;script&gt;") >= 9
    assert "a &amp; b" in html
    parsed = parse_report(html)
    assert parsed.tables[0].rows[0] == [f"cell {evil}"]  # escaped, so read back as the original text


def test_the_report_is_self_contained(built_report):
    html = built_report.html.read_text(encoding="utf-8")
    parsed = parse_report(html)
    assert not any(tag in ("script", "link", "iframe", "object", "embed") for tag, _ in parsed.tags)
    for _, attrs in parsed.tags:
        for name in ("src", "href"):
            if name in attrs:
                assert attrs[name].startswith(("data:", "#")), attrs[name][:60]
    assert not re.search(r"url\(\s*['\"]?(?!data:)", html)  # no CSS fetch either
    assert "@page" in html and "size: A4" in html


def test_no_identifier_of_the_deliveries_in_the_report_or_the_workbook(built_report):
    from openpyxl import load_workbook

    ids = identifiers()
    html = built_report.html.read_text(encoding="utf-8")
    text_parts = [t for t in re.split(r"<[^>]+>", html) if t.strip()]
    assert scan_values(text_parts, ids) == {}
    for kind in ("local_id", "birth_date"):
        assert not {i for i in ids[kind] if i in html}, kind
    book = load_workbook(built_report.workbook, read_only=True)
    cells = [str(v) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for v in row
             if v is not None]
    assert len(cells) > 100
    assert scan_values(cells, ids) == {}


def test_the_scan_finds_an_identifier_planted_in_a_section(built_report, report_warehouse, tmp_path):
    """Positive control of the identifier test above."""
    from clms_etl.report.build import build_report

    victim = sorted(n for n in identifiers()["name"] if len(n) >= 6)[0]
    leaky = Section("leak", "Leak", tables=(ReportTable("leak", "Leak", pl.DataFrame({"who": [f"M. {victim}"]})),))
    out = build_report(report_warehouse, [leaky], tmp_path, run_id="leak")
    text_parts = [t for t in re.split(r"<[^>]+>", out.html.read_text()) if t.strip()]
    assert victim in scan_values(text_parts, identifiers())["name"]


def test_section_keys_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        render_html([Section("a", "A"), Section("a", "B")])


def test_display_values_are_readable():
    assert [display_value(v) for v in (None, True, 3, 2.0, 0.000123, 12.34567, dt.date(2020, 1, 2), "é")] == [
        "", "yes", "3", "2", "0.000123", "12.346", "2020-01-02", "é"]


def test_a_report_on_deliveries_no_analysis_has_run_on_opens_with_a_stale_results_notice(built_report):
    # loaded deliveries, no analysis run since: the report must not pass the empty sections off as results
    notice = built_report.summary.split("\n\n")[0]
    assert notice.startswith("Notice: stale results.")
    assert "survival_estimate" in notice and "molecular_profile" in notice and "(never computed)" in notice
