"""Benchmark: the laboratory read, the molecular summary and the cBioPortal study at scale.

    .venv/bin/python -m bench.bench_molecular [--drop DIR] [--patients N --centres M --cases K]

Without ``--drop`` it writes a scale delivery (``clms-etl synth --patients N --centres M``, by
default 100,000 patients over 40 centres) whose laboratory series is replaced by ``K`` profiled
cases (default 2,000: what the 1,000,000-patient drop holds), linked to the drop's patients.
Then, in one process and run:

* **laboratory read** — :func:`clms_etl.centre_import.read_and_validate` of the laboratory
  delivery against its floor, polars alone parsing the same files with one scan per kind of file
  (``bench.bench_read.lab_floor``);
* **molecular summary** and **cBioPortal study** — the two nightly steps as the Dagster assets
  run them (:func:`clms_etl.molecular.run.write_outputs`, :func:`~clms_etl.molecular.run.export_cbioportal`)
  on a DuckDB warehouse loaded with the whole drop, against their floor: reading the warehouse
  tables they read (the series' patients of ``patient_summary``) and writing them back as CSV
  with polars (the I/O any implementation pays).

Prints seconds and ratios to the floors (targets in ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

import clms_etl.analyses  # noqa: F401  (declares the result tables: the warehouse as in production)
import validations.canonical  # noqa: F401  (declares what the validate step checks)
from bench.bench_read import lab_floor
from clms_etl.centre_import import read_and_validate
from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.keys import DEMO_KEY, ENV_KEY, ENV_KEY_FILE

DATE = dt.date(2026, 11, 23)


def write_drop(drop: Path, patients: int, centres: int, cases: int) -> None:
    """A scale drop whose laboratory series holds ``cases`` profiled cases of its patients."""
    from clms_etl.synth import molecular
    from clms_etl.synth.generate import LABORATORY, write_molecular
    from clms_etl.synth.scale import centre_rng, generate_scale, scale_centres, scale_local_id

    generate_scale(drop, 0, patients, centres, 0.0, DATE, None, workers=2)
    shutil.rmtree(drop / LABORATORY)
    rng = centre_rng(0, "molecular-bench")
    named = scale_centres(centres)
    sizes = [patients // centres + (1 if i < patients % centres else 0) for i in range(centres)]
    series = molecular.random_cases(cases, rng)
    links = {}
    for case in series:
        c = int(rng.integers(len(named)))
        links[case.case_no] = (named[c][0], scale_local_id(named[c][1], int(rng.integers(sizes[c]))))
    write_molecular(drop, 0, DATE, links, cases=series)


def _timed(fn, *args):
    """(result, wall seconds, CPU seconds of the process: steadier than wall time on a shared machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, time.process_time() - c0


def warehouse_floor(wh, out: Path) -> float:
    """Read the tables the two steps read and write them as CSV, polars alone."""
    from clms_etl.molecular.run import SERIES_PATIENTS

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("molecular_sample", "cn_segment", "variant", "fusion", "gene_status"):
        wh.table(name).write_csv(out / f"{name}.csv")
    wh.read_sql(SERIES_PATIENTS).write_csv(out / "patient_summary.csv")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", type=Path, help="an existing drop folder (else one is written)")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--centres", type=int, default=40)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--skip-summary", action="store_true", help="only the laboratory read")
    parser.add_argument("--warehouse", type=Path, help="a DuckDB file already loaded with the drop (else one is)")
    args = parser.parse_args()
    drop = args.drop
    if drop is None:
        drop = Path(tempfile.mkdtemp(prefix="clms-bench-molecular-"))
        write_drop(drop, args.patients, args.centres, args.cases)
    registry = load_registry(drop)
    lab = next(c for c in registry.values() if c.laboratory)
    delivery = latest_delivery(drop, lab.name)
    read_and_validate(lab, delivery, DEMO_KEY)  # warm imports and the OS file cache
    lab_floor(delivery.path)
    floors = [_timed(lab_floor, delivery.path) for _ in range(3)]
    floor_s, floor_cpu = min(f[1] for f in floors), min(f[2] for f in floors)
    runs = [_timed(read_and_validate, lab, delivery, DEMO_KEY) for _ in range(3)]
    imported, read_s, _ = min(runs, key=lambda r: r[1])
    read_cpu = min(r[2] for r in runs)
    cases = imported.validated.accounting.row(0, named=True)["rows_read"]
    print(f"laboratory, drop folder {drop}: {cases:,} cases, "
          f"{sum(len(f) for f in imported.validated.accepted.values()):,} rows")
    print(f"  read + validate {read_s:6.2f} s   floor (one polars scan per kind) {floor_s:6.2f} s   "
          f"ratio {read_s / floor_s:5.2f}  (target <= 3, moonshot 1.5)")
    print(f"  CPU time        {read_cpu:6.2f} s   floor {floor_cpu:6.2f} s   ratio {read_cpu / floor_cpu:5.2f}")
    if args.skip_summary:
        return
    import os

    import matplotlib.backends.backend_agg  # noqa: F401  (imports warmed: this machine keeps no bytecode cache)
    import matplotlib.backends.backend_svg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    from clms_etl.molecular.run import export_cbioportal, write_outputs
    from clms_etl.warehouse.load import Warehouse

    os.environ.pop(ENV_KEY_FILE, None)
    os.environ[ENV_KEY] = DEMO_KEY.decode()
    work = Path(tempfile.mkdtemp(prefix="clms-bench-molecular-wh-"))
    loaded = args.warehouse is not None and args.warehouse.exists()
    with Warehouse(f"duckdb:///{args.warehouse or work / 'warehouse.duckdb'}") as wh:
        if not loaded:
            wh.create()
        for name, centre in registry.items() if not loaded else ():
            d = latest_delivery(drop, name)
            if d is None:
                continue
            done = read_and_validate(centre, d, DEMO_KEY)
            wh.load_delivery(name, d.date, [d.path / rel for rel, _ in d.files], done.validated, run_id="bench", expectations=False,
                             key=DEMO_KEY)
        floor = min(warehouse_floor(wh, work / f"floor{i}") for i in range(2))
        _, summary_s, summary_cpu = _timed(write_outputs, wh, work / "outputs", "bench")
        _, study_s, study_cpu = _timed(export_cbioportal, wh, work / "cbioportal")
    total = summary_s + study_s
    print(f"molecular summary + cBioPortal on {cases:,} cases (DuckDB warehouse, {args.patients:,} patients)")
    print(f"  molecular_summary {summary_s:6.2f} s   cbioportal_study {study_s:6.2f} s   total {total:6.2f} s "
          f"(target <= 5 s)")
    print(f"  CPU time: molecular_summary {summary_cpu:6.2f} s   cbioportal_study {study_cpu:6.2f} s")
    print(f"  floor (read their tables, write them as CSV) {floor:6.2f} s   ratio {total / floor:5.2f}")


if __name__ == "__main__":
    main()
