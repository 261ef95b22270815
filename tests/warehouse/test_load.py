"""Loads: one transaction per delivery, idempotent, never backwards, all-or-nothing, on both backends."""

from __future__ import annotations

import dataclasses
import re

import polars as pl
import pytest

from clms_etl.warehouse import DeliveryHeld, DeliveryRefused, Shrinkage, Warehouse
from tests.warehouse.synthetic import SyntheticDelivery
from tests.warehouse.helpers import (
    DAY1, DAY2, assert_same, delivery_files, load_twin, queries_frame, settled_statistics, snapshot, twin,
)


def _changed(delivery: SyntheticDelivery, **tables: pl.DataFrame) -> SyntheticDelivery:
    accepted = {**delivery.accepted, **tables}
    return SyntheticDelivery(delivery.centre, delivery.delivery_date, accepted, queries=delivery.queries)


def test_twin_loads_and_reloading_the_same_delivery_changes_nothing(loaded, tmp_path):
    assert loaded.read_sql("SELECT COUNT(*) AS n FROM patient")["n"][0] == 79
    before = snapshot(loaded)
    for centre, d in twin().items():
        report = loaded.load_delivery(centre, DAY1, delivery_files(tmp_path, centre, DAY1), d, "run-2",
                                      expectations=False)
        assert report.status == "unchanged" and not report.changed
        assert "already loaded" in report.message
    assert_same(before, snapshot(loaded))


def test_a_new_delivery_replaces_all_of_that_centres_rows_only(loaded, tmp_path):
    before = snapshot(loaded)
    nice = twin()["nice"]
    dropped = nice.accepted["patient"]["patient_id"][0]
    keep = pl.col("patient_id") != dropped
    smaller = _changed(nice, **{t: nice.accepted[t].filter(keep) for t in ("patient", "tumour", "surgery", "event")})
    smaller = dataclasses.replace(smaller, delivery_date=DAY2)
    report = loaded.load_delivery("nice", DAY2, delivery_files(tmp_path, "nice", DAY2), smaller, "run-2",
                                  expectations=False)
    assert report.status == "loaded"
    assert report.rows_replaced["patient"] == 24 and report.rows_loaded["patient"] == 23
    after = snapshot(loaded)
    assert after["patient"].height == 78
    assert dropped not in after["patient"]["patient_id"].to_list()
    assert dropped not in after["event"]["patient_id"].to_list()
    # other sources untouched, row for row
    for table in ("patient", "tumour", "event", "molecular_sample", "cn_segment", "gene_status"):
        other = pl.col("delivery_id").str.starts_with("nice:").not_()
        assert before[table].filter(other).equals(after[table].filter(other)), table
    deliveries = loaded.read_sql("SELECT centre, delivery_date, is_current FROM delivery WHERE centre = 'nice' ORDER BY delivery_date")
    assert deliveries["is_current"].to_list() == [False, True]
    assert loaded.current_deliveries().height == 5


def test_an_older_delivery_is_refused_and_changes_nothing(loaded, tmp_path):
    newer = dataclasses.replace(twin()["lyon"], delivery_date=DAY2)
    loaded.load_delivery("lyon", DAY2, delivery_files(tmp_path, "lyon", DAY2, "v2"), newer, "run-2", expectations=False)
    before = snapshot(loaded)
    older = twin()["lyon"]
    with pytest.raises(DeliveryRefused, match=r"lyon: the delivery of 2026-11-23 is older than the one already loaded \(2026-11-24"):
        loaded.load_delivery("lyon", DAY1, delivery_files(tmp_path, "lyon", DAY1, "v3"), older, "run-3",
                             expectations=False)
    assert_same(before, snapshot(loaded))


