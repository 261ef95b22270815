"""Where read + validate's CPU goes, per format, in units of the format's own polars floor.

    .venv/bin/python -m bench.bench_read_stages --drop DIR [--formats nice,montpellier] [--repeat 7]

For the first centre of each format, the minimum process time over ``--repeat`` reads (floor and
project alternately, one process) of the floor (:func:`bench.bench_read.polars_floor`), of the whole
:func:`clms_etl.centre_import.read_and_validate`, and of its stages, timed by wrapping the product's
own functions for the run (not copies of them):

* ``parse``: the delivery's file decoded and parsed into columns of text (``engine.read_text``,
  ``engine._read_sheets``) — the floor's own work, done the product's way;
* ``pseudonyms``: HMAC-SHA256 of each distinct patient id (``keys.pseudonyms``);
* ``reader``: the centre's whole reader, the two above included;
* ``screen``: the identifier screen of what the reader returns (``screen_read``);
* ``validate``: the contract's checks, quarantine and accounting (``validate.validate``), of which
  ``checks`` the checks' verdicts (``validate._check_verdicts``);
* ``as received``: the queried cells re-read as typed (``centre_import._as_received``).

Each stage's minimum is taken on its own, so the stages need not add up to the total. What it is
for: issue #14's target is read + validate ≤ 3× the floor for every format; this says which part of
a read is above it (``parse + pseudonyms`` is work no faster reader avoids: the file must be parsed
and every id hashed with the warehouse's pseudonym function).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from bench.bench_read import polars_floor
from clms_etl import centre_import, keys, validate
from clms_etl.centre_import import read_and_validate
from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.keys import DEMO_KEY
from clms_etl.readers import engine
import validations.canonical  # noqa: F401  (declares what the validate step checks)

# stage -> the (owner, attribute) whose calls it sums; the reader is added per centre
STAGES = {
    "parse": [(engine, "read_text"), (engine, "_read_sheets")],
    "pseudonyms": [(keys, "pseudonyms")],
    "screen": [(centre_import, "screen_read")],
    "validate": [(validate, "validate")],
    "checks": [(validate, "_check_verdicts")],
    "as received": [(centre_import, "_as_received")],
}
COLUMNS = ["parse", "pseudonyms", "reader", "screen", "validate", "checks", "as received"]


@contextmanager
def timed(stages: dict[str, list[tuple[object, str]]], spent: dict[str, float]):
    """Each listed function wrapped, for the block, to add its process time to ``spent[stage]``."""
    saved = []
    for stage, targets in stages.items():
        for owner, name in targets:
            original = getattr(owner, name)

            def wrapper(*args, _original=original, _stage=stage, **kwargs):
                start = time.process_time()
                try:
                    return _original(*args, **kwargs)
                finally:
                    spent[_stage] += time.process_time() - start

            saved.append((owner, name, original))
            setattr(owner, name, wrapper)
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            if getattr(original, "__self__", None) is owner:  # a bound method: drop the instance's attribute
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def measure(drop: Path, fmt: str, repeat: int) -> dict[str, float]:
    """Minimum process time of the floor, the whole read + validate and each stage, first centre of ``fmt``."""
    registry = load_registry(drop)
    name, centre = next((n, c) for n, c in registry.items() if c.format == fmt)
    delivery = latest_delivery(drop, name)
    best: dict[str, float] = defaultdict(lambda: float("inf"))
    spent: dict[str, float] = defaultdict(float)
    stages = dict(STAGES, reader=[(centre.reader, "read")])
    read_and_validate(centre, delivery, DEMO_KEY)  # warm: the reader built, modules imported
    with timed(stages, spent):
        for _ in range(repeat):
            gc.collect()
            spent.clear()
            c0 = time.process_time()
            polars_floor(fmt, delivery.path, drop)
            c1 = time.process_time()
            imported = read_and_validate(centre, delivery, DEMO_KEY)
            c2 = time.process_time()
            if imported.failure:
                raise SystemExit(f"{name}: {imported.failure}")
            best["floor"], best["total"] = min(best["floor"], c1 - c0), min(best["total"], c2 - c1)
            for stage in COLUMNS:
                best[stage] = min(best[stage], spent[stage])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", type=Path, required=True)
    parser.add_argument("--formats", default="nice,montpellier,lyon,nimes")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"min of {args.repeat}, process time of one centre per format, drop folder {args.drop}")
    print(f"{'format':<13}{'floor s':>8}{'total':>8}" + "".join(f"{c:>12}" for c in COLUMNS) + f"{'parse+pseud.':>14}")
    for fmt in args.formats.split(","):
        best = measure(args.drop, fmt, args.repeat)
        floor = best["floor"]
        cells = "".join(f"{best[c] / floor:>11.2f}×" for c in COLUMNS)
        print(f"{fmt:<13}{floor:>8.3f}{best['total'] / floor:>7.2f}×{cells}"
              f"{(best['parse'] + best['pseudonyms']) / floor:>13.2f}×", flush=True)
    print("(each stage in units of the floor; 'reader' includes parse and pseudonyms, 'validate' includes checks)")


if __name__ == "__main__":
    main()
