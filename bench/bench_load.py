"""Benchmark: load 1,000,000 patients into the warehouse, against the backend's own bulk load.

    .venv/bin/python -m bench.bench_load [--patients N] [--backends duckdb,postgresql] [--pg-url URL]
                                         [--expectations] [--centres K [--profile FILE]]

The canonical frames of N patients are built by replicating the synthetic twin (79 patients,
all four formats) with new pseudonyms, then written to Parquet. For each backend, on a fresh
warehouse with the full schema (same keys, checks and, on PostgreSQL, foreign keys):

* **floor** — the backend's own bulk load of that Parquet, one table after the other in one
  transaction: DuckDB ``INSERT INTO t SELECT * FROM read_parquet(...)``; PostgreSQL ``COPY t FROM
  STDIN (FORMAT csv)`` streaming a CSV file converted beforehand from the same Parquet (what
  ``psql \\copy`` does; the conversion is not timed);
* **load** — ``Warehouse.load_delivery`` of the same rows (from the polars frames: Arrow into
  DuckDB, polars CSV into ``COPY`` on PostgreSQL), first into the empty warehouse, then a second
  delivery replacing all of them in one transaction (the nightly case).

``--centres K``: the night's loads instead — the N patients split into K centres, each centre's
delivery loaded in turn into the same warehouse (the first night: each load inserts into a
warehouse already holding the centres before it), then a second delivery of every centre (the
next night: each load replaces its centre's rows); seconds per load, first/mean/last per night.
``--profile FILE``: cProfile of the last centre's load of each night (``FILE.first``, ``FILE.replace``).

rows/s counts every row of every table; ratio = load rows/s / floor rows/s (target >= 0.5).
PostgreSQL: a temporary database is created on the server of ``--pg-url`` (default
``$CLMS_TEST_POSTGRES_URL`` or ``postgresql://postgres@127.0.0.1:5432/test``) and dropped after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl

import clms_etl.analyses  # noqa: F401  (declares the result tables: the warehouse as in production)
from clms_etl import keys
from clms_etl.warehouse import Warehouse, schema
from clms_etl.synth.twin import CENTRE_SIZES
from tests.warehouse.synthetic import SyntheticDelivery, accounting_of, twin_deliveries

CENTRE = "bench"
DAY1, DAY2 = dt.date(2026, 11, 23), dt.date(2026, 11, 24)
TABLES = ("patient", "tumour", "surgery", "event")
BENCH_KEY = b"bench-key-not-a-secret-0123456789"


def build_frames(patients: int) -> dict[str, pl.DataFrame]:
    """Canonical frames of ``patients`` patients: the twin replicated, new pseudonyms and row ids."""
    twin = twin_deliveries(BENCH_KEY, DAY1)
    base = {t: pl.concat([twin[c].accepted[t] for c in CENTRE_SIZES]) for t in TABLES}
    n = base["patient"].height
    copies = -(-patients // n)
    ids = base["patient"].select("patient_id").with_row_index("_i")
    reps = pl.DataFrame({"_rep": pl.arange(0, copies, eager=True)})
    mapping = (
        ids.join(reps, how="cross")
        .with_columns((pl.col("_rep") * n + pl.col("_i")).alias("_k"))
        .filter(pl.col("_k") < patients)
        .with_columns(("P" + pl.col("_k").cast(pl.String).str.zfill(20)).alias("_new"))
        .select("patient_id", "_rep", "_k", "_new")
    )
    out = {}
    for table, frame in base.items():
        grown = frame.join(mapping, on="patient_id").sort("_k", *(["surgery_no"] if table == "surgery" else
                                                                   ["event_no"] if table == "event" else []))
        grown = grown.with_columns(
            pl.col("_new").alias("patient_id"),
            pl.format(f"{table}:{{}}", pl.int_range(1, pl.len() + 1)).alias("row_id"),
            pl.lit(f"{CENTRE}.synthetic").alias("source_file"),
            pl.int_range(2, pl.len() + 2, dtype=pl.Int64).alias("source_row"),
        )
        if table == "patient":
            grown = grown.with_columns(pl.lit(CENTRE).alias("centre"))
        out[table] = grown.select(frame.columns)
    return out


def _rows(frames: dict[str, pl.DataFrame]) -> int:
    return sum(f.height for f in frames.values())


def _files(root: Path, name: str) -> list[Path]:
    path = root / "incoming" / CENTRE / name / "export.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name)
    return [path]


def write_parquet(frames: dict[str, pl.DataFrame], root: Path, delivery_id: str) -> dict[str, Path]:
    paths = {}
    for table, frame in frames.items():
        path = root / f"{table}.parquet"
        frame.with_columns(pl.lit(delivery_id).alias("delivery_id")).select(schema.column_names(table)).write_parquet(path)
        paths[table] = path
    return paths


def floor_duckdb(url: str, parquet: dict[str, Path]) -> float:
    with Warehouse(url) as wh:
        wh.create()
        raw = wh.engine.raw_connection()
        con = raw.dbapi_connection
        start = time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        for table in TABLES:
            con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet('{parquet[table]}')")
        con.execute("COMMIT")
        seconds = time.perf_counter() - start
        raw.close()
    return seconds


def floor_postgresql(url: str, parquet: dict[str, Path], root: Path) -> float:
    csvs = {}
    for table, path in parquet.items():  # conversion outside the timing: the floor is COPY itself
        csvs[table] = root / f"{table}.csv"
        pl.read_parquet(path).write_csv(csvs[table], include_header=False)
    with Warehouse(url) as wh:
        wh.create()
        raw = wh.engine.raw_connection()
        con = raw.driver_connection
        start = time.perf_counter()
        with con.cursor() as cur:
            for table in TABLES:
                cols = ", ".join(schema.column_names(table))
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as copy, open(csvs[table], "rb") as f:
                    while block := f.read(1 << 20):
                        copy.write(block)
        con.commit()
        seconds = time.perf_counter() - start
        raw.close()
    return seconds


def ours(url: str, frames: dict[str, pl.DataFrame], root: Path, expectations: bool) -> tuple[float, float, float | None]:
    delivery = SyntheticDelivery(CENTRE, DAY1, frames, accounting=accounting_of(frames))
    with Warehouse(url, data_docs_dir=root / "data_docs") as wh:
        wh.create()
        start = time.perf_counter()
        wh.load_delivery(CENTRE, DAY1, _files(root, "first"), delivery, "bench", expectations=False)
        first = time.perf_counter() - start
        second_delivery = SyntheticDelivery(CENTRE, DAY2, frames, accounting=accounting_of(frames))
        start = time.perf_counter()
        report = wh.load_delivery(CENTRE, DAY2, _files(root, "second"), second_delivery, "bench", expectations=False)
        replace = time.perf_counter() - start
        assert report.rows_replaced["patient"] == frames["patient"].height
        ge = None
        if expectations:
            from clms_etl.warehouse.expectations import run_expectations

            start = time.perf_counter()
            result = run_expectations(wh)
            ge = time.perf_counter() - start
            print(f"    expectations: {len(result.outcomes)} evaluated, success={result.success}")
    return first, replace, ge


def split_centres(frames: dict[str, pl.DataFrame], centres: int) -> list[tuple[str, dict[str, pl.DataFrame]]]:
    """The frames cut into ``centres`` sources of consecutive patients (``c01``, ``c02``, ...)."""
    ids = frames["patient"]["patient_id"]
    size = -(-ids.len() // centres)
    out = []
    for i in range(centres):
        name = f"c{i + 1:02d}"
        mine = pl.DataFrame({"patient_id": ids.slice(i * size, size)})
        part = {t: f.join(mine, on="patient_id", how="semi").with_columns(pl.lit(f"{name}.synthetic").alias("source_file"))
                for t, f in frames.items()}
        part["patient"] = part["patient"].with_columns(pl.lit(name).alias("centre"))
        out.append((name, part))
    return out


def night_of_loads(url: str, frames: dict[str, pl.DataFrame], centres: int, root: Path,
                   profile: Path | None) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each centre's load, the first night (into a growing warehouse) then the
    next (replacing); each load opens the warehouse, as each import run does."""
    import cProfile

    parts = split_centres(frames, centres)
    times: dict[str, list[tuple[float, float]]] = {"first": [], "replace": []}
    with Warehouse(url, data_docs_dir=root / "data_docs") as wh:
        wh.create()
    for night, day in (("first", DAY1), ("replace", DAY2)):
        for i, (name, part) in enumerate(parts):
            delivery = SyntheticDelivery(name, day, part, accounting=accounting_of(part))
            files = _files(root / name, f"{night}")
            profiler = cProfile.Profile() if profile is not None and i == len(parts) - 1 else None
            start, cpu = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            with Warehouse(url, data_docs_dir=root / "data_docs") as wh:
                report = wh.load_delivery(name, day, files, delivery, "bench", expectations=False)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(f"{profile}.{night}")
            times[night].append((time.perf_counter() - start, time.process_time() - cpu))
            assert report.changed
    return times