def test_a_delivery_removing_more_than_the_allowed_share_of_patients_is_held_in_the_load_and_changes_nothing(
        loaded, tmp_path):
    """The shrinkage guard is decided inside the load's transaction: counted on the rows current when
    the load holds the centre's lock, and nothing written when it holds the delivery."""
    nice = twin()["nice"]
    kept = nice.accepted["patient"].head(10)
    truncated = _changed(nice, **{name: frame.filter(pl.col("patient_id").is_in(kept["patient_id"].implode()))
                                  for name, frame in nice.accepted.items() if "patient_id" in frame.columns})
    removed = nice.accepted["patient"].height - 10
    before = snapshot(loaded)
    with pytest.raises(DeliveryHeld, match=rf"nice 2026-11-24: this delivery removes {removed} of the "
                       rf"{nice.accepted['patient'].height} patient rows in the warehouse \(\d+%; limit 10%\): held") as held:
        loaded.load_delivery("nice", DAY2, delivery_files(tmp_path, "nice", DAY2, "cut"), truncated, "run-2",
                             expectations=False, max_removed_share=0.10)
    assert held.value.shrinkage == Shrinkage("patient", nice.accepted["patient"].height, 10, removed)
    assert_same(before, snapshot(loaded))
    # accepted (no limit): it lands, and the report says what it removed
    report = loaded.load_delivery("nice", DAY2, delivery_files(tmp_path, "nice", DAY2, "cut"), truncated, "run-3",
                                  expectations=False)
    assert report.status == "loaded" and report.shrinkage.rows_removed == removed
    assert loaded.read_sql("SELECT count(*) AS n FROM patient WHERE delivery_id IN "
                           "(SELECT delivery_id FROM delivery WHERE centre = 'nice' AND is_current)")["n"][0] == 10


def test_same_date_new_content_is_a_correction_and_force_reloads(loaded, tmp_path):
    nimes = twin()["nimes"]
    r = loaded.load_delivery("nimes", DAY1, delivery_files(tmp_path, "nimes", DAY1, "corrected"), nimes, "run-2",
                             expectations=False)
    assert r.status == "loaded" and r.rows_replaced["patient"] == 15
    r2 = loaded.load_delivery("nimes", DAY1, delivery_files(tmp_path, "nimes", DAY1, "corrected"), nimes, "run-3",
                              force=True, expectations=False)
    assert r2.status == "loaded" and r2.delivery_id == r.delivery_id
    assert loaded.read_sql("SELECT COUNT(*) AS n FROM delivery WHERE centre = 'nimes'")["n"][0] == 2
    assert loaded.read_sql("SELECT COUNT(*) AS n FROM patient WHERE centre = 'nimes'")["n"][0] == 15


@pytest.mark.parametrize("where", ["event", "tumour"])
def test_a_failure_mid_load_leaves_the_previous_data_untouched(loaded, tmp_path, where):
    """A row violating a check constraint in a late table: everything before it is rolled back."""
    before = snapshot(loaded)
    montpellier = twin()["montpellier"]
    column, bad = {"event": ("event_kind", "abduction_by_aliens"), "tumour": ("site", "moon")}[where]
    broken = montpellier.accepted[where].with_columns(
        pl.when(pl.int_range(pl.len()) == pl.len() - 1).then(pl.lit(bad)).otherwise(pl.col(column)).alias(column))
    delivery = dataclasses.replace(_changed(montpellier, **{where: broken}), delivery_date=DAY2)
    with pytest.raises(Exception, match="(?i)check|constraint"):
        loaded.load_delivery("montpellier", DAY2, delivery_files(tmp_path, "montpellier", DAY2), delivery, "run-2",
                             expectations=False)
    assert_same(before, snapshot(loaded))


def test_orphans_and_rows_attached_to_another_centre_are_refused(loaded, tmp_path):
    before = snapshot(loaded)
    lyon, nice = twin()["lyon"], twin()["nice"]
    orphan = lyon.accepted["tumour"].with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("P" + "0" * 20)).otherwise(pl.col("patient_id")).alias("patient_id"))
    with pytest.raises(Exception, match="(?i)tumour|foreign key"):
        loaded.load_delivery("lyon", DAY2, delivery_files(tmp_path, "lyon", DAY2), _changed(lyon, tumour=orphan),
                             "run-2", expectations=False)
    assert_same(before, snapshot(loaded))
    # an event of Lyon pointing at a Nice patient: the patient exists, but belongs to another source
    first = pl.int_range(pl.len()) == 0
    stolen = lyon.accepted["event"].with_columns(
        pl.when(first).then(pl.lit(nice.accepted["patient"]["patient_id"][0])).otherwise(pl.col("patient_id")).alias("patient_id"),
        pl.when(first).then(99).otherwise(pl.col("event_no")).cast(pl.Int32).alias("event_no"))
    with pytest.raises(Exception, match="not a patient of this delivery"):
        loaded.load_delivery("lyon", DAY2, delivery_files(tmp_path, "lyon", DAY2, "v3"), _changed(lyon, event=stolen),
                             "run-3", expectations=False)
    assert_same(before, snapshot(loaded))
    # a row with the very key of another source's row must not overwrite it
    taken = pl.concat([lyon.accepted["patient"], nice.accepted["patient"].head(1).with_columns(pl.lit("lyon").alias("centre"))])
    with pytest.raises(Exception, match="(?i)another source|duplicate key"):
        loaded.load_delivery("lyon", DAY2, delivery_files(tmp_path, "lyon", DAY2, "v4"), _changed(lyon, patient=taken),
                             "run-4", expectations=False)
    assert_same(before, snapshot(loaded))


