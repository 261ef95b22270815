"""CSV files that Excel opens right.

Excel reads a CSV without a byte-order mark in the machine's ANSI code page, so UTF-8 text such
as "±", "≥" or "Nîmes" comes out garbled; with a BOM it reads UTF-8. R's ``readr``, pandas and
polars skip the BOM. A file that is pure ASCII is the same in every encoding and gets none.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl


def write_csv(frame: pl.DataFrame, path: Path, **options) -> Path:
    """``frame`` as comma-separated UTF-8 at ``path``, with a BOM when any header or value is not
    ASCII; ``options`` go to :meth:`polars.DataFrame.write_csv`."""
    text = frame.write_csv(**options)
    path.write_text(("\ufeff" if not text.isascii() else "") + text, encoding="utf-8", newline="")
    return path
