"""Inputs for the warehouse tests: the synthetic twin as validated deliveries, a tiny cohort."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import polars as pl
from alembic.config import Config

from clms_etl import model
from clms_etl.data_queries import QUERY_SCHEMA
from clms_etl.keys import pseudonym
from clms_etl.warehouse import schema
from tests.warehouse.synthetic import SyntheticDelivery, twin_deliveries

TEST_KEY = b"test-key-of-the-warehouse-tests-0123456789"
OTHER_KEY = b"another-key-for-the-rekey-tests-Zq8Lw3Xv6Np"  # a second deployment key (re-key)
DAY1 = dt.date(2026, 11, 23)
DAY2 = dt.date(2026, 11, 24)
SOURCES = ("nice", "montpellier", "lyon", "nimes", "molecular")
ROOT = Path(__file__).resolve().parents[2]


@cache
def _twin(delivery_date: dt.date) -> dict[str, SyntheticDelivery]:
    return twin_deliveries(TEST_KEY, delivery_date)


def twin(delivery_date: dt.date = DAY1) -> dict[str, SyntheticDelivery]:
    """The twin cohort as five validated deliveries (cached; do not mutate the frames)."""
    return _twin(delivery_date)


@cache
def twin_with(key: bytes, delivery_date: dt.date = DAY1) -> dict[str, SyntheticDelivery]:
    """The twin cohort pseudonymised with another key."""
    return twin_deliveries(key, delivery_date)


def twin_mapping() -> pl.DataFrame:
    """What the centres send for a re-key: centre and hospital number of every twin patient."""
    from clms_etl.synth.twin import build_twin

    return build_twin(0).patient.select("centre", "local_id")


def delivery_files(root: Path, centre: str, delivery_date: dt.date, content: str = "v1") -> list[Path]:
    """Stand-ins for the delivery's files (their SHA-256 identifies the delivery)."""
    folder = root / "incoming" / centre / delivery_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{centre}_export.txt"
    path.write_text(f"{centre} {delivery_date} {content}\n", encoding="utf-8")
    return [path]


def load_twin(wh, root: Path, delivery_date: dt.date = DAY1, sources=SOURCES, content: str = "v1") -> dict:
    reports = {}
    for centre in sources:
        d = twin(delivery_date)[centre]
        reports[centre] = wh.load_delivery(centre, delivery_date, delivery_files(root, centre, delivery_date, content),
                                           d, run_id="test", expectations=False)
    return reports


def snapshot(wh) -> dict[str, pl.DataFrame]:
    """Every data and audit table, sorted, to compare states of the warehouse."""
    out = {}
    for name in schema.metadata.tables:
        frame = wh.table(name)
        out[name] = frame.sort(frame.columns, nulls_last=True) if frame.height else frame
    return out


def assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].height == b[name].height, name
        if a[name].height:
            assert a[name].equals(b[name]), name


def queries_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([{k: r.get(k) for k in QUERY_SCHEMA} for r in rows], schema=QUERY_SCHEMA)


def pid(centre: str, local_id: str) -> str:
    return pseudonym(TEST_KEY, centre, local_id)


def frame(table: str, rows: list[dict]) -> pl.DataFrame:
    full = []
    for i, r in enumerate(rows):
        r = dict(r)
        r.setdefault("row_id", f"{table}:{i + 1}")
        r.setdefault("source_file", "tiny.csv")
        r.setdefault("source_row", i + 2)
        full.append({k: r.get(k) for k in model.TABLES[table]})
    return pl.DataFrame(full, schema=model.TABLES[table])


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


_ONE_VALUE = {pl.String: "x", pl.Int16: 1, pl.Int32: 1, pl.Int64: 1, pl.Float64: 0.5, pl.Boolean: True,
              pl.Date: dt.date(2026, 1, 1)}


def one_result_row(spec) -> pl.DataFrame:
    """A one-row frame that fits a result table (a value of the right type in every column)."""
    return pl.DataFrame({c.name: [_ONE_VALUE[c.dtype_class]]
                         for c in spec.columns}, schema=spec.schema)


def settled_statistics(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """The rows of ``sql`` over PostgreSQL's cumulative statistics (``pg_stat_*``) at ``url``, read again until
    three reads agree: a backend reports its counts when it ends, a moment after its client closed it."""
    import time

    import psycopg

    reads: list[list[tuple]] = []
    with psycopg.connect("postgresql://" + url.split("://", 1)[1], autocommit=True) as conn:
        for _ in range(20):
            conn.execute("SELECT pg_stat_clear_snapshot()")  # each read sees the counts as they are now
            reads.append(conn.execute(sql, params).fetchall())
            if len(reads) >= 3 and reads[-1] == reads[-2] == reads[-3]:
                break
            time.sleep(0.2)
    return reads[-1]


def migrated_and_declared(pg_databases) -> tuple[str, str]:
    """Two fresh PostgreSQL warehouses: one built by ``alembic upgrade head`` (production), one by
    :meth:`Warehouse.create` (the declared schema), for a test to find the same thing in both."""
    from alembic import command

    from clms_etl.warehouse import Warehouse

    migrated, declared = pg_databases.new(), pg_databases.new()
    command.upgrade(alembic_config(migrated), "head")
    with Warehouse(declared) as wh:
        wh.create()
    return migrated, declared