def _rows_inserted(wh: Warehouse, tables: tuple[str, ...]) -> dict[str, int]:
    """PostgreSQL's count of rows ever inserted into ``tables``, rolled back or not, once the backends that
    wrote them have ended."""
    wh.engine.dispose()
    return dict(settled_statistics(wh.url, "SELECT relname, n_tup_ins FROM pg_stat_user_tables "
                                           "WHERE relname = ANY(%s) ORDER BY relname", (list(tables),)))


@pytest.mark.postgres
def test_a_delivery_with_orphans_is_refused_before_any_row_is_written(pg_url, tmp_path):
    """The orphans are found in the delivery itself, before its load: on PostgreSQL, finding them among the
    written rows scanned every centre's rows of each child table at each load (33 s of the server's time
    over a 40-centre night at 1,000,000 patients, bench/README.md "Session 15")."""
    from clms_etl.warehouse import IntegrityProblem

    tables = ("patient", "tumour", "surgery", "event")
    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        before, rows = snapshot(wh), _rows_inserted(wh, tables)
        lyon = twin()["lyon"]
        last = pl.int_range(pl.len()) == pl.len() - 1
        orphan = lyon.accepted["event"].with_columns(
            pl.when(last).then(pl.lit("P" + "0" * 20)).otherwise(pl.col("patient_id")).alias("patient_id"))
        source_file, source_row = orphan.row(orphan.height - 1, named=True)["source_file"], orphan["source_row"][-1]
        with pytest.raises(IntegrityProblem, match=rf"^delivery refused, nothing changed: 1 event row\(s\) whose "
                                                   rf"patient_id is not a patient of this delivery \({re.escape(source_file)} "
                                                   rf"row {source_row}, field patient_id\)\.$"):
            wh.load_delivery("lyon", DAY2, delivery_files(tmp_path, "lyon", DAY2), _changed(lyon, event=orphan),
                             "run-2", expectations=False)
        assert _rows_inserted(wh, tables) == rows
        assert_same(before, snapshot(wh))


def test_a_delivery_repeating_a_key_is_refused_and_changes_nothing(loaded, tmp_path):
    """A key twice in one delivery is refused by name on both backends, whether the delivery replaces a
    centre's rows (PostgreSQL's upsert stopped on a driver error) or is its first."""
    from clms_etl.warehouse import IntegrityProblem

    before = snapshot(loaded)
    nice = twin()["nice"]
    twice = pl.concat([nice.accepted["surgery"], nice.accepted["surgery"].head(1)])
    with pytest.raises(IntegrityProblem, match=r"2 surgery row\(s\) share their key \(patient_id, surgery_no\) "
                                               r"with another row of the delivery \(.+ row \d+; "):
        loaded.load_delivery("nice", DAY2, delivery_files(tmp_path, "nice", DAY2), _changed(nice, surgery=twice),
                             "run-2", expectations=False)
    assert_same(before, snapshot(loaded))
    # a first delivery (nothing of the source to replace) likewise
    patients = twin()["lyon"].accepted["patient"]
    with pytest.raises(IntegrityProblem, match=r"2 patient row\(s\) share their key \(patient_id\)"):
        loaded.load_delivery("lyon2", DAY2, delivery_files(tmp_path, "lyon2", DAY2),
                             SyntheticDelivery("lyon2", DAY2, {"patient": pl.concat([patients.tail(1), patients.tail(1)])}),
                             "run-3", expectations=False)
    assert_same(before, snapshot(loaded))


