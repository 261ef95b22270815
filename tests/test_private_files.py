"""Privacy by construction: no second copy of the rows, nothing readable by others.

Each test runs with the umask most machines have (022): files must come out owner-only because
the product makes them so, not because of the machine.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from polars.testing import assert_frame_equal

from assets import ingest
from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.handoff import HandoffMissing, discard, read_import, write_import
from clms_etl.centre_import import read_and_validate
from clms_etl.synth.generate import generate
from tests.conftest import TWIN_DATE
from tests.dagster_resources import resources_for
from tests.test_dagster_platform import BIN, GRAPHQL, ROOT, clms_env, dagster_home, free_port, graphql, stop

INGEST = [ingest.centre_import, ingest.centre_warehouse, ingest.validation_gate, ingest.row_accounting]


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def readable_by_others(*roots: Path) -> list[str]:
    """Every path under ``roots`` (roots included) that is not a 0700 folder or a 0600 file."""
    found = []
    for root in roots:
        for path in (root, *root.rglob("*")):
            mode = path.lstat().st_mode
            expected = 0o700 if stat.S_ISDIR(mode) else 0o600
            if stat.S_IMODE(mode) != expected:
                found.append(f"{path.relative_to(root.parent)} {oct(stat.S_IMODE(mode))}")
    return found


def pseudonyms(db: Path) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {p for (p,) in con.sql("select patient_id from patient").fetchall()}
    finally:
        con.close()


def files_holding_rows(root: Path, patient_ids: set[str]) -> list[str]:
    """Files under ``root`` that are a pickled import or hold any of ``patient_ids``."""
    def holds_rows(data: bytes) -> bool:
        pickled_import = data[:1] == b"\x80" and b"CentreImport" in data  # pickle protocol 2+
        return pickled_import or any(p.encode() in data for p in patient_ids)

    return [str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() and holds_rows(path.read_bytes())]


def test_the_import_handoff_round_trips_a_delivery_as_owner_only_parquet(tmp_path, umask_022):
    drop = tmp_path / "drop"
    generate(drop, seed=1, defect_rate=0.3, delivery_date=TWIN_DATE)
    centre = load_registry()["nimes"]
    imported = read_and_validate(centre, latest_delivery(drop, "nimes"), b"k" * 32)
    assert imported.validated.quarantined["patient"].height > 0  # both halves of the split travel

    folder = write_import(tmp_path / "handoff" / "nimes", imported)
    back = read_import(folder)

    assert back.centre == imported.centre and back.delivery == imported.delivery and back.failure is None
    for part in ("accepted", "quarantined"):
        sent, received = getattr(imported.validated, part), getattr(back.validated, part)
        assert list(received) == list(sent)
        for table, frame in sent.items():
            assert_frame_equal(received[table], frame)  # same rows, same dtypes
    assert_frame_equal(back.validated.queries, imported.validated.queries)
    assert_frame_equal(back.validated.accounting, imported.validated.accounting)
    assert {p.suffix for p in folder.rglob("*.*")} == {".parquet", ".json"}
    assert readable_by_others(tmp_path / "handoff") == []
    discard(folder)
    assert list((tmp_path / "handoff").iterdir()) == []  # nothing half-written left beside it either
    with pytest.raises(HandoffMissing, match="import the centre again"):
        read_import(folder)


def test_a_closed_gate_leaves_nothing_readable_by_others_and_the_next_import_clears_its_handoff(
        twin_drop, tmp_path, monkeypatch, umask_022):
    bad = tmp_path / "bad"
    generate(bad, seed=1, defect_rate=0.5, delivery_date=TWIN_DATE)
    monkeypatch.setattr(ingest, "MAX_QUARANTINED_SHARE", 0.0)  # any quarantined patient closes the gate
    home = dagster_home(tmp_path)
    outputs, handoff = tmp_path / "outputs", tmp_path / "handoff"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        closed = dg.materialize(INGEST, partition_key="nice", resources=resources_for(bad, tmp_path),
                                instance=instance, raise_on_error=False)
        assert {e.check_name: e.passed for e in closed.get_asset_check_evaluations()}["validation_gate"] is False
        # kept for no one else: the handoff waits owner-only until the centre's next import
        assert (handoff / "nice").is_dir()
        assert readable_by_others(outputs, handoff) == []

        monkeypatch.setattr(ingest, "MAX_QUARANTINED_SHARE", 0.2)
        loaded = dg.materialize(INGEST, partition_key="nice", resources=resources_for(twin_drop, tmp_path),
                                instance=instance)
    assert loaded.success
    assert list(handoff.iterdir()) == []  # the load deleted it: no second copy of the rows
    warehouse = tmp_path / "warehouse.duckdb"
    assert readable_by_others(outputs, handoff, warehouse) == []
    patient_ids = pseudonyms(warehouse)
    assert len(patient_ids) == 24
    assert files_holding_rows(home, patient_ids) == []  # run and event storage, compute logs


@pytest.mark.slow
def test_the_demo_under_umask_022_writes_only_owner_only_files_and_no_rows_in_dagster_storage(twin_drop, tmp_path):
    """`make demo` (every centre's import, then the nightly refresh, in a real Dagster instance)
    started by a shell whose umask is 022."""
    home, handoff, outputs = tmp_path / "dagster_home", tmp_path / "handoff", tmp_path / "outputs"
    env = clms_env(tmp_path, twin_drop, home)  # DAGSTER_HOME not created yet: the demo creates it
    env["CLMS_WAREHOUSE_URL"] = f"duckdb:///{tmp_path / 'wh' / 'warehouse.duckdb'}"  # its folder holds Data Docs too
    demo = subprocess.run([sys.executable, "-m", "assets.demo"], cwd=ROOT, env=env, umask=0o022,
                          capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout + demo.stderr[-3000:]

    patient_ids = pseudonyms(tmp_path / "wh" / "warehouse.duckdb")
    assert len(patient_ids) == 79
    assert files_holding_rows(home, patient_ids) == []  # no pickle of a CentreImport, no pseudonym
    assert list(handoff.iterdir()) == []
    # Dagster's runs.db, event logs and schedules; the warehouse, its WAL and Data Docs; query
    # lists, report, figures, exports, cBioPortal study
    assert (outputs / "report" / "clms_report.html").is_file() and (tmp_path / "wh" / "data_docs").is_dir()
    assert readable_by_others(home, tmp_path / "wh", outputs, handoff) == []


@pytest.mark.slow
def test_the_webserver_started_under_umask_022_creates_only_owner_only_files_in_dagster_home(tmp_path):
    """The webserver never loads the code location (a code server does): the instance named in
    dagster.yaml makes its files private."""
    webserver = BIN / "dagster-webserver"
    if not webserver.exists():
        pytest.skip(f"dagster-webserver is not installed next to {sys.executable}")
    home = tmp_path / "dagster_home"
    home.mkdir(mode=0o755)  # as a user would make it
    shutil.copy(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    env = clms_env(tmp_path, tmp_path / "incoming", home)
    port = free_port()
    log = (tmp_path / "webserver.log").open("w")
    server = subprocess.Popen([str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                              cwd=ROOT, env=env, umask=0o022, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                entries = graphql(port, GRAPHQL)["data"]["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError):
                pass
            time.sleep(0.5)
    finally:
        stop(server)
        log.close()
    assert (home / "history" / "runs.db").is_file()
    (home / "dagster.yaml").chmod(0o600)  # the test's copy: not the product's to judge
    assert readable_by_others(home) == []
