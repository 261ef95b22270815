"""The import handoff: one centre's validated delivery between its import and its warehouse load.

The import, the checks that gate it and the load run as separate steps (often separate
processes), so the validated frames must wait somewhere in between. They wait here, as Parquet
in an owner-only folder, and are deleted once loaded — never kept as a second copy of the
centre's rows. The folder of one import::

    delivery.json                  the delivery's identity: centre, date, folder, files and hashes
    queries.parquet, accounting.parquet, answers.parquet (the centre's answers, when it returned a query list)
    accepted/<table>.parquet       canonical columns + has_warning
    quarantined/<table>.parquet    canonical columns + quarantine_reasons
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import polars as pl

from clms_etl.deliveries import Delivery
from clms_etl.files import make_private, private_dir
from clms_etl.centre_import import CentreImport

MANIFEST = "delivery.json"


class HandoffMissing(FileNotFoundError):
    """No handoff where one was expected: already loaded, or replaced by a newer import."""


def write_import(folder: Path, imported: CentreImport) -> Path:
    """Write ``imported`` into ``folder`` (replacing what was there); returns ``folder``.

    Written beside it first and renamed into place, so a reader never sees half an import.
    """
    folder = Path(folder)
    private_dir(folder.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))  # 0700
    d = imported.delivery
    manifest = {"centre": imported.centre, "failure": imported.failure,
                "delivery": {"centre": d.centre, "date": d.date.isoformat(), "path": str(d.path),
                             "files": [list(f) for f in d.files]}}
    v = imported.validated
    if v is not None:
        manifest["tables"] = list(v.accepted)
        v.queries.write_parquet(staging / "queries.parquet")
        v.accounting.write_parquet(staging / "accounting.parquet")
        if v.answers is not None:
            v.answers.write_parquet(staging / "answers.parquet")
        for part, frames in (("accepted", v.accepted), ("quarantined", v.quarantined)):
            (staging / part).mkdir()
            for table, frame in frames.items():
                frame.write_parquet(staging / part / f"{table}.parquet")
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
    make_private(staging)
    discard(folder)
    staging.rename(folder)
    return folder


def read_import(folder: Path) -> CentreImport:
    """The :class:`CentreImport` written by :func:`write_import` into ``folder``."""
    from clms_etl.validate import ValidatedDelivery

    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise HandoffMissing(f"no import waiting in {folder}: it was loaded already or replaced by a "
                             "newer import of the centre; import the centre again") from None
    d = manifest["delivery"]
    delivery = Delivery(d["centre"], dt.date.fromisoformat(d["date"]), Path(d["path"]),
                        tuple(tuple(f) for f in d["files"]))
    validated = None
    if "tables" in manifest:
        frames = {part: {t: pl.read_parquet(folder / part / f"{t}.parquet") for t in manifest["tables"]}
                  for part in ("accepted", "quarantined")}
        validated = ValidatedDelivery(manifest["centre"], delivery.date, frames["accepted"], frames["quarantined"],
                                      pl.read_parquet(folder / "queries.parquet"),
                                      pl.read_parquet(folder / "accounting.parquet"),
                                      pl.read_parquet(folder / "answers.parquet")
                                      if (folder / "answers.parquet").exists() else None)
    return CentreImport(manifest["centre"], delivery, validated, manifest["failure"])


def discard(folder: Path) -> None:
    """Delete the import waiting in ``folder``, if any."""
    shutil.rmtree(folder, ignore_errors=True)