def test_the_lab_owns_the_molecular_rows(loaded, tmp_path):
    lab = twin()["molecular"]
    assert loaded.read_sql("SELECT COUNT(*) AS n FROM molecular_sample")["n"][0] == 14
    # a centre's new delivery leaves the laboratory's rows alone
    nice = dataclasses.replace(twin()["nice"], delivery_date=DAY2)
    loaded.load_delivery("nice", DAY2, delivery_files(tmp_path, "nice", DAY2), nice, "run-2", expectations=False)
    assert loaded.read_sql("SELECT COUNT(*) AS n FROM cn_segment")["n"][0] == lab.accepted["cn_segment"].height
    # the lab's next delivery replaces all of its rows
    fewer = lab.accepted["molecular_sample"].filter(pl.col("case_no") <= 10)
    samples = fewer["sample_id"].implode()
    smaller = _changed(lab, molecular_sample=fewer,
                       **{t: lab.accepted[t].filter(pl.col("sample_id").is_in(samples)) for t in ("cn_segment", "variant", "fusion")})
    report = loaded.load_delivery("molecular", DAY2, delivery_files(tmp_path, "molecular", DAY2), smaller, "run-3",
                                  expectations=False)
    assert report.rows_replaced["molecular_sample"] == 14 and report.rows_loaded["molecular_sample"] == 10
    assert loaded.read_sql("SELECT COUNT(*) AS n FROM molecular_sample")["n"][0] == 10
    assert loaded.read_sql("SELECT COUNT(DISTINCT sample_id) AS n FROM gene_status")["n"][0] == 10  # cases 1-10 all succeeded
    assert loaded.read_sql("SELECT COUNT(*) AS n FROM patient")["n"][0] == 79


def test_audit_rows_and_data_queries(warehouse_url, tmp_path):
    lyon = twin()["lyon"]
    pid = lyon.accepted["patient"]["patient_id"][0]
    queries = queries_frame([
        {"centre": "lyon", "delivery_date": DAY1, "file": "CLMSLYON_DATA.csv", "row": 5, "table_name": "patient",
         "row_id": "patient:4", "patient_id": pid, "field": "sexe", "value": "3", "rule": "unknown_code",
         "severity": "error", "message": "Code « 3 » inconnu pour « sexe »."},
        {"centre": "lyon", "delivery_date": DAY1, "file": "CLMSLYON_DATA.csv", "row": 1, "field": "extra",
         "value": "extra", "rule": "unknown_column", "severity": "warning", "message": "Colonne inconnue."},
    ])
    accounting = pl.DataFrame({"table": ["patient", "tumour", "surgery", "event"],
                               "rows_read": [20, 19, 24, 21], "rows_accepted": [19, 19, 24, 21],
                               "rows_quarantined": [1, 0, 0, 0]})
    delivery = SyntheticDelivery("lyon", DAY1, lyon.accepted, queries=queries, accounting=accounting)
    files = delivery_files(tmp_path, "lyon", DAY1) + [tmp_path / "incoming" / "lyon" / "2026-11-23" / "dictionary.csv"]
    files[1].write_text("dictionary\n")
    with Warehouse(warehouse_url) as wh:
        wh.create()
        report = wh.load_delivery("lyon", DAY1, files, delivery, "run-42", expectations=False)
        assert report.rows_loaded["data_query"] == 2
        d = wh.read_sql("SELECT * FROM delivery")
        assert d["content_sha256"][0] == report.content_sha256 and len(report.content_sha256) == 64
        assert d["run_id"][0] == "run-42" and d["n_files"][0] == 2
        assert (d["rows_read"][0], d["rows_accepted"][0], d["rows_quarantined"][0]) == (84, 83, 1)
        f = wh.read_sql("SELECT file_name, size_bytes FROM delivery_file ORDER BY file_name")
        assert f["file_name"].to_list() == ["dictionary.csv", "lyon_export.txt"]
        q = wh.read_sql("SELECT query_no, source_file, source_row, severity, value FROM data_query ORDER BY query_no")
        assert q.rows() == [(1, "CLMSLYON_DATA.csv", 5, "error", "3"), (2, "CLMSLYON_DATA.csv", 1, "warning", "extra")]
        c = wh.read_sql("SELECT table_name, rows_quarantined FROM delivery_count ORDER BY table_name")
        assert dict(c.rows())["patient"] == 1
        # the next delivery replaces the centre's queries too
        clean = SyntheticDelivery("lyon", DAY2, lyon.accepted)
        wh.load_delivery("lyon", DAY2, delivery_files(tmp_path, "lyon", DAY2), clean, "run-43", expectations=False)
        assert wh.read_sql("SELECT COUNT(*) AS n FROM data_query")["n"][0] == 0


