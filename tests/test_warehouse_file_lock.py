"""A DuckDB warehouse shared by processes: readers together, a writer waits for them (and they for it).

The night's readers (exports, OMOP, report, result suites) run side by side in separate step
processes; a load from another run must wait for them instead of failing on DuckDB's file lock
(:mod:`clms_etl.warehouse.file_lock`). Each test holds the file in a second Python process, as a
Dagster step would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.file_lock import LockModeConflict

HOLDER = textwrap.dedent("""
    import sys
    from clms_etl.warehouse import Warehouse
    wh = Warehouse(sys.argv[1], read_only=sys.argv[2] == "ro")
    rows = wh.read_sql("SELECT count(*) AS n FROM delivery")["n"][0]
    if sys.argv[2] == "rw":  # rows to write out at the close (DuckDB's checkpoint: the file stays locked)
        with wh.engine.begin() as conn:
            conn.exec_driver_sql("SET enable_progress_bar = false")  # (its bar would go to our stdout)
            conn.exec_driver_sql("CREATE TABLE written_at_close AS SELECT range AS i, md5(range::VARCHAR) AS h "
                                 "FROM range(3000000)")
    print(f"holding {rows}", flush=True)
    sys.stdin.readline()  # until the test says so
    wh.close()
    print("closed", flush=True)
""")


@pytest.fixture
def url(tmp_path):
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    with Warehouse(url) as wh:
        wh.create()
    return url


def _hold(url: str, mode: str) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, mode], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _expect(holder, "holding")
    return holder


def _let_go(holder: subprocess.Popen) -> None:
    holder.stdin.write("\n")
    holder.stdin.flush()
    _expect(holder, "closed")
    assert holder.wait(timeout=60) == 0


def _expect(holder: subprocess.Popen, said: str) -> None:
    line = holder.stdout.readline()
    if not line.startswith(said):  # stopped first, so that its stderr can be read to the end
        holder.kill()
        out, err = holder.communicate(timeout=60)
        raise AssertionError(f"the holding process said {line + out!r}, not {said!r}: {err}")


def test_two_processes_read_the_warehouse_at_once(url):
    holder = _hold(url, "ro")
    try:
        with Warehouse(url, read_only=True) as wh:
            assert wh.read_sql("SELECT count(*) AS n FROM delivery")["n"][0] == 0
    finally:
        _let_go(holder)


def _waits_for(holder: subprocess.Popen, opening) -> object:
    """Run ``opening`` (it opens the warehouse) in a thread while ``holder`` holds the file: it must still
    be waiting, not failed, 2 s later; once the holder has closed the file, its result."""
    outcome = {}

    def run():
        try:
            outcome["result"] = opening()
        except Exception as e:  # (today's DuckDB: "Could not set lock on file")
            outcome["error"] = e

    waiter = threading.Thread(target=run)
    waiter.start()
    waiter.join(timeout=2)
    try:
        assert "error" not in outcome, outcome.get("error")
        assert waiter.is_alive(), "it opened the file while another process held it in the other mode"
    finally:
        _let_go(holder)
    waiter.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    return outcome["result"]


def test_a_writer_waits_for_a_reading_process_then_writes(url):
    def write():
        with Warehouse(url) as wh:
            wh.record_refresh("run-after-the-reader")
        return True

    assert _waits_for(_hold(url, "ro"), write)
    with Warehouse(url, read_only=True) as wh:
        assert "run-after-the-reader" in wh.audit_log()["run_id"].to_list()


def test_a_reader_waits_for_a_writing_process_until_its_file_is_written(url):
    def read():
        with Warehouse(url, read_only=True) as wh:
            return wh.read_sql("SELECT count(*) AS n FROM delivery")["n"][0]

    assert _waits_for(_hold(url, "rw"), read) == 0


def test_a_read_only_warehouse_refuses_to_write(url):
    with Warehouse(url, read_only=True) as wh, pytest.raises(Exception, match="read-only"):
        wh.record_refresh("must-not-land")


def test_writing_where_the_process_reads_is_refused_not_waited_for(url):
    with Warehouse(url, read_only=True) as reader:
        reader.read_sql("SELECT 1 AS one")
        with Warehouse(url) as writer, pytest.raises(LockModeConflict, match="already open read-only"):
            writer.read_sql("SELECT 1 AS one")
    with Warehouse(url) as writer:  # once the reader is closed, the file is free for a writer
        writer.record_refresh("after-the-reader-closed")


def test_reading_where_the_process_writes_reads_through_its_opening(url):
    # a test or a notebook materialising the report in-process beside its own read-write warehouse
    with Warehouse(url) as writer:
        writer.record_refresh("written-by-this-process")
        with Warehouse(url, read_only=True) as reader:
            assert "written-by-this-process" in reader.audit_log()["run_id"].to_list()
        writer.record_refresh("still-writing")  # the reader's close did not end the writer's hold
    holder = _hold(url, "ro")  # and the last close let another process in
    _let_go(holder)


def test_openings_of_one_mode_in_a_process_share_the_lock(url):
    first, second = Warehouse(url), Warehouse(url)
    first.read_sql("SELECT 1 AS one")
    second.record_refresh("second-opening")
    first.close()
    second.record_refresh("still-open")  # the first's close did not end the second's hold
    second.close()
    holder = _hold(url, "ro")  # and the last close let another process in
    _let_go(holder)


def test_a_result_suite_that_reads_no_view_waits_for_a_writing_process(url):
    # GE opens its own connections to the file: the suite holds the warehouse's lock for them even when it
    # has no view to copy first (the molecular result suites; the 1M night failed on DuckDB's lock there).
    from clms_etl.molecular.tables import TABLES
    from clms_etl.warehouse.expectations import RESULTS, load_suites, run_expectations, views_read

    tables = [t.name for t in TABLES]
    assert views_read(load_suites(scope=RESULTS), tables) == []

    def validate():
        with Warehouse(url, read_only=True) as wh:
            return run_expectations(wh, scope=RESULTS, tables=tables, data_docs_dir=False)

    assert _waits_for(_hold(url, "rw"), validate) is not None
