"""Benchmark: the survival analysis (``clms_etl.survival.study.analyse``) on 100,000 to 1,000,000 patients.

    .venv/bin/python -m bench.bench_survival [--patients 100000,300000,1000000] [--profile FILE]

The inputs are the two frames the Dagster asset ``survival_analysis`` reads (``analytics.patient_summary``
with the tumour columns of Table 1, and ``analytics.survival``), built by resampling the 79-patient twin
loaded into a DuckDB warehouse: each copy gets a new pseudonym and its diagnosis moved back by a random
0-730 days (every later date kept), so the durations take thousands of distinct values as in a real
registry, not the twin's 79. What is timed is ``analyse`` end to end (the asset minus warehouse I/O and
the figure files), with the default options of the asset.

Floor, measured in the same run on the same frames: lifelines' ``KaplanMeierFitter`` on overall
survival of the whole population (one library fit of one curve, the smallest thing the analysis
does). CPU seconds (all threads) are printed beside the wall time: on a shared machine they say what
the analysis costs when the wall time says how busy the machine was. The ratio analysis / floor shows where the cost goes as the cohort grows; the target of issue
#14 is ``analyse`` <= 30 s at 1,000,000 patients on this machine kind.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

import clms_etl.analyses  # noqa: F401  (declares the result tables: the warehouse as in production)
from clms_etl.keys import ENV_KEY
from clms_etl.survival.study import PATIENT_COLUMNS, SURVIVAL_COLUMNS, TUMOUR_COLUMNS, TUMOUR_EXTRA_SQL, analyse
from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.analytics import DAYS_PER_MONTH
from tests.warehouse.helpers import TEST_KEY, load_twin

MAX_SHIFT_DAYS = 730
SEED = 14


def twin_inputs() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(patient_summary, survival) of the twin, read from a fresh DuckDB warehouse."""
    os.environ.setdefault(ENV_KEY, TEST_KEY.decode())  # the twin deliveries are pseudonymised with the tests' key
    with tempfile.TemporaryDirectory() as tmp:
        with Warehouse(f"duckdb:///{Path(tmp) / 'warehouse.duckdb'}") as wh:
            wh.create()
            load_twin(wh, Path(tmp))
            # the whole views: their dates and days are moved with the diagnosis when resampling
            return wh.read_sql(TUMOUR_EXTRA_SQL), wh.read_sql("SELECT * FROM analytics.survival")


def read_columns(summary: pl.DataFrame, survival: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The columns of the two views that ``load_inputs`` reads (what the asset gives ``analyse``)."""
    return summary.select(*PATIENT_COLUMNS, *TUMOUR_COLUMNS), survival.select(SURVIVAL_COLUMNS)


def resample(summary: pl.DataFrame, survival: pl.DataFrame, patients: int,
             seed: int = SEED) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``patients`` patients drawn from the twin (with replacement), diagnosis moved back 0-730 days."""
    rng = np.random.default_rng(seed)
    draw = pl.DataFrame({"source_id": summary["patient_id"].gather(rng.integers(0, summary.height, patients)),
                         "new_id": [f"B{i:09d}" for i in range(patients)],
                         "shift_days": rng.integers(0, MAX_SHIFT_DAYS + 1, patients)})
    shift = pl.duration(days=pl.col("shift_days"))
    s = (draw.join(summary, left_on="source_id", right_on="patient_id", how="left", maintain_order="left")
         .with_columns(diagnosis_date=pl.col("diagnosis_date") - shift,
                       follow_up_days=pl.col("follow_up_days") + pl.col("shift_days"))
         .with_columns(follow_up_months=pl.col("follow_up_days") / DAYS_PER_MONTH)
         .rename({"new_id": "patient_id"}).select(summary.columns))
    v = (draw.join(survival, left_on="source_id", right_on="patient_id", how="inner")
         .with_columns(diagnosis_date=pl.col("diagnosis_date") - shift,
                       time_days=pl.col("time_days") + pl.col("shift_days"))
         .with_columns(time_months=pl.col("time_days") / DAYS_PER_MONTH)
         .rename({"new_id": "patient_id"}).select(survival.columns))
    return s, v


def floor_seconds(summary: pl.DataFrame, survival: pl.DataFrame) -> float:
    from lifelines import KaplanMeierFitter

    os_ = survival.filter((pl.col("endpoint") == "OS") & pl.col("in_survival_population"))
    start = time.perf_counter()
    KaplanMeierFitter().fit(os_["time_months"].to_numpy(), os_["event"].to_numpy())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", default="100000,300000,1000000")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the largest run to this file")
    args = parser.parse_args()
    sizes = [int(n) for n in args.patients.split(",")]
    summary, survival = twin_inputs()
    start = time.perf_counter()
    analyse(*read_columns(summary, survival))
    print(f"twin: {summary.height} patients, analyse {time.perf_counter() - start:.2f} s")
    print(f"{'patients':>10} {'floor s':>8} {'analyse s':>10} {'cpu s':>7} {'ratio':>7} {'us/patient':>11} "
          f"{'peak RSS MiB':>13}")
    for n in sizes:
        s, v = resample(summary, survival, n)
        floor = floor_seconds(s, v)
        s, v = read_columns(s, v)
        profiler = cProfile.Profile() if args.profile and n == max(sizes) else None
        start, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        analyse(s, v)
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n:>10,} {floor:>8.2f} {seconds:>10.2f} {cpu:>7.1f} {seconds / floor:>7.1f} {seconds / n * 1e6:>11.1f} "
              f"{rss:>13.0f}", flush=True)
    print(f"measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