def _pg_database(admin_url: str) -> tuple[str, callable]:
    import psycopg
    from psycopg import sql

    libpq = "postgresql://" + admin_url.split("://", 1)[1]
    name = f"clms_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--backends", default="duckdb,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("CLMS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--expectations", action="store_true", help="also time one Great Expectations run")
    parser.add_argument("--centres", type=int, help="the night's loads: the patients split into this many centres")
    parser.add_argument("--profile", type=Path, help="with --centres: cProfile of each night's last load")
    args = parser.parse_args()
    os.environ.setdefault(keys.ENV_KEY, BENCH_KEY.decode())

    start = time.perf_counter()
    frames = build_frames(args.patients)
    rows = _rows(frames)
    print(f"load: {args.patients:,} patients = {rows:,} rows "
          f"({', '.join(f'{t} {f.height:,}' for t, f in frames.items())}); built in {time.perf_counter() - start:.1f} s; "
          f"{os.cpu_count()} cores")
    root = Path(tempfile.mkdtemp(prefix="clms-bench-load-"))
    try:
        if args.centres:
            for backend in args.backends.split(","):
                url, drop = ((f"duckdb:///{root / 'night.duckdb'}", None) if backend == "duckdb"
                             else _pg_database(args.pg_url))
                try:
                    times = night_of_loads(url, frames, args.centres, root, args.profile)
                finally:
                    if drop:
                        drop()
                print(f"  {backend}: {args.centres} centres of {-(-args.patients // args.centres):,} patients")
                for night, measured in times.items():
                    for i, what in enumerate(("wall", "CPU")):
                        seconds = [m[i] for m in measured]
                        print(f"    {night:<8} night {what:<4} {sum(seconds):7.1f} s   per load: first {seconds[0]:5.2f} s, "
                              f"mean {sum(seconds) / len(seconds):5.2f} s, last {seconds[-1]:5.2f} s")
            return
        parquet = write_parquet(frames, root, f"{CENTRE}:floor")
        for backend in args.backends.split(","):
            drop = None
            if backend == "duckdb":
                floor_url, our_url = f"duckdb:///{root / 'floor.duckdb'}", f"duckdb:///{root / 'load.duckdb'}"
                floor = floor_duckdb(floor_url, parquet)
            else:
                floor_url, drop_floor = _pg_database(args.pg_url)
                try:
                    floor = floor_postgresql(floor_url, parquet, root)
                finally:
                    drop_floor()
                our_url, drop = _pg_database(args.pg_url)
            try:
                first, replace, ge = ours(our_url, frames, root, args.expectations)
            finally:
                if drop:
                    drop()
            how = ("INSERT ... SELECT * FROM read_parquet" if backend == "duckdb" else "COPY FROM STDIN (csv)")
            print(f"  {backend}")
            print(f"    floor ({how}) {floor:7.1f} s {rows / floor:10,.0f} rows/s")
            print(f"    load_delivery, empty    {first:7.1f} s {rows / first:10,.0f} rows/s  ratio {floor / first:4.2f}")
            print(f"    load_delivery, replace  {replace:7.1f} s {rows / replace:10,.0f} rows/s  ratio {floor / replace:4.2f}"
                  f"  (replaces all {rows:,} rows)")
            if ge is not None:
                print(f"    great expectations run  {ge:7.1f} s (all suites, Data Docs)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
