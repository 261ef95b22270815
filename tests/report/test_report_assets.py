"""The report's Dagster assets: part of the nightly refresh, they write the report, the workbook and
the exports into the outputs folder and show them in the materialisation metadata."""

from __future__ import annotations

import os

import dagster as dg
from openpyxl import load_workbook

from assets import report
from assets.resources import OutputsFolder, SurvivalSettings, WarehouseResource


def test_the_report_assets_are_downstream_of_the_warehouse_and_in_the_nightly_refresh():
    from assets.automation import nightly_job
    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for asset in (report.clinician_report, report.analysis_exports):
        key = asset.key
        assert dg.AssetKey("warehouse") in graph.get(key).parent_keys
        assert graph.get(key).group_name == "report"
    nightly = defs.resolve_job_def(nightly_job.name)
    assert {report.clinician_report.key, report.analysis_exports.key} <= set(nightly.asset_layer.executable_asset_keys)


def test_materialising_writes_the_report_workbook_and_exports(report_warehouse, tmp_path):
    resources = {"warehouse": WarehouseResource(url=report_warehouse.url),
                 "outputs": OutputsFolder(path=str(tmp_path / "outputs")), "survival": SurvivalSettings()}
    niceness = os.nice(0)
    result = dg.materialize([report.clinician_report, report.analysis_exports], resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    # two steps in this process: the report does not lower the priority of the process it shares
    assert os.nice(0) == niceness
    assert result.asset_materializations_for_node("clinician_report")[0].metadata["cpu_priority"].value.startswith(
        "unchanged")
    html = tmp_path / "outputs" / "report" / "clms_report.html"
    workbook = tmp_path / "outputs" / "report" / "clms_tables.xlsx"
    assert html.is_file() and workbook.is_file()
    assert result.run_id in html.read_text()  # provenance names the run
    assert "quality_centres" in load_workbook(workbook, read_only=True).sheetnames
    meta = result.asset_materializations_for_node("clinician_report")[0].metadata
    assert meta["report_html"].value == str(html.resolve())
    assert meta["html_size_bytes"].value == html.stat().st_size
    assert "79 patients" in meta["preview"].value and "| Source |" in meta["preview"].value
    exports = result.asset_materializations_for_node("analysis_exports")[0].metadata
    assert (tmp_path / "outputs" / "exports" / "xpt" / "patient_summary.xpt").is_file()
    assert (tmp_path / "outputs" / "exports" / "README.md").is_file()
    assert {r.data["dataset"]: r.data["rows"] for r in exports["rows_per_dataset"].records}["patient_summary"] == 79
