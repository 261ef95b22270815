"""Going back to a centre's previous delivery: ``clms-etl warehouse rollback CENTRE``.

The warehouse keeps only a centre's current rows, but the drop folder keeps every delivery. A
rollback re-reads and re-loads the latest delivery folder dated *before* the one the warehouse
holds (the only load allowed to go backwards), then moves every newer folder of that centre
(including a future-dated one) into ``<centre>/_rolled_back/`` so that the next nightly does
not load it again: moved, never deleted, to be looked at or sent back to the centre.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from clms_etl.deliveries import ISO_DATE, delivery_dates, open_delivery

ROLLED_BACK = "_rolled_back"


class RollbackImpossible(RuntimeError):
    """Nothing to go back to, or the previous delivery cannot be read: the warehouse is unchanged."""


@dataclass(frozen=True)
class Rollback:
    centre: str
    replaced: str  # delivery id the warehouse held
    restored: dt.date
    moved: tuple[Path, ...]  # newer folders moved under _rolled_back/
    summary: str


def rollback(centre: str, drop_folder: Path, warehouse, outputs: Path, pseudonym_key: bytes,
             run_id: str = "rollback") -> Rollback:
    """Restore ``centre``'s previous delivery in ``warehouse`` (a :class:`~clms_etl.warehouse.load.Warehouse`)."""
    from clms_etl.centres import load_registry
    from clms_etl.centre_import import read_and_validate, write_query_list

    registry = load_registry(drop_folder)
    if centre not in registry:
        raise RollbackImpossible(f"unknown centre {centre!r}: the registry has {', '.join(registry)}")
    current = warehouse.current_deliveries().filter(centre=centre)
    if current.is_empty():
        raise RollbackImpossible(f"{centre}: the warehouse holds no delivery of this centre, nothing to roll back")
    replaced, current_date = current["delivery_id"][0], current["delivery_date"][0]
    earlier = [d for d in delivery_dates(drop_folder, centre) if d < current_date]
    if not earlier:
        raise RollbackImpossible(f"{centre}: no delivery folder dated before {current_date} in "
                                 f"{drop_folder / centre}; the warehouse keeps {replaced}")
    delivery = open_delivery(drop_folder, centre, earlier[-1])
    imported = read_and_validate(registry[centre], delivery, pseudonym_key)
    write_query_list(outputs, imported)
    if imported.failure:
        raise RollbackImpossible(f"{centre} {delivery.date}: {imported.failure}; the warehouse keeps {replaced}")
    report = warehouse.load_delivery(centre, delivery.date, [delivery.path / n for n, _ in delivery.files],
                                     imported.validated, run_id=run_id, force=True, expectations=False,
                                     allow_older=True)
    moved = []
    for folder in sorted((drop_folder / centre).iterdir()):
        if folder.is_dir() and ISO_DATE.fullmatch(folder.name) and folder.name > delivery.date.isoformat():
            target = drop_folder / centre / ROLLED_BACK / folder.name
            target.parent.mkdir(exist_ok=True)
            shutil.move(folder, target)
            moved.append(target)
    return Rollback(centre, replaced, delivery.date, tuple(moved), report.summary())
