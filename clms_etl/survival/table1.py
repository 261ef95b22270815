"""Table 1 of the study: characteristics of all included patients, from ``analytics.patient_summary``.

Conventions, as in the published table (``clms_paper.json`` ``table1``):

* counts with the percentage of all included patients; tumour size classes as a percentage of
  the patients with a known size (the paper's footnote);
* "not specified" (``ns``) rows count the patients whose value is unknown; clinical signs the
  paper lists without an ``ns`` row (immunosuppression, pain, occurrence on a scar, histological
  ulceration) count an unrecorded sign as absent, as the charts were abstracted (a sign not
  mentioned was not present) — but only in a centre that records the sign: where a centre
  records nothing for it (no patient with a known value), "absent" would be a finding made up,
  so its patients are counted in a "not recorded" row (:data:`NOT_RECORDED`);
* a statistic with no known value is stored null and shown "not recorded";
* medians and quartiles with R's default quantile (type 7, linear interpolation); means with the
  sample standard deviation (n - 1);
* mitotic index classes from the count per 10 HPF (else the recorded class); a count recorded as
  an upper bound (``< N``) is classed only when ``N <= 9``.

The key of every item is the key used in ``clms_paper.json``, so the table can be checked count
for count against the publication.
"""

from __future__ import annotations

from dataclasses import dataclass

from collections.abc import Iterable

import polars as pl

NOT_RECORDED = "not_recorded"
NOT_RECORDED_LABEL = "Not recorded (the centre does not record it)"
NO_KNOWN_VALUE = "not recorded"  # display of a statistic with no known value
STATISTIC_LABELS = {"median": "Median", "q1": "First quartile", "q3": "Third quartile", "mean": "Mean",
                    "sd": "Standard deviation", "min": "Minimum", "max": "Maximum", "n_known": "Known in"}


@dataclass(frozen=True)
class Counts:
    """Count rows: (item, label, condition) per category; unknown values in ``ns`` or in ``absent_item``."""

    categories: tuple[tuple[str, str, pl.Expr], ...]
    ns: str = "always"  # always / if_any / never (unrecorded counted in absent_item)
    absent_item: str | None = None
    known_denominator: bool = False  # percentages of the patients with a known value


@dataclass(frozen=True)
class Statistics:
    column: str
    statistics: tuple[str, ...]
    decimals: int = 1


@dataclass(frozen=True)
class Variable:
    key: str
    label: str
    parts: tuple[Counts | Statistics, ...]
    layout: str = ""  # display: 'median_iqr', 'mean_sd', 'mean_range' (combined statistic rows)


def _c(column: str, value) -> pl.Expr:
    return pl.col(column) == value


def _mitosis_class() -> pl.Expr:
    count = pl.col("mitoses_per_10hpf")
    bound = pl.col("mitoses_is_upper_bound").fill_null(False)
    recorded = pl.col("mitosis_class")
    return (
        pl.when(count.is_not_null() & bound & (count > 9)).then(None)
        .when(count.is_not_null() & (count <= 9)).then(pl.lit("le_9"))
        .when(count.is_not_null() & (count <= 19)).then(pl.lit("10_to_19"))
        .when(count.is_not_null()).then(pl.lit("gt_19"))
        .when(recorded == "0-9").then(pl.lit("le_9"))
        .when(recorded == "10-19").then(pl.lit("10_to_19"))
        .when(recorded == ">=20").then(pl.lit("gt_19"))
    )


