"""The laboratory's files as a test reads them, independently of the reader."""

from __future__ import annotations

import csv
from pathlib import Path


def data_lines(path: Path, comment: str = "#") -> list[int]:
    """Physical line numbers (1-based) of the non-blank lines not starting with ``comment``."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [i for i, line in enumerate(lines, start=1) if line.strip() and not line.startswith(comment)]


def vcf_alleles(path: Path) -> int:
    """Canonical variant rows of a VCF: one per ALT allele of each record (header line excluded)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return sum(len(line.split("\t")[4].split(",")) for line in lines if line.strip() and not line.startswith("#"))


def table_rows(path: Path) -> int:
    """Rows of a tab-separated export under its header (``#`` lines skipped)."""
    return len(data_lines(path)) - 1


def manifest(folder: Path) -> list[dict]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def delivered(folder: Path, pattern: str) -> list[Path]:
    """Files of the delivery matching ``pattern``; a symbolic link is not a delivered file."""
    return [p for p in folder.glob(pattern) if not p.is_symlink()]


def rows_read(folder: Path) -> dict[str, int]:
    """table -> source rows of the lab delivery, counted from the files on disk."""
    return {
        "molecular_sample": len(manifest(folder)),
        "cn_segment": sum(table_rows(p) for p in delivered(folder, "chas/*.segments.txt")),
        "variant": sum(vcf_alleles(p) for p in delivered(folder, "ngs/*.vcf")),
        "fusion": sum(table_rows(p) for p in delivered(folder, "fusions/*.fusions.tsv")),
    }


def edit_field(path: Path, line_no: int, index: int, value: str, sep: str = "\t") -> str:
    """Replace field ``index`` of physical line ``line_no``; returns the old value."""
    lines = path.read_text(encoding="utf-8").split("\n")
    fields = lines[line_no - 1].split(sep)
    old, fields[index] = fields[index], value
    lines[line_no - 1] = sep.join(fields)
    path.write_text("\n".join(lines), encoding="utf-8")
    return old
