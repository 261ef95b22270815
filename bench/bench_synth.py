"""Benchmark: write a 1,000,000-patient scale delivery (``clms-etl synth --patients --centres``).

    .venv/bin/python -m bench.bench_synth [--patients N] [--centres M] [--out DIR]

Prints wall time, patients/s, peak memory of the parent and of the busiest worker, and the
size written. Figures go in bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from clms_etl.synth.generate import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--centres", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="keep the delivery here (default: a temp dir, removed)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="clms-bench-synth-"))
    start = time.perf_counter()
    result = generate(out, seed=0, patients=args.patients, centres=args.centres,
                      delivery_date=dt.date(2026, 11, 23), workers=args.workers)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in result.files)
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"synth: {args.patients:,} patients, {args.centres} centres, {args.workers} workers, {os.cpu_count()} cores")
    print(f"  wall time        {seconds:8.1f} s")
    print(f"  throughput       {args.patients / seconds:8.0f} patients/s")
    print(f"  written          {size / 1e6:8.1f} MB in {len(result.files)} files")
    print(f"  peak RSS parent  {parent:8.0f} MiB; largest worker {child:.0f} MiB")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