VARIABLES: tuple[Variable, ...] = (
    Variable("age_years", "Age at diagnosis, years",
             (Statistics("age_at_diagnosis_years", ("median", "q1", "q3", "mean", "sd")),), "median_iqr+mean_sd"),
    Variable("sex", "Sex", (Counts((("male", "Male", _c("sex", "male")), ("female", "Female", _c("sex", "female"))),
                                   ns="if_any"),)),
    Variable("immunosuppression", "Immunosuppression",
             (Counts((("yes", "Yes", _c("immunosuppression", True)), ("no", "No", _c("immunosuppression", False))),
                     ns="never", absent_item="no"),)),
    Variable("primary_site", "Primary site", (Counts((
        ("head_neck", "Head and neck", _c("site", "head_neck")), ("trunk", "Trunk", _c("site", "trunk")),
        ("upper_limb_shoulder", "Upper limb (shoulder included)", _c("site", "upper_limb")),
        ("lower_limb_hip", "Lower limb (hip included)", _c("site", "lower_limb")))),)),
    Variable("clinical_presentation", "Clinical presentation", (Counts((
        ("nodular", "Nodular", _c("presentation", "nodular")), ("ulcerated", "Ulcerated", _c("presentation", "ulcerated")),
        ("vegetative", "Vegetative", _c("presentation", "vegetative")),
        ("infiltrated_patch", "Infiltrated patch", _c("presentation", "infiltrated_patch")))),)),
    Variable("pain", "Pain", (Counts((("present", "Present", _c("pain", True)), ("absent", "Absent", _c("pain", False))),
                                     ns="never", absent_item="absent"),)),
    Variable("occurred_on_scar", "Occurred on a scar",
             (Counts((("present", "Present", _c("on_scar", True)), ("absent", "Absent", _c("on_scar", False))),
                     ns="never", absent_item="absent"),)),
    Variable("tumour_size_cm", "Tumour size, cm", (
        Statistics("size_cm", ("mean", "min", "max"), decimals=2),
        Counts((("lt_1", "< 1 cm", pl.col("size_cm") < 1),
                ("1_to_2_9", "1-2.9 cm", (pl.col("size_cm") >= 1) & (pl.col("size_cm") < 3)),
                ("ge_3", ">= 3 cm", pl.col("size_cm") >= 3)), known_denominator=True)), "mean_range"),
    Variable("consultation_delay_months", "Delay to first consultation, months",
             (Statistics("consultation_delay_months", ("mean", "min", "max", "n_known")),), "mean_range"),
    Variable("fnclcc_grade", "FNCLCC grade", (Counts((
        ("I", "I", _c("fnclcc_grade", 1)), ("II", "II", _c("fnclcc_grade", 2)), ("III", "III", _c("fnclcc_grade", 3)))),)),
    Variable("histological_ulceration", "Histological ulceration",
             (Counts((("no", "No", _c("histological_ulceration", False)),
                      ("yes", "Yes", _c("histological_ulceration", True))), ns="never", absent_item="no"),)),
    Variable("invasion", "Invasion", (Counts((
        ("dermal", "Dermal", _c("invasion", "dermal")),
        ("dermo_hypodermal", "Dermal and hypodermal", _c("invasion", "dermo_hypodermal")))),)),
    Variable("mitotic_index_per_10hpf", "Mitotic index, per 10 HPF", (
        Counts((("le_9", "<= 9", _c("mitosis_class_t1", "le_9")), ("10_to_19", "10-19", _c("mitosis_class_t1", "10_to_19")),
                ("gt_19", "> 19", _c("mitosis_class_t1", "gt_19")))),
        Statistics("mitoses_per_10hpf", ("mean", "sd"))), "mean_sd"),
    Variable("necrosis", "Necrosis", (Counts((
        ("present", "Present", _c("necrosis_present", True)), ("absent", "Absent", _c("necrosis_present", False)))),)),
    Variable("differentiation", "Differentiation", (Counts((
        ("well", "Well", _c("differentiation_score", 1)), ("moderate", "Moderate", _c("differentiation_score", 2)),
        ("poor", "Poor", _c("differentiation_score", 3)))),)),
    Variable("ki67_percent", "Ki67, %", (
        Statistics("ki67_percent", ("median", "q1", "q3", "mean", "sd")),
        Counts((("le_10", "<= 10 %", pl.col("ki67_percent") <= 10), ("gt_10", "> 10 %", pl.col("ki67_percent") > 10)))),
        "median_iqr+mean_sd"),
    Variable("resection_status", "Resection of the primary excision", (Counts((
        ("R0", "R0", _c("resection_status", "R0")),
        ("R1_R2", "R1/R2", pl.col("resection_status").is_in(["R1", "R2"])))),)),
)

