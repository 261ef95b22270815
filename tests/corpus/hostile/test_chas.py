"""ChAS segments the warehouse cannot hold: a segment starting at base 0 (coordinates are 1-based)."""

from __future__ import annotations

import polars as pl

from .conftest import accounting, delivery_dir, import_centre
from .lab import data_lines, edit_field, rows_read


def test_a_segment_starting_at_base_zero_is_quarantined_naming_file_line_and_full_location(drop):
    folder = delivery_dir(drop, "molecular")
    path = sorted((folder / "chas").glob("*.segments.txt"))[0]
    header = path.read_text(encoding="utf-8-sig").splitlines()[0].split("\t")
    line = data_lines(path)[1]  # the first segment ([0] is the header)
    column = header.index("Full Location")
    location = path.read_text(encoding="utf-8").split("\n")[line - 1].split("\t")[column]
    edit_field(path, line, column, location.split(":")[0] + ":0-" + location.split("-")[-1])
    imported = import_centre(drop, "molecular")
    label = f"chas/{path.name}"
    asked = imported.validated.queries.filter(pl.col("file") == label, pl.col("row") == line,
                                              pl.col("field") == "Full Location")
    assert asked["severity"].to_list() == ["error"]
    assert imported.validated.quarantined["cn_segment"].filter(pl.col("source_file") == label,
                                                               pl.col("source_row") == line).height == 1
    assert {t: n for t, (n, _, _) in accounting(imported).items()} == rows_read(folder)
