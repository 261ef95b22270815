"""Validation of the canonical clinical tables: the rules that decide what the warehouse trusts.

Three pieces, declared to :func:`clms_etl.validate.validate` when this module is imported
(:func:`~clms_etl.validate.declare_ruleset`: the library never imports ``validations``):

* :data:`RULES`: every rule id validation checks, with the table(s) it concerns and why it
  exists. Its severity and the French message a centre's data manager reads are the rule
  registry's (:mod:`clms_etl.rules`, ``clms_etl/data/rules.toml``): pandera checks all "fail"
  alike; the severity of a failure is looked up there.
* :func:`add_context`: the canonical frames plus ``ctx_*`` columns that bring what a row is
  compared with from elsewhere (the patient's diagnosis date, last news, death, the delivery
  date, whether the row duplicates an earlier one), and the tumour's computed FNCLCC grade.
* :data:`SCHEMAS`: one pandera polars ``DataFrameSchema`` per table, run on those frames.
  Checks are named by their ``error``: ``"<rule>"`` on a column check (pandera reports the
  column), ``"<rule>@<field>"`` on a dataframe-level check (the field the query points at;
  empty for a whole-row rule).

Time-order rules come in pairs: ``<rule>`` (ERROR) when the dates are contradictory beyond
doubt, ``<rule>_imprecise`` (WARNING) when one of the two dates was imputed from a partial
date and the contradiction fits inside that date's uncertainty (31 days for a month, 366 for
a year): the chart may well be right, the centre only has to make the date precise.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import pandera.polars as pa
import polars as pl

from clms_etl import contract, model, vocabulary
from clms_etl.grading import fnclcc_grade_expr
from clms_etl.validate import Ruleset, declare_ruleset

CLINICAL = ("patient", "tumour", "surgery", "event")
CHILDREN = ("tumour", "surgery", "event")

# Code lists and ranges are the contract's (clms_etl/data/contract.toml); what is decided here is
# which rule a value outside them raises.
AGE_ADULT_YEARS = 18  # below: a warning (age_under_18), not a range
# Uncertainty of a date imputed from a partial one (dates.py imputes mid-month / 1 July).
PRECISION_TOLERANCE_DAYS = {"month": 31, "year": 366}


class Rule(NamedTuple):
    """Where a validation rule is checked and why; its severity, messages and category are the
    rule registry's (:mod:`clms_etl.rules`), like every other rule's."""

    table: tuple[str, ...]  # canonical table(s) whose rows the rule is checked on
    description: str  # why the rule exists (for developers and validations/README.md)


RULES: dict[str, Rule] = {
    # --- any table --------------------------------------------------------------------------
    "required_value_missing": Rule(
        ("patient", "tumour", "surgery", "event"),
        "A row without its patient pseudonym (or an event without its kind) cannot be attached or used."),
    "code_not_in_vocabulary": Rule(
        ("patient", "tumour", "surgery", "event"),
        "Coded columns take only the canonical values of clms_etl/vocabulary.py."),
    "score_not_in_set": Rule(
        ("tumour",),
        "FNCLCC grade, differentiation and necrosis scores only exist as 1-3, 1-3 and 0-2."),
    "duplicate_row": Rule(
        ("patient", "tumour", "surgery", "event"),
        "An exact copy of an earlier row (provenance and numbering aside) would be counted twice; "
        "the first copy is kept, the later ones quarantined."),
    "date_in_future": Rule(
        ("patient", "surgery", "event"),
        "No date can be later than the delivery itself."),
    "date_in_future_imprecise": Rule(
        ("patient", "surgery", "event"),
        "As date_in_future, but within the uncertainty of a partial (imputed) date."),
    "orphan_row": Rule(
        CHILDREN,
        "A tumour, operation or event whose patient is not in the delivery cannot be attached."),
    "parent_quarantined": Rule(
        CHILDREN,
        "When the patient row is quarantined its tumour, operations and events are too: they "
        "cannot be interpreted without it. One query per cascaded row."),
    # --- patient ----------------------------------------------------------------------------
    "diagnosis_date_missing": Rule(
        ("patient",),
        "The diagnosis is the time origin of every endpoint: without it nothing can be timed."),
    "birth_after_diagnosis": Rule(
        ("patient",),
        "A negative age at diagnosis means the birth date is after the diagnosis."),
    "age_out_of_range": Rule(
        ("patient",),
        "An age above 120 years is a wrong birth or diagnosis date."),
    "age_under_18": Rule(
        ("patient",),
        "cLMS in a child is possible but exceptional: the centre confirms it."),
    "patient_rows_conflict": Rule(
        ("patient",),
        "Several different rows for one pseudonym: which one is right is the centre's call, so "
        "none is loaded."),
    "vital_status_inconsistent": Rule(
        ("patient",),
        "The vital status contradicts the events: dead without a death event, or alive/lost with one."),
    # --- tumour -----------------------------------------------------------------------------
    "size_out_of_range": Rule(
        ("tumour",),
        "Cutaneous LMS measure millimetres to a few centimetres: 0 < size <= 30 cm."),
    "delay_out_of_range": Rule(
        ("tumour",),
        "A delay before the first consultation is between 0 and 600 months (50 years)."),
    "ki67_out_of_range": Rule(
        ("tumour",),
        "Ki67 is a percentage of nuclei: 0-100."),
    "mitoses_negative": Rule(
        ("tumour",),
        "A mitotic count cannot be negative."),
    "mitoses_implausible": Rule(
        ("tumour",),
        "200 or more mitoses per 10 HPF is not a cLMS count (likely per mm² or a typo)."),
    "mitoses_class_mismatch": Rule(
        ("tumour",),
        "The recorded mitosis class contradicts the count; the count is kept and used for grading."),
    "grade_inconsistent": Rule(
        ("tumour",),
        "The recorded FNCLCC grade differs from the one computed from its three components; "
        "the recorded grade is kept, the row flagged (grade_check = inconsistent)."),
    # --- surgery ----------------------------------------------------------------------------
    "margin_negative": Rule(
        ("surgery",),
        "A margin is a distance: never negative."),
    "margin_out_of_range": Rule(
        ("surgery",),
        "Margins above 5 cm are not done for cLMS: usually a mm/cm confusion."),
    "histological_exceeds_clinical": Rule(
        ("surgery",),
        "The histological margin is measured on the specimen cut with the clinical margin: it "
        "cannot be wider."),
    "surgery_date_missing": Rule(
        ("surgery",),
        "An undated operation keeps its margins and status but cannot be placed in the follow-up."),
    "surgery_before_diagnosis": Rule(
        ("surgery",),
        "Diagnosis (the time origin) precedes or equals every operation."),
    "surgery_before_diagnosis_imprecise": Rule(
        ("surgery",),
        "As surgery_before_diagnosis, within the uncertainty of a partial date."),
    "surgery_after_last_news": Rule(
        ("surgery",),
        "An operation is a contact: it cannot be after the last news."),
    "surgery_after_last_news_imprecise": Rule(
        ("surgery",),
        "As surgery_after_last_news, within the uncertainty of a partial date."),
    "surgery_after_death": Rule(
        ("surgery",),
        "No operation after death."),
    "surgery_after_death_imprecise": Rule(
        ("surgery",),
        "As surgery_after_death, within the uncertainty of a partial date."),
    # --- event ------------------------------------------------------------------------------
    "event_date_missing": Rule(
        ("event",),
        "An undated event cannot enter any survival endpoint."),
    "event_before_diagnosis": Rule(
        ("event",),
        "Diagnosis (the time origin) precedes or equals every event."),
    "event_before_diagnosis_imprecise": Rule(
        ("event",),
        "As event_before_diagnosis, within the uncertainty of a partial date."),
    "event_after_last_news": Rule(
        ("event",),
        "The last news closes the follow-up: every other event is on or before it."),
    "event_after_last_news_imprecise": Rule(
        ("event",),
        "As event_after_last_news, within the uncertainty of a partial date."),
    "event_after_death": Rule(
        ("event",),
        "Death is the last event."),
    "event_after_death_imprecise": Rule(
        ("event",),
        "As event_after_death, within the uncertainty of a partial date."),
    "multiple_deaths": Rule(
        ("event",),
        "Different death records for one patient: which is right is the centre's call."),
    "metastasis_without_site": Rule(
        ("event",),
        "A metastasis is recorded with its site (one row per site): without it the pattern of "
        "spread, a main question of the registry, is lost."),
    "metastasis_site_without_metastasis": Rule(
        ("event",),
        "A metastatic site only belongs on a metastasis event."),
    "death_cause_without_death": Rule(
        ("event",),
        "A death cause only belongs on a death event."),
}

# The laboratory's tables: a segment, variant or fusion is loaded only with an accepted manifest
# case of its sample (the warehouse refuses a child without its parent, and would refuse the whole
# laboratory delivery). The cascade is done by :func:`clms_etl.validate.validate`.
SAMPLE_CHILDREN = ("cn_segment", "variant", "fusion")
SAMPLE_RULES: dict[str, Rule] = {
    "sample_quarantined": Rule(
        SAMPLE_CHILDREN,
        "When a manifest row is quarantined, the segments, variants and fusions of its sample are too: "
        "without their case they belong to no patient. One query per cascaded row."),
    "sample_not_in_manifest": Rule(
        SAMPLE_CHILDREN,
        "A segment, variant or fusion whose sample is not a usable case of the manifest (no row, or an "
        "unusable sample id) cannot be attached to any patient."),
}

# The rule a code outside its list raises (default: code_not_in_vocabulary), and the rules a
# value below / above its declared range raises, per canonical column.
CODE_RULES = {"fnclcc_grade": "score_not_in_set", "differentiation_score": "score_not_in_set",
              "necrosis_score": "score_not_in_set"}
RANGE_RULES: dict[str, tuple[str, str]] = {
    "age_at_diagnosis_years": ("birth_after_diagnosis", "age_out_of_range"),
    "size_cm": ("size_out_of_range", "size_out_of_range"),
    "consultation_delay_months": ("delay_out_of_range", "delay_out_of_range"),
    "ki67_percent": ("ki67_out_of_range", "ki67_out_of_range"),
    "mitoses_per_10hpf": ("mitoses_negative", "mitoses_implausible"),
    "proposed_margin_cm": ("margin_negative", "margin_out_of_range"),
    "clinical_margin_cm": ("margin_negative", "margin_out_of_range"),
    "histological_margin_cm": ("margin_negative", "margin_out_of_range"),
}

# Columns validation fills in; a reader may leave them out.
FILLED_BY_VALIDATION = {"tumour": ("fnclcc_grade_computed", "grade_check")}
# Numbering a reader gives rows: two rows differing only there are still duplicates (the
# database's checks guard their ranges: a wrong number is a reader bug, not the chart's).
_NUMBERING = {"surgery_no", "event_no"}


# --- FNCLCC grade ------------------------------------------------------------------------------

_CLASS_LOW = {"0-9": 0, "10-19": 10, ">=20": 20}
_CLASS_HIGH = {"0-9": 9, "10-19": 19, ">=20": None}


def with_grade(tumour: pl.DataFrame) -> pl.DataFrame:
    """Fill ``fnclcc_grade_computed`` and ``grade_check``.

    The mitotic score comes from the count, or from the recorded class when the count is
    missing (the classes are the score's bands). A count written "< N" fixes the score only
    when every value below N scores 1 (N <= 10). Components outside their sets are unknown.
    """
    count = pl.col("mitoses_per_10hpf")
    upper = pl.col("mitoses_is_upper_bound").fill_null(False)
    klass = _class_bound(_CLASS_LOW)
    mitoses = (
        pl.when(count.is_null()).then(klass)
        .when(count < 0).then(None)
        .when(upper & (count > 10)).then(None)
        .when(upper).then(0)
        .otherwise(count)
    )
    diff = pl.col("differentiation_score")
    necrosis = pl.col("necrosis_score")
    # grading.fnclcc_grade_expr scores a null count as 3 (its when/otherwise): guard it here.
    computed = pl.when(pl.col("_mitoses").is_not_null()).then(fnclcc_grade_expr("_diff", "_mitoses", "_necrosis"))
    grade = pl.col("fnclcc_grade")
    return (
        tumour.with_columns(
            _diff=pl.when(diff.is_in(vocabulary.DIFFERENTIATION_SCORES)).then(diff),
            _mitoses=mitoses,
            _necrosis=pl.when(necrosis.is_in(vocabulary.NECROSIS_SCORES)).then(necrosis),
        )
        .with_columns(fnclcc_grade_computed=computed)
        .with_columns(
            grade_check=pl.when(grade.is_null()).then(None)
            .when(pl.col("fnclcc_grade_computed").is_null()).then(pl.lit("unverifiable"))
            .when(grade == pl.col("fnclcc_grade_computed")).then(pl.lit("consistent"))
            .otherwise(pl.lit("inconsistent"))
        )
        .drop("_diff", "_mitoses", "_necrosis")
    )


def _class_bound(bounds: dict[str, int | None]) -> pl.Expr:
    """The mitosis class's bound (null: none, or not a class), as ``replace_strict(bounds,
    default=None)`` gives it: when/then, a few times cheaper on a string column (see _days_of)."""
    bound = pl.lit(None, dtype=pl.Int32)
    for name, value in reversed(bounds.items()):
        bound = pl.when(pl.col("mitosis_class") == name).then(pl.lit(value, dtype=pl.Int32)).otherwise(bound)
    return bound


def _class_mismatch() -> pl.Expr:
    """True where the recorded class cannot hold the count (a "< N" bound holds any class it reaches)."""
    count = pl.col("mitoses_per_10hpf")
    low, high = _class_bound(_CLASS_LOW), _class_bound(_CLASS_HIGH)
    exact = (count >= low) & ((count <= high) | high.is_null())
    bounded = (low == 0) | (low < count)
    ok = pl.when(pl.col("mitoses_is_upper_bound").fill_null(False)).then(bounded).otherwise(exact)
    return ~ok


# --- context -----------------------------------------------------------------------------------

def add_context(frames: dict[str, pl.DataFrame], delivery_date: dt.date) -> dict[str, pl.DataFrame]:
    """Validation frames of the clinical tables present: canonical columns (tumour grade filled)
    plus the ``ctx_*`` columns the schemas compare with. Row order is the input's."""
    patient = frames.get("patient", model.empty("patient"))
    event = frames.get("event", model.empty("event"))
    # each patient's first row (a delivery has one row per patient: the group_by is spared)
    patients = patient.filter(pl.col("patient_id").is_not_null()).select(
        "patient_id", ctx_diagnosis_date="diagnosis_date", ctx_diagnosis_date_precision="diagnosis_date_precision")
    one_row_each = patients["patient_id"].is_unique().all()
    if not one_row_each:
        patients = patients.group_by("patient_id", maintain_order=True).agg(pl.all().first())
    patients = patients.with_columns(ctx_patient_known=pl.lit(True))
    # Last news and death are the references other dates are compared with; one dated before
    # the diagnosis (beyond imputation) is itself the error and must not condemn the others.
    before_diagnosis = (pl.col("ctx_diagnosis_date") - pl.col("event_date")).dt.total_days() > _tolerance(
        "event_date_precision", "ctx_diagnosis_date_precision")
    references = (
        event.filter(pl.col("event_date").is_not_null() & pl.col("event_kind").is_in(["last_news", "death"]))
        .join(patients, on="patient_id", how="inner")
        .filter(~before_diagnosis.fill_null(False))
        .sort("event_date")
    )
    news = references.filter(pl.col("event_kind") == "last_news").group_by("patient_id").agg(
        pl.col("event_date").last().alias("ctx_last_news_date"),
        pl.col("event_date_precision").last().alias("ctx_last_news_date_precision"),
    )
    death = references.filter(pl.col("event_kind") == "death").group_by("patient_id").agg(
        pl.col("event_date").first().alias("ctx_death_date"),
        pl.col("event_date_precision").first().alias("ctx_death_date_precision"),
    )
    deaths = event.filter((pl.col("event_kind") == "death") & pl.col("patient_id").is_not_null()).group_by(
        "patient_id").agg(pl.struct("event_date", "death_cause").n_unique().cast(pl.Int32).alias("ctx_death_count"))
    follow_up = patients.join(news, on="patient_id", how="left").join(death, on="patient_id", how="left").join(
        deaths, on="patient_id", how="left")

    out: dict[str, pl.DataFrame] = {}
    for table in CLINICAL:
        if table not in frames:
            continue
        frame = _with_duplicates(table, frames[table])
        frame = frame.with_columns(ctx_delivery_date=pl.lit(delivery_date, dtype=pl.Date))
        if table == "patient":
            dead = pl.col("patient_id").is_in(deaths["patient_id"].implode())
            frame = frame.with_columns(ctx_has_death=dead.fill_null(False))
            # (a patient on one row is no copy of another: one distinct row, without the window)
            distinct = pl.lit(1) if one_row_each else pl.col("ctx_is_duplicate").not_().sum().over("patient_id")
            frame = frame.with_columns(
                ctx_patient_rows=pl.when(pl.col("patient_id").is_not_null()).then(distinct).cast(pl.Int32)
            )
        elif table == "tumour":  # (a look-up, not a join: the only column it needs)
            frame = with_grade(frame.with_columns(ctx_patient_known=pl.col("patient_id").is_in(
                patients["patient_id"].implode()).fill_null(False)))
        else:
            frame = _join(frame, follow_up).with_columns(pl.col("ctx_patient_known").fill_null(False))
        out[table] = frame
    return out


