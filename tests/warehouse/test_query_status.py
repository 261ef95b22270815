"""data_query_status: each query's life across a centre's deliveries, kept by the load."""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl

from clms_etl.query_list import query_ids
from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.expectations import run_expectations
from tests.warehouse.helpers import DAY1, DAY2, delivery_files, pid, queries_frame, twin

DAY3 = DAY2 + dt.timedelta(days=7)


def _margin(day: dt.date) -> pl.DataFrame:
    return queries_frame([{"centre": "nimes", "delivery_date": day, "file": "nimes_dossiers.txt", "row": 3,
                           "table_name": "surgery", "row_id": "surgery:3", "patient_id": pid("nimes", "N1"), "field": "Marges",
                           "value": "12 cm", "rule": "margin_out_of_range", "severity": "error",
                           "message": "Marge clinique de 12 cm invraisemblable."}])


def test_the_load_opens_answers_and_resolves_queries_and_gives_turnaround_figures(tmp_path):
    nimes = twin()["nimes"]
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        first = dataclasses.replace(nimes, delivery_date=DAY1, queries=_margin(DAY1))
        wh.load_delivery("nimes", DAY1, delivery_files(tmp_path, "nimes", DAY1), first, "r1", expectations=False)
        status = wh.table("data_query_status")
        assert status.select("rule", "status", "opened_on").rows() == [("margin_out_of_range", "open", DAY1)]
        (number,) = query_ids(_margin(DAY1)).to_list()
        assert status["query_id"].to_list() == [number]

        # the next delivery still has the problem, and brings the centre's answer in the returned workbook
        second = dataclasses.replace(nimes, delivery_date=DAY2, queries=_margin(DAY2))
        second.answers = pl.DataFrame({"query_id": [number], "answer": ["Vérifié : 12 mm, corrigé en cm"]})
        wh.load_delivery("nimes", DAY2, delivery_files(tmp_path, "nimes", DAY2, "v2"), second, "r2",
                         expectations=False)
        row = wh.table("data_query_status").row(0, named=True)
        assert (row["status"], row["answered_on"], row["answer"]) == ("answered", DAY2, "Vérifié : 12 mm, corrigé en cm")

        # the delivery after that fixed the cell: resolved, automatically
        third = dataclasses.replace(nimes, delivery_date=DAY3)
        wh.load_delivery("nimes", DAY3, delivery_files(tmp_path, "nimes", DAY3, "v3"), third, "r3",
                         expectations=False)
        status = wh.table("data_query_status")
        assert status.select("status", "resolved_on").rows() == [("resolved", DAY3)]
        figures = wh.read_sql("SELECT * FROM analytics.query_turnaround").row(0, named=True)
    assert (figures["centre"], figures["n_open"], figures["n_answered"], figures["n_resolved"]) == ("nimes", 0, 0, 1)
    assert (figures["median_days_to_answer"], figures["median_days_to_resolve"]) == \
        ((DAY2 - DAY1).days, (DAY3 - DAY1).days)


def test_two_centres_queries_with_one_number_are_both_kept(warehouse_url, tmp_path):
    """A query's number is a 40-bit hash unique within its centre: at national scale two centres' numbers meet
    (a 40-centre night at 1,000,000 patients failed a load on it). Each centre keeps its own query."""
    import sqlalchemy as sa

    nimes = twin()["nimes"]
    (number,) = query_ids(_margin(DAY1)).to_list()
    with Warehouse(warehouse_url) as wh:
        wh.create()
        with wh.engine.begin() as conn:  # another centre's query that happens to have the same number
            conn.execute(sa.text("INSERT INTO data_query_status (query_id, centre, rule, severity, status, opened_on, "
                                 "last_seen_on) VALUES (:q, 'lyon', 'date_after_death', 'warning', 'open', :d, :d)"),
                         {"q": number, "d": DAY1})
        first = dataclasses.replace(nimes, delivery_date=DAY1, queries=_margin(DAY1))
        wh.load_delivery("nimes", DAY1, delivery_files(tmp_path, "nimes", DAY1), first, "r1", expectations=False)
        kept = wh.table("data_query_status").select("centre", "query_id").sort("centre").rows()
        # and the warehouse's quality gate agrees: its suite once held the number unique across centres, which
        # failed the whole refresh of a 1,000,000-patient night on PostgreSQL (bench/README.md, "Session 17")
        checked = run_expectations(wh, tables=["data_query_status"], data_docs_dir=False)
    assert kept == [("lyon", number), ("nimes", number)]
    assert checked.success, checked.failures
