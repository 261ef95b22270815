"""What every query list must satisfy against the rule registry (shared by the rule tests and the
hostile corpus, which checks it on every import it runs)."""

from __future__ import annotations

import polars as pl

from clms_etl import rules


def registry_breaches(queries: pl.DataFrame) -> list[str]:
    """Queries whose rule is not registered or whose severity is not the registry's, and repeated
    queries: one problem (the same rule on one canonical row, or on one cell of the centre's
    file) gives one query."""
    found = []
    known = rules.registry()
    for rule, severity in queries.select("rule", "severity").unique().iter_rows():
        if rule not in known:
            found.append(f"unregistered rule {rule!r}")
        elif severity != known[rule].severity:
            found.append(f"{rule}: severity {severity!r}, the registry says {known[rule].severity!r}")
    on_row = queries.filter(pl.col("row_id").is_not_null()).group_by("table_name", "row_id", "rule").len()
    found += [f"{n} queries {rule} on {table} row {row_id}" for table, row_id, rule, n in on_row.iter_rows() if n > 1]
    on_cell = queries.group_by("file", "sheet", "row", "field", "rule").len()
    found += [f"{n} queries {rule} on {file} [{sheet}] row {row} « {field} »"
              for file, sheet, row, field, rule, n in on_cell.iter_rows() if n > 1]
    return found
