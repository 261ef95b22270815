"""The `survival_analysis` asset: materialises on the twin warehouse, writes its tables and files."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl

from assets.definitions import defs
from assets.resources import OutputsFolder, SurvivalSettings, WarehouseResource
from assets.report import clinician_report
from assets.survival import survival_analysis
from clms_etl.warehouse import Warehouse


def test_survival_analysis_is_in_the_nightly_refresh_downstream_of_the_warehouse():
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey("survival_analysis")
    assert dg.AssetKey("warehouse") in graph.get(key).parent_keys
    assert key in defs.resolve_job_def("nightly_refresh").asset_layer.selected_asset_keys
    assert defs.resolve_assets_def("survival_analysis").op.pool == "warehouse"
    assert defs.resolve_assets_def("survival_analysis").group_names_by_key[key] == "analysis"


def test_survival_analysis_materialises_on_the_twin_and_fills_its_result_tables(twin_warehouse_url, tmp_path):
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(twin_warehouse_url.removeprefix("duckdb:///"), db)
    url = f"duckdb:///{db}"
    result = dg.materialize([survival_analysis], instance=dg.DagsterInstance.ephemeral(), resources={
        "warehouse": WarehouseResource(url=url), "outputs": OutputsFolder(path=str(tmp_path / "outputs")),
        "survival": SurvivalSettings()})
    assert result.success
    meta = result.asset_materializations_for_node("survival_analysis")[0].metadata
    assert meta["dagster/row_count"].value == 68
    assert meta["figure2"].value.startswith("![Figure 2: Kaplan-Meier curves](data:image/png;base64,")
    assert [c.name for c in meta["table1"].schema.columns][:2] == ["Characteristic", "Value"]
    assert "Local recurrence or metastasis: HR (95 % CI)" in {c.name for c in meta["table2"].schema.columns}
    assert abs(meta["key_estimates"].value["OS_24m"] - 0.92) <= 0.03
    assert meta["ci_transform"].value == "log"
    for name in ("file_figure2_png", "file_figure2_svg", "file_table1", "file_table2"):
        assert Path(meta[name].path).is_file(), name
    assert Path(meta["file_figure2_png"].path).parent == tmp_path / "outputs" / "figures"
    assert Path(meta["file_table1"].path).parent == tmp_path / "outputs" / "tables"

    run_id = result.run_id
    with Warehouse(url) as wh:
        for name, rows in meta["result_table_rows"].value.items():
            table = wh.results(name)
            assert table.height == rows > 0, name
            assert table["run_id"].unique().to_list() == [run_id], name
        table1 = wh.results("table1")
        assert table1.filter((pl.col("variable") == "sex") & (pl.col("item") == "male"))["n"].item() == 57


def test_the_population_rule_is_a_setting_the_report_shares(twin_warehouse_url, tmp_path):
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(twin_warehouse_url.removeprefix("duckdb:///"), db)
    url = f"duckdb:///{db}"
    assert _view_population(url) == 68  # before any analysis: the default rule, 3 months
    # set for the run in the launchpad (resources: survival: config:), seen by the analysis and the report
    result = dg.materialize(
        [survival_analysis, clinician_report], instance=dg.DagsterInstance.ephemeral(),
        resources={"warehouse": WarehouseResource(url=url), "outputs": OutputsFolder(path=str(tmp_path / "out")),
                   "survival": SurvivalSettings.configure_at_launch()},
        run_config={"resources": {"survival": {"config": {"min_follow_up_months": 0.0, "population": "paper",
                                                          "ci_transform": "log-log"}}}})
    assert result.success
    # the analytics views follow the rule the analysis ran with: one definition, not two
    assert _view_population(url) == 76
    html = (tmp_path / "out" / "report" / "clms_report.html").read_text()
    assert "76 patients form the survival population (paper: the study&#39;s rule" in html
    assert "at least 0 months" in html
    assert "95 % confidence intervals (log-log transform" in html
    assert "95 % confidence intervals (log transform" not in html
    with Warehouse(url) as wh:
        # 0 months: only the patients without a follow-up date stay out
        assert set(wh.results("survival_exclusion")["reason"]) == {"no_follow_up_date"}
        est = wh.results("survival_estimate")
    assert est.filter((pl.col("endpoint") == "OS") & (pl.col("group_variable") == "all"))["n"].unique().to_list() == [76]


def _view_population(url: str) -> int:
    with Warehouse(url) as wh:
        return wh.read_sql("SELECT COUNT(*) AS n FROM analytics.patient_summary WHERE in_survival_population")["n"].item()
