"""Result tables: declared once, conformed strictly, replaced whole and atomically."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest
import sqlalchemy as sa

from clms_etl.results import ResultColumn, ResultTable
from clms_etl.warehouse import Warehouse, schema
from clms_etl.warehouse.load import SchemaMismatch
from tests.warehouse.helpers import one_result_row

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


def test_replace_results_swaps_whole_tables_and_a_bad_frame_changes_nothing(warehouse_url):
    first, second = list(schema.RESULT_TABLES.values())[:2]
    with Warehouse(warehouse_url) as wh:
        wh.create()
        wh.replace_results({first.name: one_result_row(first), second.name: one_result_row(second)}, "run-1")
        assert wh.results(first.name)["run_id"].to_list() == ["run-1"]
        # a frame that does not fit its table: neither table changes
        with pytest.raises(ValueError, match="missing columns"):
            wh.replace_results({first.name: one_result_row(first), second.name: pl.DataFrame({"x": [1]})}, "run-2")
        assert wh.results(first.name)["run_id"].to_list() == ["run-1"]
        with pytest.raises(ValueError, match="duplicate keys"):
            wh.replace_results({first.name: one_result_row(first),
                                second.name: pl.concat([one_result_row(second)] * 2)}, "run-3")
        assert wh.results(first.name)["run_id"].to_list() == ["run-1"]
        # a failure inside the transaction, after the first table was emptied, rolls it back
        with wh.engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE analytics.{second.name} RENAME TO gone")
        with pytest.raises(Exception, match="(?i)gone|does not exist|not exist"):
            wh.replace_results({first.name: one_result_row(first), second.name: one_result_row(second)}, "run-3")
        assert wh.results(first.name)["run_id"].to_list() == ["run-1"]
        with wh.engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE analytics.gone RENAME TO {second.name}")
        wh.replace_results({first.name: one_result_row(first).clear()}, "run-4")
        assert wh.results(first.name).height == 0
        assert wh.results(second.name)["run_id"].to_list() == ["run-1"]


def test_an_empty_query_result_keeps_its_column_types(warehouse_url):
    # analyses run before the first delivery must join and filter empty frames like full ones
    from clms_etl import model

    with Warehouse(warehouse_url) as wh:
        wh.create()
        empty = wh.table("patient")
        view = wh.read_sql("SELECT patient_id, diagnosis_date, in_survival_population FROM analytics.survival")
    assert empty.height == 0
    assert dict(empty.schema) == {**model.TABLES["patient"], "delivery_id": pl.String}
    assert dict(view.schema) == {"patient_id": pl.String, "diagnosis_date": pl.Date, "in_survival_population": pl.Boolean}


def test_a_result_table_declared_again_is_a_no_op_and_another_under_its_name_an_error():
    spec = next(iter(schema.RESULT_TABLES.values()))
    before = dict(schema.RESULT_TABLES)
    schema.declare_results([spec])
    assert schema.RESULT_TABLES == before
    with pytest.raises(ValueError, match=f"result table {spec.name} declared twice"):
        schema.declare_results([dataclasses.replace(spec, description="Another table.")])
    assert schema.RESULT_TABLES == before


def test_a_result_table_the_warehouse_holds_but_was_not_declared_stops_it(warehouse_url):
    """A re-key would leave its pseudonyms behind: the warehouse refuses to work without its declaration."""
    with Warehouse(warehouse_url) as wh:
        wh.create()
        with wh.engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {schema.ANALYTICS_SCHEMA}.stray_estimate (patient_id TEXT)"))
        with pytest.raises(SchemaMismatch, match=r"stray_estimate.*not declared: import clms_etl.analyses"):
            wh.check_schema()


def test_results_basis_names_the_run_of_each_table_and_turns_stale_after_a_load(warehouse_url, tmp_path):
    from tests.warehouse.helpers import DAY2, delivery_files, load_twin, twin

    first, second = list(schema.RESULT_TABLES.values())[:2]
    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice", "molecular"))
        wh.replace_results({first.name: one_result_row(first)}, run_id="night-1")
        wh.replace_results({second.name: one_result_row(second)}, run_id="night-1b")
        basis = wh.results_basis()
        assert basis.select("tables", "run_id", "current").to_dicts() == [
            {"tables": [second.name], "run_id": "night-1b", "current": True},
            {"tables": [first.name], "run_id": "night-1", "current": True}]
        wh.load_delivery("molecular", DAY2, delivery_files(tmp_path, "molecular", DAY2), twin(DAY2)["molecular"],
                         run_id="lab-2", expectations=False)
        assert wh.results_basis()["current"].to_list() == [False, False]
        wh.replace_results({first.name: one_result_row(first)}, run_id="night-2")
        assert wh.results_basis().select("run_id", "current").rows() == [("night-2", True), ("night-1b", False)]


def test_duplicate_keys_are_found_by_the_rows_hashes_then_the_rows_themselves():
    # conform checks a key over millions of rows (the Schoenfeld residuals) by sorted hashes, then compares only
    # the rows whose hash another shares: the same answer as comparing every row
    from clms_etl.results import has_duplicate_rows

    n = 60_000
    keys = pl.DataFrame({"endpoint": ["OS", "RMFS"] * (n // 2), "term": [f"term_{i % 13}" for i in range(n)],
                         "event_index": pl.int_range(n, eager=True, dtype=pl.Int32)})
    assert not has_duplicate_rows(keys)
    for first, second in ((0, n - 1), (7, 8), (12_345, 2)):
        planted = keys.with_row_index("i").with_columns(
            pl.when(pl.col("i") == second).then(pl.lit(keys.row(first)[k])).otherwise(pl.col(c)).alias(c)
            for k, c in enumerate(keys.columns)).drop("i")
        assert has_duplicate_rows(planted), (first, second)
    for seed in range(5):  # small alphabets: frames with and without equal rows
        frame = pl.DataFrame({"a": pl.Series(["x", "y", None])[[(seed * i) % 3 for i in range(40)]],
                              "b": [(i * (seed + 1)) % 17 for i in range(40)]})
        assert has_duplicate_rows(frame) == frame.is_duplicated().any(), seed
    assert not has_duplicate_rows(keys.head(1)) and not has_duplicate_rows(keys.head(0))
