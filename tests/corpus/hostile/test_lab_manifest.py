"""One bad row of the laboratory's manifest: its case is quarantined, and so is everything of its
sample (segments, variants, fusions), each row with its own query; the rest of the delivery loads."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl.warehouse.load import IntegrityProblem, Warehouse
from tests.warehouse.conftest import pseudonym_key_env  # noqa: F401  (fixture: the test key)

from .conftest import accounting, delivery_dir, import_centre
from .lab import manifest, rows_read

LAB = "molecular"
MANIFEST_ROW = 3  # case 2 (header = row 1)

# defect -> (edit of the manifest's line for case 2, field the query names, samples losing their case)
DEFECTS = {
    "blank_local_id": (lambda f: [*f[:2], "", *f[3:]], "local_id"),
    "duplicate_sample_id": (None, "sample_id"),  # case 3 takes case 2's sample id: see below
    "bad_status": (lambda f: [*f[:4], "okk"], "status"),
    "extra_field": (lambda f: [*f, "surplus"], "colonne 6"),
    "cut_line": (lambda f: f[:4], "status"),
}


def _children(folder, sample_id: str) -> set[tuple[str, int]]:
    """(file, line) of every data row of the sample's three files, read from disk."""
    from .lab import data_lines

    out = set()
    for sub, suffix in (("chas", ".segments.txt"), ("ngs", ".vcf"), ("fusions", ".fusions.tsv")):
        path = folder / sub / f"{sample_id}{suffix}"
        if path.is_file():
            lines = data_lines(path)
            out |= {(f"{sub}/{path.name}", n) for n in (lines if sub == "ngs" else lines[1:])}
    return out


def _load(tmp_path, imported) -> pl.DataFrame:
    files = [p for p in imported.delivery.path.rglob("*") if p.is_file()]
    with Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        wh.create()
        wh.load_delivery(LAB, imported.delivery.date, files, imported.validated, expectations=False)
        return wh.read_sql("SELECT sample_id FROM molecular_sample")


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_bad_manifest_row_quarantines_its_sample_segments_variants_and_fusions(drop, tmp_path, defect):
    folder = delivery_dir(drop, LAB)
    path = folder / "manifest.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = lines[MANIFEST_ROW - 1].split(",")
    lost = {fields[3]}
    edit, field = DEFECTS[defect]
    if defect == "duplicate_sample_id":
        other = lines[MANIFEST_ROW].split(",")
        lost.add(other[3])  # its files now belong to no case
        lines[MANIFEST_ROW] = ",".join([*other[:3], fields[3], other[4]])
    else:
        lines[MANIFEST_ROW - 1] = ",".join(edit(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    imported = import_centre(drop, LAB)
    assert imported.failure is None
    v = imported.validated
    held = v.quarantined["molecular_sample"].filter(pl.col("source_row") == MANIFEST_ROW)
    assert held.height == 1
    asked = v.queries.filter(pl.col("file") == "manifest.csv", pl.col("row") == MANIFEST_ROW,
                             pl.col("severity") == "error")
    assert field in asked["field"].to_list()

    expected = set().union(*(_children(folder, s) for s in lost))
    assert expected  # the sample really has files
    for table in ("cn_segment", "variant", "fusion"):
        assert not v.accepted[table].filter(pl.col("sample_id").is_in(list(lost))).height, table
    quarantined = {(r["source_file"], r["source_row"]) for t in ("cn_segment", "variant", "fusion")
                   for r in v.quarantined[t].iter_rows(named=True)}
    assert expected <= quarantined
    cascaded = v.queries.filter(pl.col("rule").is_in(["sample_quarantined", "sample_not_in_manifest"]))
    assert {(r["file"], r["row"]) for r in cascaded.iter_rows(named=True)} == expected
    assert cascaded["message"].str.contains("manifeste").all()
    assert {t: n for t, (n, _, _) in accounting(imported).items()} == rows_read(folder)

    loaded = _load(tmp_path, imported)  # the warehouse takes the rest of the delivery
    assert not set(loaded["sample_id"]) & lost
    assert loaded.height == len(manifest(folder)) - len(lost)


def test_a_sample_file_of_no_manifest_case_is_quarantined_row_by_row_and_the_rest_loads(drop, tmp_path):
    folder = delivery_dir(drop, LAB)
    source = sorted((folder / "ngs").glob("*.vcf"))[0]
    stray = folder / "ngs" / "OS-2099-0001.vcf"
    stray.write_bytes(source.read_bytes())
    imported = import_centre(drop, LAB)
    v = imported.validated
    expected = _children(folder, "OS-2099-0001")
    asked = v.queries.filter(pl.col("rule") == "sample_not_in_manifest")
    assert {(r["file"], r["row"]) for r in asked.iter_rows(named=True)} == expected
    assert {t: n for t, (n, _, _) in accounting(imported).items()} == rows_read(folder)
    assert _load(tmp_path, imported).height == len(manifest(folder))


def test_a_child_without_its_case_is_refused_at_load_naming_file_row_and_field(drop, tmp_path):
    imported = import_centre(drop, LAB)
    v = imported.validated
    first = v.accepted["variant"].row(0, named=True)
    v.accepted["variant"] = v.accepted["variant"].with_columns(
        pl.when(pl.col("row_id") == first["row_id"]).then(pl.lit("OS-2099-0002")).otherwise(pl.col("sample_id"))
        .alias("sample_id"))
    with pytest.raises(IntegrityProblem) as refused:
        _load(tmp_path, imported)
    assert f"{first['source_file']} row {first['source_row']}, field sample_id" in str(refused.value)
