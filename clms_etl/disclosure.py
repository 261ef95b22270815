"""Statistical disclosure control of the exports: k-anonymity over the quasi-identifiers.

A patient is re-identifiable when few patients share what an outsider may know of them: the
**quasi-identifiers** sex, age (in :data:`AGE_BAND_YEARS`-year bands), year of diagnosis, primary
site and centre (:data:`QUASI_IDENTIFIERS`). Patients sharing all the quasi-identifiers present in
an export form an **equivalence class**; the export is *k*-anonymous when the smallest class holds
at least *k* patients.

Conventions (conservative, stated once):

* a missing value, original or suppressed, is a category of its own (not a wildcard matching
  every value, as sdcMicro's default counts it): suppression never makes a class look bigger
  than what an outsider can tell apart;
* ages of :data:`AGE_TOP_BAND_YEARS` and over are one band (``90+``): the oldest ages are rare;
* an export with no patient is trivially *k*-anonymous (nothing to disclose; the nightly refresh
  before the first delivery must succeed).

:func:`suppress_until_k` is local suppression as sdcMicro's ``localSuppression`` does it: the
quasi-identifiers are taken in order of *least* analytic importance; each pass blanks the current
one in the records of classes smaller than *k*, until every class reaches *k*. Records still in
small classes then have every quasi-identifier blank, so they form one class; when it is smaller
than *k*, the smallest other classes are blanked into it (complementary suppression) until it
reaches *k* — which always succeeds when the export holds at least *k* patients. What it blanked
is counted per quasi-identifier so that the export can say it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

QUASI_IDENTIFIERS = ("sex", "age_band", "diagnosis_year", "site", "centre")
AGE_BAND_YEARS = 10
AGE_TOP_BAND_YEARS = 90
DEFAULT_K_THRESHOLD = 5  # the usual minimum of data-protection guidance for shared microdata

BLOCKED_MESSAGE = (
    "{what} not written: k-anonymity {k} < threshold {threshold} over {quasi_identifiers} "
    "({below} of {records} patients in groups smaller than {threshold}, after suppressing {suppressed}). "
    "Sharing it could re-identify patients. Lower the threshold only with the data protection officer's "
    "agreement ({how})."
)


def age_band(age_years: pl.Expr) -> pl.Expr:
    """``"60-69"``-style bands of :data:`AGE_BAND_YEARS` years, ``"90+"`` at the top, null stays null."""
    low = (age_years.cast(pl.Int32) // AGE_BAND_YEARS) * AGE_BAND_YEARS
    return (pl.when(age_years.is_null()).then(None)
            .when(age_years >= AGE_TOP_BAND_YEARS).then(pl.lit(f"{AGE_TOP_BAND_YEARS}+"))
            .otherwise(low.cast(pl.String) + "-" + (low + AGE_BAND_YEARS - 1).cast(pl.String)))


def age_band_floor(age_years: pl.Expr) -> pl.Expr:
    """The lower bound of the age's band, in years (60 for 60-69, 90 for 90 and over)."""
    capped = pl.when(age_years >= AGE_TOP_BAND_YEARS).then(AGE_TOP_BAND_YEARS).otherwise(age_years.cast(pl.Int32))
    return capped // AGE_BAND_YEARS * AGE_BAND_YEARS  # null stays null


@dataclass(frozen=True)
class KAnonymity:
    """The smallest equivalence class of an export and what it took to get there."""

    quasi_identifiers: tuple[str, ...]
    k: int  # size of the smallest class (0: no record)
    classes: int
    records: int
    threshold: int
    records_below: int  # records in classes smaller than the threshold
    suppressed: dict[str, int] = field(default_factory=dict)  # values blanked per quasi-identifier

    @property
    def passes(self) -> bool:
        return self.records == 0 or self.k >= self.threshold

    def suppressed_text(self) -> str:
        done = {q: n for q, n in self.suppressed.items() if n}
        return ", ".join(f"{n} {q}" for q, n in done.items()) + " values" if done else "no value"

    def summary(self) -> str:
        """One sentence for a codebook."""
        if self.records == 0:
            return "no patient: nothing to disclose."
        return (f"smallest group k = {self.k} patients (threshold {self.threshold}) over "
                f"{', '.join(self.quasi_identifiers) or 'no quasi-identifier'}; {self.classes} groups of "
                f"{self.records} patients, {self.records_below} patients in groups smaller than {self.threshold}; "
                f"suppressed: {self.suppressed_text()}.")

    def metadata(self) -> dict[str, object]:
        """Flat values for run metadata (no patient-level content)."""
        return {
            "k_anonymity/smallest_group": self.k, "k_anonymity/threshold": self.threshold,
            "k_anonymity/quasi_identifiers": ", ".join(self.quasi_identifiers),
            "k_anonymity/groups": self.classes, "k_anonymity/patients": self.records,
            "k_anonymity/patients_below_threshold": self.records_below,
            "k_anonymity/suppressed_values": sum(self.suppressed.values()),
        }


