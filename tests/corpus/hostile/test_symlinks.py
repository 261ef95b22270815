"""A symbolic link inside a delivery that points out of it: the file is refused, never read."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl.centres import load_registry

from .conftest import accounting, delivery_dir, import_centre
from .lab import rows_read

CENTRES = sorted(name for name, c in load_registry().items() if not c.laboratory)


def _link_out(path, tmp_path):
    """Move ``path`` out of its delivery and leave a symbolic link to it in its place."""
    outside = tmp_path / "elsewhere" / path.name
    outside.parent.mkdir(exist_ok=True)
    path.rename(outside)
    path.symlink_to(outside)


@pytest.mark.parametrize("centre", CENTRES)
def test_a_centre_file_linked_from_outside_the_delivery_is_refused_naming_the_file(drop, tmp_path, centre):
    folder = delivery_dir(drop, centre)
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        _link_out(path, tmp_path)
    imported = import_centre(drop, centre)
    assert imported.validated is None
    assert "hors du dossier de livraison" in imported.failure
    assert any(p.name in imported.failure for p in folder.iterdir())


def test_a_lab_manifest_linked_from_outside_the_delivery_is_refused(drop, tmp_path):
    folder = delivery_dir(drop, "molecular")
    _link_out(folder / "manifest.csv", tmp_path)
    imported = import_centre(drop, "molecular")
    assert "manifest.csv" in imported.failure and "hors du dossier de livraison" in imported.failure


def test_a_lab_sample_file_linked_from_outside_is_refused_with_a_query_and_not_read(drop, tmp_path):
    folder = delivery_dir(drop, "molecular")
    vcf = sorted((folder / "ngs").glob("*.vcf"))[0]
    _link_out(vcf, tmp_path)
    imported = import_centre(drop, "molecular")
    v = imported.validated
    asked = v.queries.filter(pl.col("rule") == "file_outside_delivery")
    assert asked.select("file", "severity").rows() == [(f"ngs/{vcf.name}", "error")]
    assert v.accepted["variant"].filter(pl.col("source_file") == f"ngs/{vcf.name}").is_empty()
    assert v.quarantined["variant"].filter(pl.col("source_file") == f"ngs/{vcf.name}").is_empty()
    assert {t: n for t, (n, _, _) in accounting(imported).items()} == rows_read(folder)
