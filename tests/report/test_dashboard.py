"""Issue #16, the data stewards' quality dashboard: per source and Kahn category, the checks with
the share of rows failing against a threshold, the trend over the last deliveries; one static page
with no script and nothing from the internet."""

from __future__ import annotations

import re

import polars as pl
import pytest

from clms_etl.report import dashboard as dashboard_module
from clms_etl.report.dashboard import CATEGORIES, build_dashboard, write_dashboard
from clms_etl.rules import registry, rule
from clms_etl.warehouse import Warehouse
from clms_etl.centres import load_registry
from clms_etl.deliveries import open_delivery
from clms_etl.keys import ENV_KEY, ENV_KEY_FILE
from clms_etl.centre_import import read_and_validate
from clms_etl.synth.generate import generate
from tests.warehouse.helpers import DAY1, DAY2, TEST_KEY, load_twin


@pytest.fixture(scope="module")
def night_with_defects(tmp_path_factory):
    """The twin delivered with realistic chart defects (one patient in five), read and validated."""
    drop = tmp_path_factory.mktemp("defects")
    generate(drop, seed=3, defect_rate=0.2, delivery_date=DAY2)
    registry = load_registry(drop)
    return {c: read_and_validate(registry[c], open_delivery(drop, c, DAY2), TEST_KEY) for c in ("nice", "lyon")}


@pytest.fixture
def wh(tmp_path, night_with_defects, monkeypatch):
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_KEY, TEST_KEY.decode())
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        load_twin(wh, tmp_path)
        # a second night for Nice and Lyon, with defects: queries, and two deliveries in their trend
        for centre, imported in night_with_defects.items():
            d = imported.delivery
            wh.load_delivery(centre, d.date, [d.path / name for name, _ in d.files], imported.validated,
                             run_id="night-2", expectations=False, key=TEST_KEY)
        yield wh


def test_every_source_has_each_kahn_category_and_each_check_counts_its_distinct_rows(wh):
    board = build_dashboard(wh)
    sources = set(wh.current_deliveries()["centre"])
    assert set(board.categories.select("centre", "category").iter_rows()) == {(s, c) for s in sources for c in CATEGORIES}
    queries = wh.table("data_query").join(wh.current_deliveries().select("delivery_id"), on="delivery_id")
    assert queries.height > 0 and board.checks.height > 0
    assert board.categories.filter(pl.col("rows_failing") > 0)["category"].n_unique() >= 2  # not all one category
    for check in board.checks.iter_rows(named=True):
        flagged = queries.filter(centre=check["centre"], rule=check["rule"]).select("table_name", "row_id").unique()
        read = wh.current_deliveries().filter(centre=check["centre"])["rows_read"][0]
        assert check["rows_failing"] == flagged.height
        assert check["share_failing"] == pytest.approx(flagged.height / read)
        assert check["category"] == rule(check["rule"]).category and check["category"] in CATEGORIES
    declared = {c: sum(r.category == c for r in registry().values()) for c in CATEGORIES}
    assert all(declared[r["category"]] == r["checks_declared"] > 0 for r in board.categories.iter_rows(named=True))
    totals = board.checks.group_by("centre", "category").agg(pl.col("rows_failing").sum())
    for centre, category, rows in totals.iter_rows():
        assert board.categories.filter(centre=centre, category=category)["rows_failing"][0] == rows


def test_a_check_fails_above_its_threshold(wh, monkeypatch):
    checks = build_dashboard(wh).checks
    warnings = checks.filter(severity="warning")
    assert (warnings["passed"] == (warnings["share_failing"] <= 0.05)).all()
    assert (checks.filter(severity="error")["passed"] == (checks.filter(severity="error")["rows_failing"] == 0)).all()
    monkeypatch.setattr(dashboard_module, "THRESHOLD", 0.0)
    failed = build_dashboard(wh)
    assert not failed.checks["passed"].any()
    assert failed.categories["checks_failed"].sum() == failed.checks.height


def test_the_trend_lists_the_latest_deliveries_of_each_source_newest_first(wh, monkeypatch):
    trend = build_dashboard(wh).trend
    nice = trend.filter(centre="nice")
    assert nice["delivery_date"].to_list() == [DAY2, DAY1] and nice["is_current"].to_list() == [True, False]
    assert trend.filter(centre="montpellier").height == 1
    assert nice["rows_quarantined"][0] > 0  # the night with defects
    monkeypatch.setattr(dashboard_module, "TREND_NIGHTS", 1)
    assert build_dashboard(wh).trend.filter(centre="nice")["delivery_date"].to_list() == [DAY2]
    assert ((trend["share_quarantined"] >= 0) & (trend["share_quarantined"] <= 1)).all()


def test_the_page_is_static_with_nothing_from_the_internet(wh, tmp_path):
    board = build_dashboard(wh)
    page = write_dashboard(board, tmp_path / "quality" / "dashboard.html").read_text(encoding="utf-8")
    assert "<script" not in page
    assert re.findall(r"<(?:link|img|script)\b[^>]*(?:src|href)=\"https?:", page) == []
    assert "url(http" not in page
    for row in board.categories.iter_rows(named=True):
        assert f'data-centre="{row["centre"]}" data-category="{row["category"]}"' in page
    for row in board.checks.iter_rows(named=True):
        assert f'data-centre="{row["centre"]}" data-rule="{row["rule"]}"' in page
    assert page.count('<tr data-centre="nice">') == 2  # its two nights in the trend
    assert "failed" in page or board.checks["passed"].all()
