"""Read + validate of one centre per format against its polars floor: the minimum process time of N.

    .venv/bin/python -m bench.bench_read_min --drop DIR --formats montpellier,lyon,nimes [--repeat 5]

On a loaded machine the minimum CPU of a few runs (floor and project alternately, in one process)
moves less than ``bench_read``'s best-of; run it from another checkout (``cd`` there) to compare
trees: the checkout's ``clms_etl`` is imported (an older checkout needs this file and
``bench_read_stages.py``, whose loop it runs, copied there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.bench_read_stages import measure
from clms_etl.centre_import import read_and_validate
from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.keys import DEMO_KEY
import validations.canonical  # noqa: F401  (declares what the validate step checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", type=Path, required=True)
    parser.add_argument("--formats", required=True, help="comma-separated; the first centre of each is read")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    registry = load_registry(args.drop)
    read_and_validate(registry["molecular"], latest_delivery(args.drop, "molecular"), DEMO_KEY)  # warm imports
    print(f"min of {args.repeat}, process time, drop folder {args.drop}")
    for fmt in args.formats.split(","):
        best = measure(args.drop, fmt, args.repeat)  # (the stages of bench_read_stages, unused here)
        floor, project = best["floor"], best["total"]
        print(f"{fmt:<12} floor {floor:.3f}  project {project:.3f}  ratio {project / floor:.2f}", flush=True)


if __name__ == "__main__":
    main()
