"""Read + validate of one centre per format against its polars floor: the minimum process time of N.

    .venv/bin/python -m bench.bench_read_min --drop DIR --formats montpellier,lyon,nimes [--repeat 5]

On a loaded machine the minimum CPU of a few runs (floor and project alternately, in one process)
moves less than ``bench_read``'s best-of; run it from another checkout (``cd`` there) to compare
trees: the checkout's ``clms_etl`` is imported.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

from bench.bench_read import polars_floor
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
        name, centre = next((n, c) for n, c in registry.items() if c.format == fmt)
        delivery = latest_delivery(args.drop, name)
        read_and_validate(centre, delivery, DEMO_KEY)
        floor = project = float("inf")
        for _ in range(args.repeat):
            gc.collect()
            c0 = time.process_time()
            polars_floor(fmt, delivery.path, args.drop)
            c1 = time.process_time()
            read_and_validate(centre, delivery, DEMO_KEY)
            c2 = time.process_time()
            floor, project = min(floor, c1 - c0), min(project, c2 - c1)
        print(f"{fmt:<12} floor {floor:.3f}  project {project:.3f}  ratio {project / floor:.2f}", flush=True)


if __name__ == "__main__":
    main()