class DisclosureBlocked(Exception):
    """A shareable export whose smallest group is below the threshold: nothing was written."""

    def __init__(self, what: str, result: KAnonymity, how: str):
        self.result = result
        super().__init__(BLOCKED_MESSAGE.format(
            what=what, k=result.k, threshold=result.threshold, records=result.records,
            quasi_identifiers=", ".join(result.quasi_identifiers), below=result.records_below,
            suppressed=result.suppressed_text(), how=how))


def present(frame: pl.DataFrame, quasi_identifiers: Sequence[str] = QUASI_IDENTIFIERS) -> tuple[str, ...]:
    """The quasi-identifiers that are columns of ``frame``, in the given order."""
    return tuple(q for q in quasi_identifiers if q in frame.columns)


def _class_size(quasi_identifiers: Sequence[str]) -> pl.Expr:
    if not quasi_identifiers:
        return pl.len().cast(pl.Int64)
    # a struct of the values keeps nulls as a category of their own
    return pl.len().over(pl.struct(*quasi_identifiers)).cast(pl.Int64)


def equivalence_classes(frame: pl.DataFrame, quasi_identifiers: Sequence[str]) -> pl.DataFrame:
    """One row per combination of the quasi-identifiers present in ``frame``, with its ``size``."""
    qis = list(present(frame, quasi_identifiers))
    if not qis:
        return pl.DataFrame({"size": [frame.height]} if frame.height else {"size": []},
                            schema={"size": pl.Int64})
    return (frame.group_by(qis, maintain_order=True).agg(pl.len().cast(pl.Int64).alias("size"))
            .sort("size", *qis, nulls_last=True))


def k_anonymity(frame: pl.DataFrame, quasi_identifiers: Sequence[str], threshold: int = DEFAULT_K_THRESHOLD,
                suppressed: dict[str, int] | None = None) -> KAnonymity:
    """k (smallest class size) of ``frame`` (one row per patient) over the quasi-identifiers present."""
    qis = present(frame, quasi_identifiers)
    classes = equivalence_classes(frame, qis)
    sizes = classes["size"]
    return KAnonymity(
        quasi_identifiers=qis, k=int(sizes.min()) if frame.height else 0, classes=classes.height,
        records=frame.height, threshold=threshold,
        records_below=int(sizes.filter(sizes < threshold).sum()) if frame.height else 0,
        suppressed=dict(suppressed or {q: 0 for q in qis}))


def suppress_until_k(frame: pl.DataFrame, suppression_order: Sequence[str],
                     threshold: int = DEFAULT_K_THRESHOLD) -> tuple[pl.DataFrame, KAnonymity]:
    """Local suppression: blank the quasi-identifiers, least important first (``suppression_order``),
    in the records of classes smaller than ``threshold``, until every class reaches it or nothing is
    left to blank. Returns the frame and its :class:`KAnonymity` (which may still fail: the caller
    blocks)."""
    qis = present(frame, suppression_order)
    suppressed = {q: 0 for q in qis}

    def blank(rows: pl.Series, columns: Sequence[str]) -> pl.DataFrame:
        for qi in columns:
            suppressed[qi] += int(frame.select(pl.lit(rows) & pl.col(qi).is_not_null()).to_series().sum())
        return frame.with_columns(*[pl.when(pl.lit(rows)).then(None).otherwise(pl.col(q)).alias(q) for q in columns])

    for qi in qis:
        small = frame.select(_class_size(qis) < threshold).to_series()
        if not small.any():
            break
        frame = blank(small, [qi])
    # complementary suppression: the all-blank class is too small; blank the smallest other classes into it
    all_blank = pl.all_horizontal([pl.col(q).is_null() for q in qis]) if qis else pl.lit(True)
    while qis and frame.height >= threshold:
        sizes = frame.with_row_index("_row").with_columns(_class_size(qis).alias("_size"), all_blank.alias("_blank"))
        if sizes.filter(pl.col("_size") < threshold).is_empty():
            break
        smallest = (sizes.filter(~pl.col("_blank")).sort("_size", *qis, nulls_last=True).head(1)
                    .select(*qis).join(sizes, on=qis, nulls_equal=True))
        frame = blank(sizes["_row"].is_in(smallest["_row"].implode()), qis)
    return frame, k_anonymity(frame, qis, threshold, suppressed)