OPTIONAL_COLUMNS = {"consultation_delay_months": pl.Float64, "mitosis_class": pl.String,
                    "mitoses_is_upper_bound": pl.Boolean}


def _prepare(patients: pl.DataFrame) -> pl.DataFrame:
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in OPTIONAL_COLUMNS.items() if c not in patients.columns]
    return patients.with_columns(missing).with_columns(mitosis_class_t1=_mitosis_class())


def _fmt(value: float | None, decimals: int, known: int = 1) -> str:
    if value is None:
        return NO_KNOWN_VALUE if not known else "-"
    return f"{value:.{decimals}f}"


def _known(part: Counts | Statistics) -> pl.Expr:
    """Per patient: the part has a known value."""
    if isinstance(part, Statistics):
        return pl.col(part.column).is_not_null()
    return pl.any_horizontal([cond.fill_null(False) for _, _, cond in part.categories])


def _centres_recording(p: pl.DataFrame, known: pl.Expr) -> pl.Expr:
    """Per patient: the patient's centre has a known value for at least one of its patients."""
    if "centre" not in p.columns:
        return pl.lit(True)
    return known.any().over("centre")


def unrecorded_items(patients: pl.DataFrame | Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Which centre records nothing for which Table 1 characteristic: (centre, variable, label, patients).

    A centre does not record a characteristic when none of its patients has a known value for it
    (the report lists them, so that a blank is read as "not collected here", not as a finding).
    ``patients``: one frame, or blocks of the patients (each read, counted and dropped in turn).
    """
    schema = {"centre": pl.String, "variable": pl.String, "variable_label": pl.String, "patients": pl.Int64}
    counted = [counts for block in ([patients] if isinstance(patients, pl.DataFrame) else patients)
               if (counts := _recorded_per_centre(block)) is not None]
    if not counted:
        return pl.DataFrame(schema=schema)
    per_centre = pl.concat(counted).group_by("centre").agg(pl.col("patients").sum(), pl.col("^recorded_.*$").any())
    rows = []
    for order, var in enumerate(VARIABLES):
        for r in per_centre.filter(~pl.col(f"recorded_{order}")).iter_rows(named=True):
            rows.append({"centre": r["centre"], "variable": var.key, "variable_label": var.label,
                         "patients": r["patients"], "order": order})
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows).sort("centre", "order").select(list(schema)).cast(schema)


def _recorded_per_centre(patients: pl.DataFrame) -> pl.DataFrame | None:
    """Per centre: its patients and, per characteristic, whether one of them has a known value (None: no
    patient, or no centre column)."""
    p = _prepare(patients)
    if p.is_empty() or "centre" not in p.columns:
        return None
    # every characteristic in one pass over the patients (a group-by per characteristic costs
    # a scan of the registry each)
    return p.group_by("centre").agg(
        pl.len().alias("patients"),
        *(pl.any_horizontal([_known(part) for part in var.parts]).any().alias(f"recorded_{order}")
          for order, var in enumerate(VARIABLES)))


def table1(patients: pl.DataFrame) -> pl.DataFrame:
    """Table 1 in long format (result table ``table1``) from one row per included patient."""
    p = _prepare(patients)
    total = p.height
    rows = [{"variable": "patients", "variable_label": "Patients", "item": "n", "item_label": "n", "kind": "count",
             "n": total, "denominator": total, "percent": 100.0 if total else None, "value": None,
             "display": str(total)}]
    for var in VARIABLES:
        for part in var.parts:
            if isinstance(part, Statistics):
                col = pl.col(part.column).cast(pl.Float64)
                exprs = {"median": col.median(), "q1": col.quantile(0.25, "linear"), "q3": col.quantile(0.75, "linear"),
                         "mean": col.mean(), "sd": col.std(ddof=1), "min": col.min(), "max": col.max(),
                         "n_known": col.count().cast(pl.Float64)}
                values = p.select(**{s: exprs[s] for s in part.statistics}, _known=col.count()).row(0, named=True)
                for stat in part.statistics:
                    v = values[stat]
                    rows.append({"variable": var.key, "variable_label": var.label, "item": stat,
                                 "item_label": STATISTIC_LABELS[stat], "kind": "statistic", "n": None,
                                 "denominator": None, "percent": None, "value": v,
                                 "display": str(int(v)) if stat == "n_known" and v is not None
                                 else _fmt(v, part.decimals, values["_known"])})
                continue
            counts = p.select(**{item: cond.fill_null(False).sum() for item, _, cond in part.categories}).row(0, named=True)
            known_expr = _known(part)
            matched = p.select(known_expr.sum()).item()
            unknown = total - matched
            not_recorded = 0
            if part.absent_item:
                # the paper's convention (unrecorded = absent) only where the centre records the sign
                not_recorded = p.select((~_centres_recording(p, known_expr)).sum()).item() if total else 0
                counts[part.absent_item] += unknown - not_recorded
            known = sum(counts.values()) if part.absent_item is None else total
            denominator = known if part.known_denominator else total
            items = [(item, label, counts[item]) for item, label, _ in part.categories]
            if part.ns == "always" or (part.ns == "if_any" and unknown):
                items.append(("ns", "Not specified", unknown))
            if not_recorded:
                items.append((NOT_RECORDED, NOT_RECORDED_LABEL, not_recorded))
            for item, label, n in items:
                pct = 100.0 * n / denominator if denominator and not (item == "ns" and part.known_denominator) else None
                rows.append({"variable": var.key, "variable_label": var.label, "item": item, "item_label": label,
                             "kind": "count", "n": n, "denominator": None if pct is None else denominator,
                             "percent": pct, "value": None,
                             "display": f"{n} ({pct:.1f} %)" if pct is not None else str(n)})
    frame = pl.DataFrame(rows, schema={
        "variable": pl.String, "variable_label": pl.String, "item": pl.String, "item_label": pl.String,
        "kind": pl.String, "n": pl.Int64, "denominator": pl.Int64, "percent": pl.Float64, "value": pl.Float64,
        "display": pl.String})
    return frame.with_row_index("row_order", offset=1).with_columns(pl.col("row_order").cast(pl.Int32))


def table1_layout(long: pl.DataFrame) -> tuple[pl.DataFrame, tuple[int, ...]]:
    """Table 1 as printed: a characteristic column (headings, then their items) and a value column,
    with each row's level (0: heading, 1: item) for the layout to indent (never leading spaces)."""
    layouts = {v.key: v.layout for v in VARIABLES}
    out: list[tuple[str, str, int]] = []
    n = long.filter(pl.col("variable") == "patients")["n"].item()
    out.append((f"Patients, n = {n}", "", 0))
    for var in VARIABLES:
        part = long.filter(pl.col("variable") == var.key)
        stats = {r["item"]: r["display"] for r in part.filter(pl.col("kind") == "statistic").iter_rows(named=True)}
        out.append((var.label, "", 0))
        layout = layouts[var.key]
        unrecorded = stats.get("mean") == NO_KNOWN_VALUE  # no patient with a known value: said once

        def shown(text: str) -> str:
            return NO_KNOWN_VALUE if unrecorded else text
        if "median_iqr" in layout:
            out.append(("Median [IQR]", shown(f"{stats['median']} [{stats['q1']}-{stats['q3']}]"), 1))
        if "mean_sd" in layout:
            out.append(("Mean ± SD", shown(f"{stats['mean']} ± {stats['sd']}"), 1))
        if layout == "mean_range":
            known = f", known in {stats['n_known']}" if "n_known" in stats else ""
            out.append((f"Mean (range){known}", shown(f"{stats['mean']} ({stats['min']}-{stats['max']})"), 1))
        for r in part.filter(pl.col("kind") == "count").iter_rows(named=True):
            out.append((r["item_label"], r["display"], 1))
    frame = pl.DataFrame([row[:2] for row in out], schema={"Characteristic": pl.String, "Value": pl.String},
                         orient="row")
    return frame, tuple(row[2] for row in out)


def table1_display(long: pl.DataFrame) -> pl.DataFrame:
    """Table 1 as printed, with a ``Level`` column (0: heading, 1: item) where a layout would indent."""
    frame, levels = table1_layout(long)
    return frame.with_columns(pl.Series("Level", levels, pl.Int8))