def _join(frame: pl.DataFrame, per_patient: pl.DataFrame) -> pl.DataFrame:
    return frame.join(per_patient, on="patient_id", how="left", maintain_order="left")


def _with_duplicates(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """``ctx_is_duplicate``: same content as an earlier row; ``ctx_duplicate_of_row``: its source row."""
    columns = _content_columns(table)
    if "patient_id" not in columns:
        return _duplicates_whole(frame, columns)
    if frame["patient_id"].n_unique() == frame.height:
        # one row per patient (n_unique counts null as a value: two null rows fall through): no
        # row can repeat another, and hashing every row whole is spared
        return frame.with_columns(ctx_is_duplicate=pl.lit(False), ctx_duplicate_of_row=pl.lit(None, dtype=pl.Int64))
    # Equal rows have the same patient: only the rows of a patient with several rows are compared
    # whole (hashing every row whole is costly); each other row is its own first (as in
    # :func:`_duplicates_whole`, the reference this must equal).
    shared = frame["patient_id"].is_duplicated()
    where = shared.arg_true()
    rows = _duplicates_whole(frame.filter(shared).select(*columns, "source_row"), columns)
    duplicate = pl.Series("ctx_is_duplicate", [False] * frame.height, dtype=pl.Boolean).scatter(
        where, rows["ctx_is_duplicate"])
    if not duplicate.any():
        return frame.with_columns(duplicate, ctx_duplicate_of_row=pl.lit(None, dtype=pl.Int64))
    return frame.with_columns(duplicate, frame["source_row"].cast(pl.Int64).scatter(where, rows["ctx_duplicate_of_row"])
                              .alias("ctx_duplicate_of_row"))


def _content_columns(table: str) -> list[str]:
    """The columns two rows repeating each other share: all but provenance, numbering, computed."""
    skip = set(model.PROVENANCE) | _NUMBERING | set(FILLED_BY_VALIDATION.get(table, ()))
    return [c for c in model.TABLES[table] if c not in skip]


def _duplicates_whole(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """:func:`_with_duplicates` comparing every row whole."""
    key = pl.struct(columns)
    frame = frame.with_columns(ctx_is_duplicate=key.is_first_distinct().not_())
    # Grouping every row by its whole content is costly; only needed when a duplicate exists.
    first = pl.col("source_row").first().over(key) if frame["ctx_is_duplicate"].any() else None
    return frame.with_columns(ctx_duplicate_of_row=pl.lit(None, dtype=pl.Int64) if first is None else first)


# --- schemas -----------------------------------------------------------------------------------

def _expr_check(rule: str, ok: pl.Expr) -> pa.Check:
    """A check on a column that may read other columns of the row; null = nothing to check."""
    return pa.Check(lambda data, ok=ok: data.lazyframe.select(ok.fill_null(True)), error=rule)


def _wide(rule: str, field: str | None, ok: pl.Expr) -> pa.Check:
    """A dataframe-level check; the query will point at ``field`` (None: the whole row)."""
    return pa.Check(lambda data, ok=ok: data.lazyframe.select(ok.fill_null(True)), error=f"{rule}@{field or ''}")


def _required(rule: str = "required_value_missing") -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(pl.col(data.key).is_not_null()), error=rule)


def _contract_checks(table: str, column: contract.Column) -> list[pa.Check]:
    """The column's code list and range as checks, each failing under the rule decided above."""
    if column.name in _NUMBERING or column.name in FILLED_BY_VALIDATION.get(table, ()):
        return []
    checks = []
    if column.allowed:
        checks.append(pa.Check.isin(list(column.allowed), error=CODE_RULES.get(column.name, "code_not_in_vocabulary")))
    if column.has_range:
        below, above = RANGE_RULES[column.name]  # a new range needs its rules: KeyError at import
        if column.min is not None:
            low = pa.Check.gt if column.min_exclusive else pa.Check.ge
            checks.append(low(column.min, error=below))
        if column.max is not None:
            checks.append(pa.Check.le(column.max, error=above))
    return checks


def _tolerance(*precisions: str) -> pl.Expr:
    """Days of uncertainty of the least precise of the dates (0 for exact or unknown precision)."""
    return pl.max_horizontal(_days_of(pl.col(p)) for p in precisions)


def _days_of(precision: pl.Expr) -> pl.Expr:
    # when/then rather than replace_strict: a few times cheaper on a string column.
    days = pl.lit(0, dtype=pl.Int32)
    for name, tolerance in reversed(PRECISION_TOLERANCE_DAYS.items()):
        days = pl.when(precision == name).then(pl.lit(tolerance, dtype=pl.Int32)).otherwise(days)
    return days


def _not_after(rule: str, field: str, earlier: str, later: str, precisions: tuple[str, ...],
               when: pl.Expr | None = None) -> list[pa.Check]:
    """``earlier`` <= ``later``: ERROR ``rule`` beyond the imputed dates' uncertainty, WARNING
    ``rule_imprecise`` within it. ``when`` restricts the rows concerned."""
    excess = (pl.col(earlier) - pl.col(later)).dt.total_days()
    tolerance = _tolerance(*precisions)
    scope = pl.lit(True) if when is None else when
    return [
        _wide(rule, field, ~(scope & (excess > tolerance))),
        _wide(f"{rule}_imprecise", field, ~(scope & (excess > 0) & (excess <= tolerance))),
    ]


def _columns(table: str, checks: dict[str, list[pa.Check]],
             required: dict[str, str] | None = None) -> dict[str, pa.Column]:
    """The pandera columns of a canonical table: dtype, description and title from the contract,
    then the checks: ``required`` (column -> the rule a null raises), the contract's code list
    and range, then ``checks``. Nullable: a missing value is a rule's query, never a crash."""
    required = required or {}
    return {
        c.name: pa.Column(
            c.dtype,
            checks=[*([_required(required[c.name])] if c.name in required else []),
                    *_contract_checks(table, c), *checks.get(c.name, [])],
            nullable=True, title=c.label, description=c.description(),
        )
        for c in contract.TABLES[table].columns
    }


_CTX_COMMON = {
    "ctx_delivery_date": pl.Date,
    "ctx_is_duplicate": pl.Boolean,
    "ctx_duplicate_of_row": pl.Int64,
}
_CTX_FOLLOW_UP = {
    "ctx_patient_known": pl.Boolean,
    "ctx_diagnosis_date": pl.Date,
    "ctx_diagnosis_date_precision": pl.String,
    "ctx_last_news_date": pl.Date,
    "ctx_last_news_date_precision": pl.String,
    "ctx_death_date": pl.Date,
    "ctx_death_date_precision": pl.String,
    "ctx_death_count": pl.Int32,
}


def _ctx(columns: dict[str, pl.DataType]) -> dict[str, pa.Column]:
    return {c: pa.Column(t, nullable=True) for c, t in columns.items()}


_DUPLICATE = _wide("duplicate_row", None, ~pl.col("ctx_is_duplicate"))
_ORPHAN = _wide("orphan_row", "patient_id", pl.col("ctx_patient_known") | pl.col("patient_id").is_null())


def _patient_schema() -> pa.DataFrameSchema:
    age = pl.col("age_at_diagnosis_years")
    vital = pl.col("vital_status")
    columns = _columns("patient", {
        "age_at_diagnosis_years": [
            _expr_check("age_under_18", ~age.is_between(0, AGE_ADULT_YEARS, closed="left")),
        ],
        "vital_status": [
            _expr_check("vital_status_inconsistent",
                        pl.when(vital == "dead").then(pl.col("ctx_has_death"))
                        .when(vital.is_in(["alive", "lost_to_follow_up"])).then(~pl.col("ctx_has_death"))),
        ],
    }, required={"patient_id": "required_value_missing", "diagnosis_date": "diagnosis_date_missing"})
    ctx = _ctx({**_CTX_COMMON, "ctx_has_death": pl.Boolean, "ctx_patient_rows": pl.Int32})
    return pa.DataFrameSchema(
        {**columns, **ctx},
        checks=[
            _DUPLICATE,
            _wide("patient_rows_conflict", "patient_id", pl.col("ctx_patient_rows") <= 1),
            *_not_after("date_in_future", "diagnosis_date", "diagnosis_date", "ctx_delivery_date",
                        ("diagnosis_date_precision",)),
        ],
        name="patient",
    )


def _tumour_schema() -> pa.DataFrameSchema:
    columns = _columns("tumour", {
        "fnclcc_grade": [_expr_check("grade_inconsistent", pl.col("grade_check") != "inconsistent")],
        "mitosis_class": [_expr_check("mitoses_class_mismatch", ~_class_mismatch())],
    }, required={"patient_id": "required_value_missing"})
    ctx = _ctx({**_CTX_COMMON, "ctx_patient_known": pl.Boolean})
    return pa.DataFrameSchema({**columns, **ctx}, checks=[_DUPLICATE, _ORPHAN], name="tumour")


def _follow_up_checks(rule_prefix: str, field: str, precision: str, when_news=None, when_death=None) -> list[pa.Check]:
    return [
        *_not_after("date_in_future", field, field, "ctx_delivery_date", (precision,)),
        *_not_after(f"{rule_prefix}_before_diagnosis", field, "ctx_diagnosis_date", field,
                    (precision, "ctx_diagnosis_date_precision")),
        *_not_after(f"{rule_prefix}_after_last_news", field, field, "ctx_last_news_date",
                    (precision, "ctx_last_news_date_precision"), when_news),
        *_not_after(f"{rule_prefix}_after_death", field, field, "ctx_death_date",
                    (precision, "ctx_death_date_precision"), when_death),
    ]


def _surgery_schema() -> pa.DataFrameSchema:
    columns = _columns("surgery", {
        "histological_margin_cm": [
            _expr_check("histological_exceeds_clinical",
                        pl.col("histological_margin_cm") <= pl.col("clinical_margin_cm")),
        ],
    }, required={"patient_id": "required_value_missing", "surgery_date": "surgery_date_missing"})
    ctx = _ctx({**_CTX_COMMON, **_CTX_FOLLOW_UP})
    checks = [_DUPLICATE, _ORPHAN, *_follow_up_checks("surgery", "surgery_date", "surgery_date_precision")]
    return pa.DataFrameSchema({**columns, **ctx}, checks=checks, name="surgery")


def _event_schema() -> pa.DataFrameSchema:
    kind = pl.col("event_kind")
    columns = _columns("event", {
        "metastasis_site": [
            _expr_check("metastasis_site_without_metastasis", pl.col("metastasis_site").is_null() | (kind == "metastasis")),
        ],
        "death_cause": [
            _expr_check("death_cause_without_death", pl.col("death_cause").is_null() | (kind == "death")),
        ],
    }, required={"patient_id": "required_value_missing", "event_kind": "required_value_missing",
                 "event_date": "event_date_missing"})
    ctx = _ctx({**_CTX_COMMON, **_CTX_FOLLOW_UP})
    checks = [
        _DUPLICATE,
        _ORPHAN,
        *_follow_up_checks("event", "event_date", "event_date_precision",
                           when_news=kind != "last_news", when_death=kind != "death"),
        _wide("multiple_deaths", "event_date", ~((kind == "death") & (pl.col("ctx_death_count") > 1))),
        _wide("metastasis_without_site", "metastasis_site",
              ~((kind == "metastasis") & pl.col("metastasis_site").is_null())),
    ]
    return pa.DataFrameSchema({**columns, **ctx}, checks=checks, name="event")


SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "patient": _patient_schema(),
    "tumour": _tumour_schema(),
    "surgery": _surgery_schema(),
    "event": _event_schema(),
}


def check_rule(error: str) -> tuple[str, str | None]:
    """``"<rule>@<field>"`` -> (rule, field or None); a column check's error is the bare rule."""
    rule, _, field = error.partition("@")
    return rule, field or None


declare_ruleset(Ruleset(SCHEMAS, RULES, SAMPLE_RULES, CHILDREN, SAMPLE_CHILDREN, FILLED_BY_VALIDATION, add_context))
