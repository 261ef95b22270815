"""Finding deliveries in the drop folder and fingerprinting them.

A delivery is a folder ``<drop>/<centre>/<YYYY-MM-DD>/``; its fingerprint is the SHA-256 of
the sorted (relative path, file SHA-256) pairs, so the same files delivered again are
recognised whatever their timestamps.

Any other folder in a centre's folder is *refused*, never skipped: a name that is not a real
date (``2026-02-30``, ``23-11-2026``) or a date no time zone has reached yet (``2062-11-23``).
A refused folder is never loaded, and it blocks that centre's imports with a French message
naming it (:func:`refused_folders`) until someone renames or removes it — loading it would make
every real delivery look older. Folders starting with ``_`` or ``.`` belong to the product or the
system (``_rolled_back/``), not to the centre.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")  # fromisoformat alone also takes 20261123 and 2026-W48-1
# The last time zone to change date (UTC+14): a folder dated after its today is in the future
# for every centre, wherever it is, whatever the machine's own time zone.
LATEST_UTC_OFFSET = dt.timedelta(hours=14)
REFUSED_RULE = "delivery_folder_refused"


@dataclass(frozen=True)
class Delivery:
    centre: str
    date: dt.date
    path: Path
    files: tuple[tuple[str, str], ...]  # (relative path, sha256)

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for name, sha in self.files:
            digest.update(f"{name}\0{sha}\n".encode())
        return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class RefusedFolder:
    """A folder in a centre's drop folder that cannot be a delivery; ``reason`` is for the centre (French)."""

    centre: str
    path: Path
    reason: str

    @property
    def message(self) -> str:
        return (f"Dossier de livraison « {self.centre}/{self.path.name} » refusé : {self.reason}. "
                f"Renommez-le avec la date de l'export (AAAA-MM-JJ) ; rien de ce dossier n'est chargé.")

    def query(self, on: dt.date):
        """The data query the centre gets for it (``on``: the date of the query list)."""
        from clms_etl import rules
        from clms_etl.data_queries import DataQuery

        return DataQuery(self.centre, on, self.path.name, None, None, None, None, None, None, self.path.name,
                         REFUSED_RULE, rules.severity(REFUSED_RULE), self.message)


def latest_today() -> dt.date:
    """The latest date anywhere on Earth now (UTC+14)."""
    return (dt.datetime.now(dt.UTC) + LATEST_UTC_OFFSET).date()


def _classify(folder: Path, centre: str, today: dt.date) -> dt.date | RefusedFolder:
    name = folder.name
    try:
        if not ISO_DATE.fullmatch(name):
            raise ValueError
        date = dt.date.fromisoformat(name)
    except ValueError:
        return RefusedFolder(centre, folder, f"« {name} » n'est pas une date réelle au format AAAA-MM-JJ")
    if date > today:
        return RefusedFolder(centre, folder, f"la date {date.isoformat()} est dans le futur")
    return date


def _scan(drop_folder: Path, centre: str, today: dt.date | None) -> list[dt.date | RefusedFolder]:
    root = drop_folder / centre
    if not root.is_dir():
        return []
    today = today or latest_today()
    return [_classify(child, centre, today) for child in sorted(root.iterdir())
            if child.is_dir() and not child.name.startswith(("_", "."))]


def delivery_dates(drop_folder: Path, centre: str, today: dt.date | None = None) -> list[dt.date]:
    """Dates of the centre's delivery folders that are real dates not after ``today``, oldest first."""
    return sorted(d for d in _scan(drop_folder, centre, today) if isinstance(d, dt.date))


def refused_folders(drop_folder: Path, centre: str, today: dt.date | None = None) -> list[RefusedFolder]:
    """The centre's folders that cannot be deliveries (see the module doc)."""
    return [d for d in _scan(drop_folder, centre, today) if isinstance(d, RefusedFolder)]


def open_delivery(drop_folder: Path, centre: str, date: dt.date) -> Delivery:
    path = drop_folder / centre / date.isoformat()
    files = tuple(
        (p.relative_to(path).as_posix(), file_sha256(p))
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    )
    return Delivery(centre, date, path, files)


def latest_delivery(drop_folder: Path, centre: str, today: dt.date | None = None) -> Delivery | None:
    dates = delivery_dates(drop_folder, centre, today)
    return open_delivery(drop_folder, centre, dates[-1]) if dates else None
