"""The warehouse as OMOP CDM v5.4 tables with the Oncology extension (polars frames, nothing written).

Conventions (docs/omop.md says why):

* **Persons.** One ``person`` per patient of the warehouse; ``person_id`` is the patient's rank
  in pseudonym order (ids are positions in one export, not stable across exports: join exports on
  ``person_source_value``, the pseudonym). The birth date is never stored: ``year_of_birth`` is
  the (shifted) diagnosis year minus the age at diagnosis. Race and ethnicity are 0 (not
  collected in France). Every other table's id is the row's position after sorting by person,
  date and kind.
* **Dates.** ``exact`` (in-house warehouse): the warehouse's dates. ``shifted`` (an export that
  may leave the registry): every date of a patient moves back by the same number of days, 1 to
  :data:`MAX_SHIFT_DAYS`, drawn from HMAC-SHA256 of the pseudonym under a key derived from the
  pseudonym key (:func:`shift_days`): deterministic, intervals kept exact, never stored, never
  in the future. Backwards only, so that no shifted date passes today.
* **Type.** Every record is a registry record (``*_type_concept_id`` = 'Tumor registry').
* **The cLMS.** One ``condition_occurrence`` per patient on the diagnosis date, ICD-O-3 8890/3 with
  the topography of its site; its modifiers (FNCLCC grade and components, mitotic count, Ki67,
  size, invasion, metastases) are ``measurement`` rows pointing at it
  (``meas_event_field_concept_id`` = condition_occurrence_id); margins and resection status point at
  their operation.
* **Episodes** (Oncology extension): per patient a Disease Episode (diagnosis to death or open),
  its child First Occurrence, one episode per local recurrence and one per metastatic occurrence
  (a date; its sites are the metastasis measurements linked through ``episode_event``).
* **Molecular**: one ``specimen`` per profiled sample of an exported patient; gene-level copy-number
  events (not neutral) and reportable variants are ``measurement`` rows on the specimen's date with
  gene and state / HGVS as source values (the CDM 5.4 has no genomic table).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

import polars as pl

from clms_etl.omop.cdm import conform
from clms_etl.omop.mapping import concept_id, lookup

DATE_MODES = ("shifted", "exact")
MAX_SHIFT_DAYS = 365
SHIFT_CONTEXT = b"clms-etl omop date shift v1\x00"
HISTOLOGY = "8890/3"  # ICD-O-3 leiomyosarcoma NOS, malignant
# Tumour columns written as measurements modifying the condition (mapping source code = column)
TUMOUR_MEASUREMENTS = ("differentiation_score", "mitoses_per_10hpf", "necrosis_score", "ki67_percent", "size_cm",
                       "invasion")
SURGERY_MEASUREMENTS = ("proposed_margin_cm", "clinical_margin_cm", "histological_margin_cm", "resection_status")
TUMOUR_OBSERVATIONS = ("pain", "on_scar", "presentation", "histological_ulceration", "consultation_delay_months")
CLINICAL_TABLES = ("patient", "tumour", "surgery", "event")
# the numbered tables and their id column
ID_COLUMNS = {"person": "person_id", "condition_occurrence": "condition_occurrence_id",
              "procedure_occurrence": "procedure_occurrence_id", "specimen": "specimen_id",
              "measurement": "measurement_id", "observation": "observation_id", "episode": "episode_id"}
MOLECULAR_TABLES = ("molecular_sample", "gene_status", "variant")


@dataclass
class Cdm:
    """The CDM tables of one export and what did not map."""

    tables: dict[str, pl.DataFrame]
    dates: str
    excluded: pl.DataFrame  # rows of the warehouse with no place in the CDM: table, patient_id, reason

    def next_ids(self, first_ids: dict[str, int] | None = None) -> dict[str, int]:
        """The first id of each numbered table for the next block of patients (``first_ids``: this block's)."""
        first_ids = first_ids or {}
        return {column: int(self.tables[table][column].max() or 0) + 1 if self.tables[table].height
                else first_ids.get(column, 1) for table, column in ID_COLUMNS.items()}

    def unmapped(self) -> pl.DataFrame:
        """Per table, concept field and source value: rows written with concept 0 (source value kept)."""
        parts = []
        for table, frame in self.tables.items():
            for field in frame.columns:
                source = field.removesuffix("_concept_id") + "_source_value"
                if not field.endswith("_concept_id") or source not in frame.columns:
                    continue
                rows = frame.filter((pl.col(field) == 0) & pl.col(source).is_not_null())
                if rows.height:
                    parts.append(rows.group_by(source).len().select(
                        pl.lit(table).alias("table"), pl.lit(field).alias("concept_field"),
                        pl.col(source).alias("source_value"), pl.col("len").cast(pl.Int64).alias("rows")))
        schema = {"table": pl.String, "concept_field": pl.String, "source_value": pl.String, "rows": pl.Int64}
        return (pl.concat(parts) if parts else pl.DataFrame(schema=schema)).sort("table", "concept_field",
                                                                                 "source_value")


def shift_days(patient_ids: pl.Series, key: bytes) -> pl.Series:
    """Days each patient's dates move back (1..MAX_SHIFT_DAYS), from the pseudonym and the key."""
    import numpy as np

    from clms_etl.keys import hmac_sha256_each

    shift_key = hmac.new(key, SHIFT_CONTEXT, hashlib.sha256).digest()  # never the pseudonym key itself
    digests = hmac_sha256_each(shift_key, (p.encode() for p in patient_ids))
    first_bytes = np.frombuffer(b"".join(d[:8] for d in digests), dtype=">u8")  # each digest's first 8, big-endian
    return pl.Series((1 + first_bytes % MAX_SHIFT_DAYS).astype(np.int64), dtype=pl.Int64)


def _numbered(frame: pl.DataFrame, id_column: str, order: list[str], first: int = 1) -> pl.DataFrame:
    """Ids from ``first`` in ``order``, ties broken by every other column: a database returns rows in
    any order, and two rows of one person can share the order's key (a second tumour, a second variant)."""
    frame = frame.sort([*order, *(c for c in frame.columns if c not in order)], nulls_last=True)
    return frame.with_columns(pl.int_range(first, first + frame.height, dtype=pl.Int64).alias(id_column))


def _text(column: str) -> pl.Expr:
    """A source value as text (booleans true / false)."""
    return pl.col(column).cast(pl.String)


def build(source: dict[str, pl.DataFrame], *, dates: str = "shifted", key: bytes | None = None,
          first_ids: dict[str, int] | None = None) -> Cdm:
    """The CDM tables from the warehouse's tables (``patient``, ``tumour``, ``surgery``, ``event``,
    ``molecular_sample``, ``gene_status``, ``variant``). ``dates``: ``shifted`` (needs ``key``) or ``exact``.

    ``first_ids``: the first id of each numbered table (:data:`ID_COLUMNS`; default 1), for a block of
    patients following earlier ones (:meth:`Cdm.next_ids`). Every table is numbered in an order that
    starts with ``person_id``, so the blocks of consecutive pseudonyms give the ids of one whole build."""
    first = {column: (first_ids or {}).get(column, 1) for column in ID_COLUMNS.values()}
    if dates not in DATE_MODES:
        raise ValueError(f"dates must be one of {', '.join(DATE_MODES)}, not {dates!r}")
    if dates == "shifted" and key is None:
        raise ValueError("shifted dates need the pseudonym key")
    registry = concept_id("type", "registry")

    exportable = pl.col("diagnosis_date").is_not_null() & pl.col("age_at_diagnosis_years").is_not_null()
    patient = source["patient"].filter(exportable)
    excluded = [_excluded(source["patient"].filter(~exportable), "patient",
                          "no diagnosis date or no age at diagnosis: no year of birth, no time origin")]
    persons = patient.select("patient_id").sort("patient_id").with_columns(
        pl.int_range(first["person_id"], first["person_id"] + patient.height, dtype=pl.Int64).alias("person_id"),
        (shift_days(patient["patient_id"].sort(), key) if dates == "shifted" else pl.lit(0, pl.Int64)).alias("_shift"))

    def dated(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
        """``frame`` of exported patients with person_id and its date columns shifted."""
        out = frame.join(persons, on="patient_id", how="inner")
        return out.with_columns((pl.col(c) - pl.duration(days=pl.col("_shift"))).alias(c) for c in columns)

    pat = dated(patient, "diagnosis_date")
    tumour = dated(source["tumour"]).join(pat.select("patient_id", "diagnosis_date"), on="patient_id")
    surgery = dated(source["surgery"], "surgery_date")
    event = dated(source["event"], "event_date")
    excluded += [_excluded(surgery.filter(pl.col("surgery_date").is_null()), "surgery", "operation without a date"),
                 _excluded(event.filter(pl.col("event_date").is_null()), "event", "event without a date"),
                 _excluded(source["molecular_sample"].join(persons, on="patient_id", how="anti"), "molecular_sample",
                           "sample of a patient not exported (not in the warehouse, or excluded above)")]
    surgery = surgery.filter(pl.col("surgery_date").is_not_null())
    event = event.filter(pl.col("event_date").is_not_null())

    person = pat.select(
        "person_id", pl.col("patient_id").alias("person_source_value"),
        lookup("gender", pl.col("sex"), "concept_id").alias("gender_concept_id"), pl.col("sex").alias("gender_source_value"),
        (pl.col("diagnosis_date").dt.year() - pl.col("age_at_diagnosis_years")).cast(pl.Int64).alias("year_of_birth"),
        pl.lit(0).alias("race_concept_id"), pl.lit(0).alias("ethnicity_concept_id"))

    # ---- the cLMS and its modifiers ----------------------------------------------------------
    topography = lookup("topography", pl.col("site"))
    site = pat.join(source["tumour"].select("patient_id", "site"), on="patient_id", how="left")
    condition = _numbered(site.select(
        "person_id", "patient_id", (pl.lit(HISTOLOGY + "-") + topography).alias("condition_source_value"),
        pl.col("diagnosis_date").alias("condition_start_date"),
    ), "condition_occurrence_id", ["person_id"], first["condition_occurrence_id"]).with_columns(
        lookup("condition", pl.col("condition_source_value"), "concept_id").alias("condition_concept_id"),
        pl.lit(registry).alias("condition_type_concept_id"))
    on_condition = tumour.join(condition.select("patient_id", "condition_occurrence_id"), on="patient_id")

    modifiers = [
        on_condition.select("person_id", "patient_id", "condition_occurrence_id", "diagnosis_date",
                            pl.lit("initial_diagnosis").alias("code"), pl.lit(None, pl.Float64).alias("number"),
                            pl.lit(None, pl.String).alias("value")),
        on_condition.filter(pl.col("fnclcc_grade").is_not_null()).select(
            "person_id", "patient_id", "condition_occurrence_id", "diagnosis_date",
            (pl.lit("fnclcc_grade:") + pl.col("fnclcc_grade").cast(pl.String)).alias("code"),
            pl.col("fnclcc_grade").cast(pl.Float64).alias("number"), pl.col("fnclcc_grade").cast(pl.String).alias("value")),
    ]
    for column in TUMOUR_MEASUREMENTS:
        numeric = on_condition.schema[column].is_numeric()
        value = _text(column)
        if column == "mitoses_per_10hpf":  # "< 5" in the chart: the number is a bound, say so
            value = pl.when(pl.col("mitoses_is_upper_bound")).then(pl.lit("<") + value).otherwise(value)
        modifiers.append(on_condition.filter(pl.col(column).is_not_null()).select(
            "person_id", "patient_id", "condition_occurrence_id", "diagnosis_date", pl.lit(column).alias("code"),
            (pl.col(column).cast(pl.Float64) if numeric else pl.lit(None, pl.Float64)).alias("number"),
            value.alias("value")))
    metastasis = event.filter(pl.col("event_kind") == "metastasis").join(
        condition.select("patient_id", "condition_occurrence_id"), on="patient_id")
    modifiers.append(metastasis.select(
        "person_id", "patient_id", "condition_occurrence_id", pl.col("event_date").alias("diagnosis_date"),
        (pl.lit("metastasis:") + pl.col("metastasis_site").fill_null("")).alias("code"),
        pl.lit(None, pl.Float64).alias("number"), pl.col("metastasis_site").alias("value")))
    condition_measurements = pl.concat(modifiers).select(
        "person_id", "patient_id", pl.col("diagnosis_date").alias("measurement_date"),
        pl.col("code").alias("measurement_source_value"), pl.col("number").alias("value_as_number"),
        pl.col("value").alias("value_source_value"),
        pl.col("condition_occurrence_id").alias("measurement_event_id"),
        pl.lit(concept_id("field", "condition_occurrence")).alias("meas_event_field_concept_id"))

    # ---- operations and radiotherapy ---------------------------------------------------------
    operations = surgery.select("person_id", "patient_id", "surgery_no", pl.col("surgery_date").alias("procedure_date"),
                                pl.col("surgery_kind").alias("procedure_source_value"), *SURGERY_MEASUREMENTS)
    radiotherapy = surgery.filter(pl.col("adjuvant_radiotherapy").fill_null(False)).select(
        "person_id", "patient_id", "surgery_no", pl.col("surgery_date").alias("procedure_date"),
        pl.lit("adjuvant_radiotherapy").alias("procedure_source_value"))
    procedure = _numbered(pl.concat([operations, radiotherapy], how="diagonal"), "procedure_occurrence_id",
                          ["person_id", "procedure_date", "surgery_no", "procedure_source_value"],
                          first["procedure_occurrence_id"]).with_columns(
        lookup("procedure", pl.col("procedure_source_value"), "concept_id").alias("procedure_concept_id"),
        pl.lit(registry).alias("procedure_type_concept_id"))
    procedure_measurements = pl.concat([
        procedure.filter(pl.col(column).is_not_null()).select(
            "person_id", "patient_id", pl.col("procedure_date").alias("measurement_date"),
            pl.lit(column).alias("measurement_source_value"),
            (pl.col(column).cast(pl.Float64) if procedure.schema[column].is_numeric() else pl.lit(None, pl.Float64))
            .alias("value_as_number"), _text(column).alias("value_source_value"),
            pl.col("procedure_occurrence_id").alias("measurement_event_id"),
            pl.lit(concept_id("field", "procedure_occurrence")).alias("meas_event_field_concept_id"))
        for column in SURGERY_MEASUREMENTS])

    # ---- molecular ---------------------------------------------------------------------------
    samples = dated(source["molecular_sample"]).join(pat.select("patient_id", "diagnosis_date"), on="patient_id")
    specimen = _numbered(samples.select(
        "person_id", "patient_id", "sample_id", pl.col("diagnosis_date").alias("specimen_date"),
        pl.lit("tumour_tissue").alias("specimen_source_value")), "specimen_id", ["person_id", "sample_id"],
        first["specimen_id"])
    specimen = specimen.with_columns(
        lookup("specimen", pl.col("specimen_source_value"), "concept_id").alias("specimen_concept_id"),
        pl.lit(registry).alias("specimen_type_concept_id"),
        # the laboratory accession stays in-house, like the statisticians' shareable export drops it
        (pl.col("sample_id") if dates == "exact" else pl.lit(None, pl.String)).alias("specimen_source_id"))
    on_specimen = specimen.select("person_id", "patient_id", "sample_id", "specimen_date")
    genes = source["gene_status"].filter(pl.col("cn_event").is_not_null() & (pl.col("cn_event") != "neutral"))
    variants = source["variant"].filter(pl.col("reportable").fill_null(False))
    molecular_measurements = pl.concat([
        genes.join(on_specimen, on="sample_id").select(
            "person_id", "patient_id", pl.col("specimen_date").alias("measurement_date"),
            (pl.lit("gene_copy_number:") + pl.col("gene")).alias("measurement_source_value"),
            pl.col("cn_state").alias("value_as_number"), pl.col("cn_event").alias("value_source_value")),
        variants.join(on_specimen, on="sample_id").select(
            "person_id", "patient_id", pl.col("specimen_date").alias("measurement_date"),
            (pl.lit("gene_variant:") + pl.col("gene") + ":" + pl.col("hgvs_c").fill_null("")).alias("measurement_source_value"),
            pl.col("vaf").alias("value_as_number"), pl.col("hgvs_p").alias("value_source_value")),
    ], how="diagonal")

    measurement = _numbered(pl.concat([condition_measurements, procedure_measurements, molecular_measurements],
                                      how="diagonal"),
                            "measurement_id", ["person_id", "measurement_date", "measurement_source_value",
                                               "measurement_event_id"], first["measurement_id"])
    code = pl.col("measurement_source_value")
    mapped_code = (pl.when(code.str.starts_with("gene_copy_number:")).then(pl.lit("gene_copy_number"))
                   .when(code.str.starts_with("gene_variant:")).then(pl.lit("gene_variant")).otherwise(code))
    unit = lookup("measurement", mapped_code, "unit")
    measurement = measurement.with_columns(
        lookup("measurement", mapped_code, "concept_id").alias("measurement_concept_id"),
        pl.lit(registry).alias("measurement_type_concept_id"),
        unit.alias("unit_source_value"), lookup("unit", unit, "concept_id").alias("unit_concept_id"))
    measurement = measurement.with_columns(
        pl.when(pl.col("unit_source_value").is_null()).then(None).otherwise(pl.col("unit_concept_id"))
        .alias("unit_concept_id"))

    # ---- observations ------------------------------------------------------------------------
    observation = _numbered(pl.concat(
        [pat.filter(pl.col("immunosuppression").is_not_null()).select(
            "person_id", "patient_id", pl.col("diagnosis_date").alias("observation_date"),
            pl.lit("immunosuppression").alias("observation_source_value"), _text("immunosuppression").alias("value_as_string"))]
        + [tumour.filter(pl.col(column).is_not_null()).select(
            "person_id", "patient_id", pl.col("diagnosis_date").alias("observation_date"),
            pl.lit(column).alias("observation_source_value"), _text(column).alias("value_as_string"))
           for column in TUMOUR_OBSERVATIONS]), "observation_id", ["person_id", "observation_source_value"],
        first["observation_id"])
    observation = observation.with_columns(
        lookup("observation", pl.col("observation_source_value"), "concept_id").alias("observation_concept_id"),
        pl.lit(registry).alias("observation_type_concept_id"), pl.col("value_as_string").alias("value_source_value"))

    # ---- death -------------------------------------------------------------------------------
    death = (event.filter(pl.col("event_kind") == "death").sort("event_date").unique("person_id", keep="first")
             .select("person_id", "patient_id", pl.col("event_date").alias("death_date"),
                     pl.col("death_cause").alias("cause_source_value")).sort("person_id")
             .with_columns(pl.lit(registry).alias("death_type_concept_id"),
                           lookup("death_cause", pl.col("cause_source_value"), "concept_id").alias("cause_concept_id")))

    # ---- observation period: every dated record of the person ---------------------------------
    spans = pl.concat([
        pat.select("person_id", pl.col("diagnosis_date").alias("date")),
        surgery.select("person_id", pl.col("surgery_date").alias("date")),
        event.select("person_id", pl.col("event_date").alias("date")),
    ])
    observation_period = spans.group_by("person_id").agg(
        pl.col("date").min().alias("observation_period_start_date"),
        pl.col("date").max().alias("observation_period_end_date")).sort("person_id").with_columns(
        pl.col("person_id").alias("observation_period_id"), pl.lit(registry).alias("period_type_concept_id"))

    episode, episode_event = _episodes(condition, procedure, measurement, event, death, registry, first["episode_id"])
    tables = {"person": person, "observation_period": observation_period, "condition_occurrence": condition,
              "procedure_occurrence": procedure, "measurement": measurement, "observation": observation,
              "death": death, "specimen": specimen, "episode": episode, "episode_event": episode_event}
    return Cdm({name: conform(name, frame) for name, frame in tables.items()}, dates, pl.concat(excluded))


def _excluded(rows: pl.DataFrame, table: str, reason: str) -> pl.DataFrame:
    """Rows left out of the CDM, by pseudonym, with the reason (nothing is dropped silently)."""
    return rows.select(pl.lit(table).alias("table"), pl.col("patient_id").cast(pl.String),
                       pl.lit(reason).alias("reason"))


def _episodes(condition: pl.DataFrame, procedure: pl.DataFrame, measurement: pl.DataFrame, event: pl.DataFrame,
              death: pl.DataFrame, registry: int, first_id: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Disease Episode (parent), First Occurrence, one per local recurrence, one per metastatic occurrence."""
    cond = condition.select("person_id", "condition_occurrence_id", "condition_concept_id",
                            pl.col("condition_start_date").alias("episode_start_date"))
    disease = cond.join(death.select("person_id", pl.col("death_date").alias("episode_end_date")), on="person_id",
                        how="left").with_columns(pl.lit("disease_episode").alias("episode_source_value"),
                                                 pl.lit(None, pl.Int64).alias("episode_number"))
    first = cond.with_columns(pl.lit("first_occurrence").alias("episode_source_value"),
                              pl.lit(None, pl.Date).alias("episode_end_date"), pl.lit(None, pl.Int64).alias("episode_number"))
    recurrences = (event.filter(pl.col("event_kind") == "local_recurrence")
                   .select("person_id", pl.col("event_date").alias("episode_start_date"))
                   .sort("person_id", "episode_start_date"))
    metastases = (event.filter(pl.col("event_kind") == "metastasis")
                  .select("person_id", pl.col("event_date").alias("episode_start_date")).unique()
                  .sort("person_id", "episode_start_date"))
    later = [frame.with_columns(pl.lit(kind).alias("episode_source_value"),
                                pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("person_id").alias("episode_number"))
             .join(cond.select("person_id", "condition_occurrence_id", "condition_concept_id"), on="person_id")
             for kind, frame in (("local_recurrence", recurrences), ("metastasis", metastases))]
    episodes = pl.concat([disease, first, *later], how="diagonal")
    kind_order = pl.col("episode_source_value").replace_strict(
        {"disease_episode": 0, "first_occurrence": 1, "local_recurrence": 2, "metastasis": 3}, return_dtype=pl.Int64)
    episodes = _numbered(episodes.with_columns(kind_order.alias("_kind")), "episode_id",
                         ["person_id", "_kind", "episode_start_date"], first_id)
    parent = episodes.filter(pl.col("episode_source_value") == "disease_episode").select(
        "person_id", pl.col("episode_id").alias("episode_parent_id"))
    episodes = episodes.join(parent, on="person_id", how="left").with_columns(
        pl.when(pl.col("episode_source_value") == "disease_episode").then(None).otherwise(pl.col("episode_parent_id"))
        .alias("episode_parent_id"),
        lookup("episode", pl.col("episode_source_value"), "concept_id").alias("episode_concept_id"),
        pl.col("condition_concept_id").alias("episode_object_concept_id"),
        pl.lit(registry).alias("episode_type_concept_id")).sort("episode_id")

    field = {name: concept_id("field", name) for name in ("condition_occurrence", "procedure_occurrence", "measurement")}
    by_kind = {k: episodes.filter(pl.col("episode_source_value") == k) for k in ("disease_episode", "first_occurrence",
                                                                                 "metastasis")}
    sites = measurement.filter(pl.col("measurement_source_value").str.starts_with("metastasis:")).select(
        "person_id", pl.col("measurement_date").alias("episode_start_date"), pl.col("measurement_id").alias("event_id"))
    links = [
        by_kind[k].select("episode_id", pl.col("condition_occurrence_id").alias("event_id"),
                          pl.lit(field["condition_occurrence"]).alias("episode_event_field_concept_id"))
        for k in ("disease_episode", "first_occurrence")
    ] + [
        by_kind["disease_episode"].join(procedure.select("person_id", "procedure_occurrence_id"), on="person_id")
        .select("episode_id", pl.col("procedure_occurrence_id").alias("event_id"),
                pl.lit(field["procedure_occurrence"]).alias("episode_event_field_concept_id")),
        by_kind["metastasis"].join(sites, on=["person_id", "episode_start_date"]).select(
            "episode_id", "event_id", pl.lit(field["measurement"]).alias("episode_event_field_concept_id")),
    ]
    episode_event = pl.concat(links).sort("episode_id", "episode_event_field_concept_id", "event_id")
    return episodes.drop("_kind", "condition_occurrence_id", "condition_concept_id"), episode_event


def cdm_source(release: dt.date, source_release: dt.date | None, code_version: str) -> pl.DataFrame:
    """The ``cdm_source`` row: what the data is, which ETL and mapping wrote it."""
    return pl.DataFrame([{
        "cdm_source_name": "French registry of primary cutaneous leiomyosarcoma (cLMS)",
        "cdm_source_abbreviation": "cLMS registry",
        "cdm_holder": "cLMS registry data team",
        "source_description": "Charts of the registry's dermatology centres and the molecular laboratory, "
                              "pseudonymised; see docs/omop.md of clms-etl.",
        "source_documentation_reference": "docs/omop.md",
        "cdm_etl_reference": f"clms-etl {code_version}",
        "source_release_date": source_release or release,
        "cdm_release_date": release,
        "cdm_version": "v5.4",
        "cdm_version_concept_id": concept_id("cdm_version", "5.4"),
        "vocabulary_version": "none: pinned concepts.csv",
    }])


def metadata(entries: dict[str, str], release: dt.date) -> pl.DataFrame:
    """``metadata`` rows: one per setting of the export (name, value)."""
    return pl.DataFrame({
        "metadata_id": list(range(1, len(entries) + 1)),
        "metadata_concept_id": [concept_id("metadata", "export")] * len(entries),
        "metadata_type_concept_id": [concept_id("metadata", "export")] * len(entries),
        "name": list(entries), "value_as_string": list(entries.values()),
        "metadata_date": [release] * len(entries),
    })
