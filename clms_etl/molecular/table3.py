"""Table 3: the profiled cases with their clinical features, genomic profile and outcome.

One row per case of the laboratory series (not-contributory cases included, as in the study),
joined through ``patient_id`` to ``analytics.patient_summary``. Pseudonyms and the laboratory's
case numbers only: no accession, no identifier.
"""

from __future__ import annotations

import polars as pl

from clms_etl.molecular.summary import MolecularSummary
from clms_etl.molecular.tables import TABLE3
from clms_etl.vocabulary import code_labels

# analytics.patient_summary columns Table 3 needs
CLINICAL_COLUMNS = (
    "patient_id", "centre", "site", "size_cm", "grade_label", "invasion", "resection_status",
    "final_resection_status", "histological_margin_cm", "local_recurrence", "metastasis", "vital_status",
    "death_cause", "follow_up_months",
)  # fmt: skip

_FUSIONS = {"negative": "none", "failed": "failed", "not_done": "not done"}


def table3(summary: MolecularSummary, patient_summary: pl.DataFrame) -> pl.DataFrame:
    """Table 3 as stored (result table ``table3``): typed columns, one row per case, by case number."""
    # typed as Table 3 declares them: a column no centre fills still rounds and formats
    types = {**TABLE3.schema, "grade_label": pl.String}
    clinical = patient_summary.select(pl.col(c).cast(types[c]) for c in CLINICAL_COLUMNS).unique(
        "patient_id", keep="first")
    cases = summary.cases
    return (
        cases.join(clinical, on="patient_id", how="left")
        .with_columns(
            pl.col("grade_label").alias("grade"),
            pl.col("rb1_alteration").alias("rb1"),
            pl.col("tp53_alteration").alias("tp53"),
            pl.col("myocd_alteration").alias("myocd"),
            pl.when(pl.col("fusion_status") == "positive").then(pl.col("fusions"))
            .otherwise(pl.col("fusion_status").replace_strict(_FUSIONS, default=None)).alias("fusions"),
        )
        .select(
            "case_no", "patient_id", "centre", "site", "size_cm", "grade", "invasion", "resection_status",
            "final_resection_status", "histological_margin_cm", "profile_class", "anomaly_count", "rb1", "tp53",
            "myocd", "biallelic_tp53_or_rb1", "mutations", "fusions", "local_recurrence", "metastasis",
            "vital_status", "death_cause", "follow_up_months",
        )
        .sort("case_no")
    )


def _yes_no(col: str) -> pl.Expr:
    return pl.when(pl.col(col)).then(pl.lit("yes")).when(pl.col(col).not_()).then(pl.lit("no")).otherwise(pl.lit(""))


def _labelled(column: str, code_list: str) -> pl.Expr:
    """The code list's label of each value ('' when missing)."""
    values = pl.col(column).cast(pl.String)
    return values.replace_strict(code_labels(code_list), default=values, return_dtype=pl.String).fill_null("")


def table3_display(table: pl.DataFrame) -> pl.DataFrame:
    """Table 3 laid out for reading (report, CSV): strings, human headers, '' for missing values."""
    text = lambda c: pl.col(c).cast(pl.String).fill_null("")  # noqa: E731
    return table.select(
        pl.col("case_no").cast(pl.String).alias("Case"),
        text("patient_id").alias("Patient (pseudonym)"),
        _labelled("site", "site").alias("Site"),
        pl.col("size_cm").round(1).cast(pl.String).fill_null("").alias("Size (cm)"),
        text("grade").alias("FNCLCC grade"),
        _labelled("invasion", "invasion").alias("Invasion"),
        pl.concat_str([text("final_resection_status"),
                       pl.when(pl.col("histological_margin_cm").is_not_null())
                       .then(pl.format(" ({} cm)", pl.col("histological_margin_cm").round(1))).otherwise(pl.lit(""))])
        .alias("Margins"),
        text("profile_class").str.replace("_", " ").alias("Genomic profile"),
        text("anomaly_count").alias("Anomalies"),
        text("rb1").alias("RB1"),
        text("tp53").alias("TP53"),
        text("myocd").alias("MYOCD"),
        text("mutations").alias("Mutations (VAF)"),
        text("fusions").alias("Fusions"),
        _yes_no("local_recurrence").alias("Local recurrence"),
        _yes_no("metastasis").alias("Metastasis"),
        _labelled("vital_status", "vital_status").alias("Vital status"),
        pl.col("follow_up_months").round(1).cast(pl.String).fill_null("").alias("Follow-up (months)"),
    )
