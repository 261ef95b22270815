"""Finding deliveries in the drop folder and fingerprinting them.

A delivery is a folder ``<drop>/<centre>/<YYYY-MM-DD>/``; its fingerprint is the SHA-256 of
the sorted (relative path, file SHA-256) pairs, so the same files delivered again are
recognised whatever their timestamps.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path


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


def delivery_dates(drop_folder: Path, centre: str) -> list[dt.date]:
    root = drop_folder / centre
    out = []
    if root.is_dir():
        for child in root.iterdir():
            try:
                if child.is_dir():
                    out.append(dt.date.fromisoformat(child.name))
            except ValueError:
                continue  # not a delivery folder (e.g. a note left by someone)
    return sorted(out)


def open_delivery(drop_folder: Path, centre: str, date: dt.date) -> Delivery:
    path = drop_folder / centre / date.isoformat()
    files = tuple(
        (p.relative_to(path).as_posix(), file_sha256(p))
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    )
    return Delivery(centre, date, path, files)


def latest_delivery(drop_folder: Path, centre: str) -> Delivery | None:
    dates = delivery_dates(drop_folder, centre)
    return open_delivery(drop_folder, centre, dates[-1]) if dates else None
