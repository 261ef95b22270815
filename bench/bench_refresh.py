"""Benchmark: the nightly refresh's steps, one by one, in one process, on a loaded warehouse.

    .venv/bin/python -m bench.bench_refresh --warehouse W.duckdb --out DIR [--steps a,b] [--profile DIR]
    .venv/bin/python -m bench.bench_refresh --warehouse postgresql+psycopg://... --out DIR [...]

``W.duckdb`` is a warehouse the night loaded (``clms-etl run``): it is copied to ``DIR/warehouse.duckdb``
first, so the same warehouse serves every measurement. A PostgreSQL warehouse (its URL; the key in
``CLMS_PSEUDONYM_KEY``) is used in place: the steps rewrite only the result tables. Each step of ``nightly_refresh`` after the
imports is called as its asset calls it (the library functions of ``clms_etl/``, no Dagster), in the
job's order; printed: wall and CPU seconds of each, its peak RSS and, for a PostgreSQL server on this machine,
the server's CPU seconds during the step. The outputs (report, exports, OMOP, cBioPortal,
figures and tables) are written under ``DIR/outputs`` with a fixed run id and report time, so that
two runs of different code on the same warehouse can be compared byte for byte (``--digest`` prints
a SHA-256 of every output file and of every result table). ``--profile DIR`` writes one cProfile
file per step.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import importlib
import os
import shutil
import time
from pathlib import Path

import clms_etl.analyses  # noqa: F401  (declares the result tables, as the code location does)
from assets.warehouse import COUNTS_SQL  # imported here: Dagster's import is not the step's cost
from bench.bench_night import _proc_peak_kib, postmaster_pid, server_cpu_s
from clms_etl.warehouse import Warehouse

RUN_ID = "bench-refresh"
GENERATED_AT = dt.datetime(2026, 12, 5, 2, 0, tzinfo=dt.UTC)
SURVIVAL_OPTIONS = {"population": "censored_before_minimum", "min_follow_up_months": 3.0, "ci_transform": "log"}


def _warehouse(wh: Warehouse) -> None:
    wh.ensure_schema()
    wh.refresh_statistics()
    wh.read_sql(COUNTS_SQL)
    wh.current_deliveries()
    wh.record_refresh(RUN_ID, None)


def _great_expectations(wh: Warehouse) -> None:
    from clms_etl.warehouse.expectations import run_expectations

    run_expectations(wh, run_name=RUN_ID)


def _survival(wh: Warehouse, outputs: Path) -> None:
    from clms_etl.survival.run import write_outputs

    write_outputs(wh, outputs, RUN_ID, **SURVIVAL_OPTIONS)


def _result_expectations(wh: Warehouse, tables) -> None:
    from clms_etl.warehouse.expectations import RESULTS, run_expectations

    run_expectations(wh, scope=RESULTS, tables=[t.name for t in tables], run_name=RUN_ID)


def _survival_expectations(wh: Warehouse) -> None:
    from clms_etl.survival.tables import TABLES

    _result_expectations(wh, TABLES)


def _molecular(wh: Warehouse, outputs: Path) -> None:
    from clms_etl.molecular.run import write_outputs

    write_outputs(wh, outputs, RUN_ID)


def _molecular_expectations(wh: Warehouse) -> None:
    from clms_etl.molecular.tables import TABLES

    _result_expectations(wh, TABLES)


def _cbioportal(wh: Warehouse, outputs: Path) -> None:
    from clms_etl.disclosure import DisclosureBlocked
    from clms_etl.molecular.run import export_cbioportal

    try:
        export_cbioportal(wh, outputs / "cbioportal", 5)
    except DisclosureBlocked:
        pass


def _omop(wh: Warehouse, outputs: Path) -> None:
    from clms_etl.keys import pseudonym_key
    from clms_etl.omop.export import export_omop, read_sources, sources_folder

    # as the asset: its rows read first, then the CDM built from them; the asset's blocking check is the
    # export's own quality checks (no second run on the file)
    target = outputs / "omop"
    with sources_folder(target) as folder:
        started = time.perf_counter()
        sources = read_sources(wh, folder)
        print(f"    omop_cdm: rows read in {time.perf_counter() - started:.2f} s", flush=True)
        export_omop(sources, target, dates="shifted", key=pseudonym_key(wh.url), replace=True)


def _report(wh: Warehouse, outputs: Path) -> None:
    from clms_etl.molecular.run import molecular_sections
    from clms_etl.report.build import build_report
    from clms_etl.survival.report_sections import sections as survival_sections

    outdir = outputs / "report"
    with wh.views_copied("patient_summary"):  # as the clinician_report asset reads
        sections = [*survival_sections(wh, outdir, **SURVIVAL_OPTIONS), *molecular_sections(wh, outdir)]
        build_report(wh, sections, outdir, run_id=RUN_ID, generated_at=GENERATED_AT)


def _exports(wh: Warehouse, outputs: Path) -> None:
    from clms_etl.report.exports import export_analysis

    export_analysis(wh, outputs / "exports", shareable=False, k_threshold=5)


def _dashboard(wh: Warehouse, outputs: Path) -> None:
    from clms_etl.report.dashboard import build_dashboard, write_dashboard

    write_dashboard(build_dashboard(wh), outputs / "quality" / "dashboard.html", data_docs=None)


WARM_MODULES = ("clms_etl.warehouse.load", "clms_etl.warehouse.expectations", "great_expectations",
                "clms_etl.survival.run", "clms_etl.molecular.run", "clms_etl.report.build", "clms_etl.report.exports",
                "clms_etl.report.dashboard", "clms_etl.omop.export", "matplotlib.figure",
                "matplotlib.backends.backend_agg")

# (step, function, takes the outputs folder), in the order of nightly_refresh
STEPS = (
    ("warehouse", _warehouse, False),
    ("warehouse_great_expectations", _great_expectations, False),
    ("quality_dashboard", _dashboard, True),
    ("survival_analysis", _survival, True),
    ("survival_analysis_result_expectations", _survival_expectations, False),
    ("molecular_summary", _molecular, True),
    ("molecular_summary_result_expectations", _molecular_expectations, False),
    ("cbioportal_study", _cbioportal, True),
    ("omop_cdm", _omop, True),
    ("clinician_report", _report, True),
    ("analysis_exports", _exports, True),
)


def digest(folder: Path, wh: Warehouse) -> dict[str, str]:
    """SHA-256 of every output file (the report's generation time is fixed) and of every result table."""
    from clms_etl.warehouse import schema

    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    for name in sorted(schema.results_metadata.tables):
        frame = wh.read_sql(f"SELECT * FROM {name}")
        frame = frame.drop([c for c in ("run_id", "computed_at") if c in frame.columns])
        frame = frame.sort(frame.columns, nulls_last=True)
        out[f"table {name}"] = hashlib.sha256(frame.write_csv().encode()).hexdigest()
    return out


def _reset_peak_rss() -> None:
    """Start the process's peak RSS (VmHWM) again from its current RSS, so that the next reading is
    one step's peak (Linux: ``/proc/self/clear_refs``, value 5); elsewhere the peak stays cumulative."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    found = _proc_peak_kib(os.getpid())
    return found[0] / 1024 if found else float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", required=True,
                        help="a loaded DuckDB warehouse (copied first) or a PostgreSQL warehouse's URL (used in place)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", default="", help="comma-separated step names (default: all)")
    parser.add_argument("--profile", type=Path, help="folder for one cProfile file per step")
    parser.add_argument("--digest", type=Path, help="write the SHA-256 of every output and result table here")
    args = parser.parse_args(argv)

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    if args.warehouse.startswith("postgresql"):
        url = args.warehouse
    else:
        copy = args.out / "warehouse.duckdb"
        shutil.copyfile(args.warehouse, copy)
        url = f"duckdb:///{copy}"
    outputs = args.out / "outputs"
    os.environ.setdefault("CLMS_OUTPUTS", str(outputs))
    wanted = set(filter(None, args.steps.split(",")))
    for module in WARM_MODULES:  # imported before timing, as nightly_refresh's warm executor does
        importlib.import_module(module)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    wall_total = cpu_total = server_total = 0.0
    # a local PostgreSQL server's CPU per step (its own and its backends'): on two cores the
    # server's work competes with the step's, so it is part of the step's cost
    postmaster = postmaster_pid(url.replace("+psycopg", "")) if url.startswith("postgresql") else None
    with Warehouse(url) as wh:
        for name, step, takes_outputs in STEPS:
            if wanted and name not in wanted:
                continue
            profiler = cProfile.Profile() if args.profile else None
            _reset_peak_rss()
            wall, cpu, server = time.perf_counter(), time.process_time(), server_cpu_s(postmaster)
            if profiler:
                profiler.enable()
            step(wh, outputs) if takes_outputs else step(wh)
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile / f"{name}.prof")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            server = server_cpu_s(postmaster) - server if server is not None else None
            wall_total, cpu_total, server_total = wall_total + wall, cpu_total + cpu, server_total + (server or 0.0)
            print(f"  {name:<40} wall {wall:7.2f} s   CPU {cpu:7.2f} s   peak RSS {_peak_rss_mib():6.0f} MiB"
                  + (f"   server CPU {server:7.2f} s" if server is not None else ""), flush=True)
        print(f"  {'refresh steps':<40} wall {wall_total:7.2f} s   CPU {cpu_total:7.2f} s"
              + (f"   server CPU {server_total:7.2f} s" if postmaster else ""))
        if args.digest:
            lines = [f"{h}  {name}" for name, h in digest(outputs, wh).items()]
            args.digest.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
