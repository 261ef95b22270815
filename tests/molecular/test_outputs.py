"""Table 3, the OncoPrint, the report section, the result tables, the assets and the CLI on the twin."""

from __future__ import annotations

import dagster as dg
import polars as pl
from typer.testing import CliRunner

from assets.molecular import cbioportal_study, molecular_summary
from assets.resources import OutputsFolder, WarehouseResource
from clms_etl.cli import app
from clms_etl.molecular.oncoprint import write_oncoprint
from clms_etl.molecular.report_sections import report_sections
from clms_etl.molecular.table3 import table3, table3_display
from clms_etl.warehouse.load import Warehouse
from clms_etl.warehouse.schema import RESULT_TABLES


def test_table3_has_one_row_per_case_with_its_clinical_features_and_outcome(twin_read):
    summary, patients = twin_read
    t = table3(summary, patients)
    assert t["case_no"].to_list() == sorted(summary.cases["case_no"].to_list())
    linked = t.filter(pl.col("centre").is_not_null())
    assert linked.height == t.height  # every case of the twin is a registry patient
    row = t.filter(pl.col("case_no") == 2).row(0, named=True)
    p = patients.filter(pl.col("patient_id") == row["patient_id"]).row(0, named=True)
    assert (row["site"], row["size_cm"], row["grade"], row["invasion"], row["final_resection_status"]) == (
        p["site"], p["size_cm"], p["grade_label"], p["invasion"], p["final_resection_status"])
    assert (row["local_recurrence"], row["metastasis"], row["vital_status"]) == (
        p["local_recurrence"], p["metastasis"], p["vital_status"])
    assert (row["profile_class"], row["rb1"], row["myocd"]) == ("complex", "homozygous deletion", "amplification (CN 8)")
    assert t.filter(pl.col("case_no") == 1)["mutations"][0] == "TP53 c.736A>G p.Met246Val (VAF 0.38)"
    assert set(t.filter(pl.col("profile_class") != "not_contributory")["fusions"]) == {"none"}
    assert set(t.filter(pl.col("profile_class") == "not_contributory")["fusions"]) == {"failed"}
    shown = table3_display(t)
    assert shown.height == t.height and "sample_id" not in " ".join(shown.columns).lower()


def test_oncoprint_is_written_as_png_and_deterministic_svg(twin_read, tmp_path):
    summary, patients = twin_read
    t = table3(summary, patients)
    png, svg = write_oncoprint(summary, t, tmp_path / "a.png", tmp_path / "a.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and svg.read_text().lstrip().startswith("<?xml")
    _, svg2 = write_oncoprint(summary, t, tmp_path / "b.png", tmp_path / "b.svg")
    assert svg.read_bytes() == svg2.read_bytes()
    assert "<dc:date>" not in svg.read_text()
    for pid in summary.cases["patient_id"].drop_nulls():
        assert pid not in svg.read_text()


def test_report_section_holds_table3_the_recurrent_alterations_and_the_figure(twin_read, tmp_path):
    summary, patients = twin_read
    t = table3(summary, patients)
    png, svg = write_oncoprint(summary, t, tmp_path / "f.png", tmp_path / "f.svg")
    [section] = report_sections(summary, t, png, svg)
    assert section.key == "molecular" and "4 complex" in section.text and "14 cases" in section.text
    assert [tab.key for tab in section.tables] == ["table3", "recurrent_alterations"]
    assert section.tables[0].frame.height == 14 and all(len(tab.key) <= 31 for tab in section.tables)
    rec = section.tables[1].frame
    assert rec.filter((pl.col("Gene") == "RB1") & (pl.col("Alteration") == "deletion (homo- or heterozygous)")
                      )["Cases"].to_list() == ["5 / 11"]
    assert section.figures[0].png == png and section.figures[0].svg == svg


def test_assets_materialise_result_tables_table3_figure_and_the_study_folder(twin_warehouse_url, tmp_path):
    resources = {"warehouse": WarehouseResource(url=twin_warehouse_url), "outputs": OutputsFolder(path=str(tmp_path))}
    result = dg.materialize([molecular_summary, cbioportal_study], resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = result.asset_materializations_for_node("molecular_summary")[0].metadata
    assert meta["cases"].value == 14 and meta["biallelic_tp53_or_rb1"].value == 4
    assert meta["oncoprint"].value.startswith("![") and "data:image/png;base64," in meta["oncoprint"].value
    assert (tmp_path / "tables" / "table3_molecular_cases.csv").is_file()
    assert (tmp_path / "figures" / "figure_oncoprint.png").is_file()
    assert (tmp_path / "figures" / "figure_oncoprint.svg").is_file()
    assert (tmp_path / "cbioportal" / "meta_study.txt").is_file()
    with Warehouse(twin_warehouse_url) as wh:
        profile = wh.results("molecular_profile")
        assert profile.height == 14 and set(profile["run_id"]) == {result.run_id}
        assert wh.results("table3").height == 14
        assert wh.results("somatic_mutation").height == 2
        rec = wh.results("recurrent_alteration")
        assert rec.filter((pl.col("gene") == "MYOCD") & (pl.col("alteration") == "amplification"))["cases"][0] == 2
    assert {"molecular_profile", "recurrent_alteration", "somatic_mutation", "table3"} <= set(RESULT_TABLES)


def test_cli_exports_the_cbioportal_study(twin_warehouse_url, tmp_path):
    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["export", "cbioportal", str(out), "--url", twin_warehouse_url])
    assert result.exit_code == 0, result.output
    assert (out / "meta_study.txt").is_file() and (out / "case_lists" / "cases_all.txt").is_file()


def test_report_gets_the_molecular_section_from_the_warehouse(twin_warehouse_url, tmp_path):
    from clms_etl.molecular.run import molecular_sections

    with Warehouse(twin_warehouse_url) as wh:
        [section] = molecular_sections(wh, tmp_path)
    assert section.figures[0].png.is_file() and section.figures[0].png.parent == tmp_path / "figures"
    assert section.tables[0].frame.height == 14


def test_table3_and_the_cbioportal_study_read_only_the_series_columns_of_patient_summary(twin_warehouse_url, tmp_path):
    """The series' rows of analytics.patient_summary are read with the columns Table 3 and the study use
    (``SERIES_COLUMNS``): the same Table 3 and the same study files as from every column of the view."""
    from clms_etl.molecular.cbioportal import write_study
    from clms_etl.molecular.run import SERIES_COLUMNS, SERIES_PATIENTS, read_stored

    with Warehouse(twin_warehouse_url) as wh:
        summary, _ = read_stored(wh)
        narrow = wh.read_sql(SERIES_PATIENTS)
        full = wh.read_sql("SELECT * FROM analytics.patient_summary "
                           "WHERE patient_id IN (SELECT patient_id FROM molecular_sample)")
    assert narrow.columns == list(SERIES_COLUMNS) and len(SERIES_COLUMNS) < len(full.columns)
    assert table3(summary, narrow).equals(table3(summary, full))
    write_study(summary, narrow, tmp_path / "narrow")
    write_study(summary, full, tmp_path / "full")
    files = sorted(str(p.relative_to(tmp_path / "full")) for p in (tmp_path / "full").rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(tmp_path / "narrow")) for p in (tmp_path / "narrow").rglob("*")
                           if p.is_file())
    for name in files:
        assert (tmp_path / "narrow" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