def test_a_delivery_needs_files_and_known_tables(tmp_path):
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.create()
        with pytest.raises(ValueError, match="at least one file"):
            wh.load_delivery("nice", DAY1, [], twin()["nice"], expectations=False)
        bad = SyntheticDelivery("nice", DAY1, {"patients": twin()["nice"].accepted["patient"]})
        with pytest.raises(ValueError, match="unknown canonical tables"):
            wh.load_delivery("nice", DAY1, delivery_files(tmp_path, "nice", DAY1), bad, expectations=False)


def test_the_embedded_warehouse_builds_itself(tmp_path):
    with Warehouse(f"duckdb:///{tmp_path / 'fresh' / 'warehouse.duckdb'}") as wh:
        report = wh.load_delivery("nice", DAY1, delivery_files(tmp_path, "nice", DAY1), twin()["nice"], "first",
                                  expectations=False)
        assert report.status == "loaded" and "patient 24" in str(report)


@pytest.mark.postgres
def test_postgresql_without_its_schema_says_to_migrate(pg_url, tmp_path):
    from clms_etl.warehouse import SchemaMismatch

    with Warehouse(pg_url) as wh, pytest.raises(SchemaMismatch, match="alembic upgrade head"):
        wh.load_delivery("nice", DAY1, delivery_files(tmp_path, "nice", DAY1), twin()["nice"], "first",
                         expectations=False)


def test_the_content_fingerprint_is_the_drop_folders(tmp_path):
    """The SHA-256 in ``delivery`` is the one ``clms_etl.deliveries`` computes for the same folder."""
    from clms_etl.deliveries import open_delivery

    folder = tmp_path / "drop" / "molecular" / DAY1.isoformat()
    (folder / "chas").mkdir(parents=True)
    (folder / "manifest.csv").write_text("case_no,centre\n1,nice\n")
    (folder / "chas" / "OS-2017-0001.segments.txt").write_text("segments\n")
    delivery = open_delivery(tmp_path / "drop", "molecular", DAY1)
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        report = wh.load_delivery("molecular", DAY1, [folder / name for name, _ in delivery.files], twin()["molecular"],
                                  "sha", expectations=False)
        assert report.content_sha256 == delivery.sha256
        assert wh.read_sql("SELECT file_name FROM delivery_file ORDER BY file_name")["file_name"].to_list() == \
            ["chas/OS-2017-0001.segments.txt", "manifest.csv"]


def test_the_refresh_plans_postgresql_queries_from_statistics_taken_after_the_loads(pg_url, tmp_path):
    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        wh.refresh_statistics()
        analysed = wh.read_sql(
            "SELECT relname, last_analyze FROM pg_stat_user_tables WHERE schemaname = current_schema()")
    from clms_etl.warehouse.schema import LOAD_ORDER

    when = dict(analysed.iter_rows())
    assert {t: when.get(t) is not None for t in LOAD_ORDER} == {t: True for t in LOAD_ORDER}


def test_the_refresh_marks_the_loaded_rows_visible_to_all_so_key_indexes_answer_alone(pg_url, tmp_path):
    """After the refresh every page of the tables the deliveries fill is all-visible (vacuumed): the
    suites' duplicate-key counts read the primary key's index alone, without the rows."""
    from clms_etl.warehouse.schema import LOAD_ORDER

    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        wh.refresh_statistics()
        pages = wh.read_sql(
            "SELECT c.relname, c.relpages, c.relallvisible FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'")
    filled = {name: (total, visible) for name, total, visible in pages.iter_rows() if name in LOAD_ORDER and total}
    assert filled["patient"][0] > 0 and filled["surgery"][0] > 0
    assert {name: visible == total for name, (total, visible) in filled.items()} == {name: True for name in filled}

