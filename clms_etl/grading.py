"""FNCLCC grading (Trojani/Coindre), as tabulated in ``formats_and_rules.md`` §1.

grade = differentiation score (1-3) + mitotic score (1-3) + necrosis score (0-2);
total 2-3 -> grade 1, 4-5 -> grade 2, 6-8 -> grade 3. Zero mitoses still score 1.
"""

from __future__ import annotations

import polars as pl


def mitotic_score(mitoses_per_10hpf: int) -> int:
    """FNCLCC mitotic score of a count per 10 high-power fields: 0-9 -> 1, 10-19 -> 2, >= 20 -> 3."""
    if mitoses_per_10hpf < 0:
        raise ValueError("a mitotic count cannot be negative")
    if mitoses_per_10hpf <= 9:
        return 1
    if mitoses_per_10hpf <= 19:
        return 2
    return 3


def mitosis_class(mitoses_per_10hpf: int) -> str:
    """Recorded class ("0-9", "10-19", ">=20") matching a count; the classes are the score's bands."""
    return ("0-9", "10-19", ">=20")[mitotic_score(mitoses_per_10hpf) - 1]


def fnclcc_grade(differentiation_score: int, mitoses_per_10hpf: int, necrosis_score: int) -> int:
    """Grade (1, 2 or 3) computed from the three components."""
    total = differentiation_score + mitotic_score(mitoses_per_10hpf) + necrosis_score
    if total <= 3:
        return 1
    if total <= 5:
        return 2
    return 3


def fnclcc_grade_expr(
    differentiation: str = "differentiation_score",
    mitoses: str = "mitoses_per_10hpf",
    necrosis: str = "necrosis_score",
) -> pl.Expr:
    """Vectorised :func:`fnclcc_grade`: null wherever one component is unknown."""
    mit_score = (
        pl.when(pl.col(mitoses).is_null()).then(None)
        .when(pl.col(mitoses) <= 9).then(1).when(pl.col(mitoses) <= 19).then(2).otherwise(3)
    )
    total = pl.col(differentiation) + mit_score + pl.col(necrosis)
    return (
        pl.when(total.is_null())
        .then(None)
        .when(total <= 3)
        .then(1)
        .when(total <= 5)
        .then(2)
        .otherwise(3)
        .cast(pl.Int8)
    )
