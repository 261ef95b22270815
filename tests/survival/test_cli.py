"""`clms-etl survival`: the analysis by hand, on a copy of the twin warehouse."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from clms_etl.cli import app
from clms_etl.warehouse import Warehouse


def test_survival_command_writes_results_figures_and_tables(twin_warehouse_url, tmp_path):
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(twin_warehouse_url.removeprefix("duckdb:///"), db)
    url = f"duckdb:///{db}"
    result = CliRunner().invoke(app, ["survival", "--url", url, "--outputs", str(tmp_path / "out"),
                                      "--ci-transform", "log-log"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "figures" / "figure2_kaplan_meier.svg").is_file()
    assert (tmp_path / "out" / "tables" / "table2.csv").is_file()
    with Warehouse(url) as wh:
        assert wh.results("table1")["run_id"].unique().to_list() == ["cli"]


def test_survival_command_refuses_an_unknown_transform(tmp_path):
    result = CliRunner().invoke(app, ["survival", "--url", f"duckdb:///{tmp_path / 'w.duckdb'}",
                                      "--ci-transform", "plain"])
    assert result.exit_code != 0 and "ci-transform" in result.output


def test_survival_command_on_an_empty_warehouse_says_there_is_nothing_to_estimate(tmp_path):
    url = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    with Warehouse(url) as wh:
        wh.create()
    result = CliRunner().invoke(app, ["survival", "--url", url, "--outputs", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "no survival analysis" in result.output and "nothing to estimate yet" in result.output
    assert not (tmp_path / "out" / "figures").exists()
