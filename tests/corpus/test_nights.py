"""Whole nights on drop folders nobody prepared for: one centre, all but one, 30 % defects, a
small 40-centre registry. Each runs through ``clms-etl run`` (the operator's command), and
every patient row counted in the source files ends in the warehouse or in quarantine.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from clms_etl.synth.generate import generate
from tests.corpus.sources import patient_rows

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
DATE = dt.date(2026, 11, 23)


def run_night(drop: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLMS_", "DAGSTER_"))}
    env.update(CLMS_OUTPUTS=str(tmp / "outputs"), CLMS_HANDOFF=str(tmp / "handoff"),
               CLMS_WAREHOUSE_URL=f"duckdb:///{tmp / 'warehouse.duckdb'}",
               CLMS_PSEUDONYM_KEY=secrets.token_urlsafe(32), DAGSTER_HOME=str(tmp / "dagster_home"),
               PYTHONWARNINGS="ignore", DAGSTER_DISABLE_TELEMETRY="1", VIRTUAL_ENV=str(BIN.parent))
    return subprocess.run([str(BIN / "clms-etl"), "run", "--incoming", str(drop)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)


def accounting(db: Path) -> dict[str, tuple[int, int, int]]:
    """centre -> (patient rows read, patients in the warehouse, patient rows quarantined)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = dict(con.sql("select centre, count(*) from patient group by centre").fetchall())
        counts = con.sql("""
            select d.centre, c.rows_read, c.rows_quarantined
            from delivery d join delivery_count c using (delivery_id)
            where d.is_current and c.table_name = 'patient'""").fetchall()
    finally:
        con.close()
    return {centre: (read, stored.get(centre, 0), quarantined) for centre, read, quarantined in counts}


def assert_nothing_lost(drop: Path, tmp: Path) -> dict[str, int]:
    expected = patient_rows(drop)
    got = accounting(tmp / "warehouse.duckdb")
    assert set(got) == set(expected)
    for centre, rows in expected.items():
        read, stored, quarantined = got[centre]
        assert read == rows == stored + quarantined, (centre, rows, got[centre])
    return expected


def night_ok(result: subprocess.CompletedProcess, tmp: Path) -> None:
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert (tmp / "outputs" / "report" / "clms_report.html").is_file()


@pytest.mark.slow
def test_a_drop_folder_with_one_centre_runs_the_night_and_says_the_others_are_skipped(twin_drop, tmp_path):
    drop = tmp_path / "drop"
    shutil.copytree(twin_drop / "montpellier", drop / "montpellier")
    result = run_night(drop, tmp_path)
    night_ok(result, tmp_path)
    assert assert_nothing_lost(drop, tmp_path) == {"montpellier": 21}
    said = (result.stdout + result.stderr).lower()
    assert all(f"{c}" in said and "skip" in said for c in ("nice", "lyon", "nimes"))


@pytest.mark.slow
def test_a_drop_folder_with_all_centres_but_one_runs_the_night(twin_drop, tmp_path):
    drop = tmp_path / "drop"
    shutil.copytree(twin_drop, drop, ignore=lambda d, names: ["nice"] if Path(d) == twin_drop else [])
    night_ok(run_night(drop, tmp_path), tmp_path)
    assert set(assert_nothing_lost(drop, tmp_path)) == {"montpellier", "lyon", "nimes"}


@pytest.mark.slow
def test_the_twin_with_thirty_percent_defects_runs_the_night_with_every_row_accounted(tmp_path):
    drop = tmp_path / "drop"
    generate(drop, seed=3, defect_rate=0.3, delivery_date=DATE)
    night_ok(run_night(drop, tmp_path), tmp_path)
    assert sum(assert_nothing_lost(drop, tmp_path).values()) >= 79  # duplicated rows count as read


@pytest.mark.slow
def test_a_forty_centre_registry_runs_the_night_with_every_row_accounted(tmp_path):
    drop = tmp_path / "drop"
    generate(drop, seed=1, patients=2000, centres=40, delivery_date=DATE, workers=1)
    night_ok(run_night(drop, tmp_path), tmp_path)
    counted = assert_nothing_lost(drop, tmp_path)
    assert len(counted) == 40 and sum(counted.values()) == 2000
