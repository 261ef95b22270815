"""Result tables: declared once, conformed strictly, replaced whole and atomically."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl.results import ResultColumn, ResultTable

SPEC = ResultTable(
    name="example_estimate",
    description="An example.",
    columns=(
        ResultColumn("endpoint", pl.String, "Endpoint.", nullable=False),
        ResultColumn("time_months", pl.Int32, "Time point.", nullable=False),
        ResultColumn("survival", pl.Float64, "Estimate."),
    ),
    primary_key=("endpoint", "time_months"),
)


def test_conform_orders_and_casts_the_declared_columns_and_adds_the_run():
    frame = pl.DataFrame({"survival": [0.9, 0.8], "time_months": [12, 24], "endpoint": ["OS", "OS"], "extra": [1, 2]})
    out = SPEC.conform(frame, run_id="r1")
    assert out.columns == ["endpoint", "time_months", "survival", "run_id"]
    assert out.schema["time_months"] == pl.Int32
    assert out["run_id"].to_list() == ["r1", "r1"]


def test_conform_names_missing_columns():
    with pytest.raises(ValueError, match=r"missing columns \['survival'\]"):
        SPEC.conform(pl.DataFrame({"endpoint": ["OS"], "time_months": [12]}))


def test_conform_refuses_a_broken_key():
    with pytest.raises(ValueError, match="duplicate keys"):
        SPEC.conform(pl.DataFrame({"endpoint": ["OS", "OS"], "time_months": [12, 12], "survival": [0.9, 0.8]}))
    with pytest.raises(ValueError, match="null in key"):
        SPEC.conform(pl.DataFrame({"endpoint": [None], "time_months": [12], "survival": [0.9]}))


def test_a_key_column_must_be_declared():
    with pytest.raises(ValueError, match="primary key columns"):
        ResultTable("bad", "Bad.", (ResultColumn("a", pl.String, "A."),), ("b",))
