"""The ``analytics`` schema: documented views for analysts, identical on DuckDB and PostgreSQL.

The SQL below is written once, in the subset both engines read the same way: ``CASE``,
``COALESCE``, ``LEAST``, window functions, ``string_agg(DISTINCT ... ORDER BY ...)``, explicit
``CAST`` for every division and date difference (``date - date`` is an integer number of days
on both; ``/`` on integers would truncate on PostgreSQL, so every division is on ``DOUBLE
PRECISION``).

Survival endpoints (``formats_and_rules.md`` §7, ``clms_paper.json`` ``survival``). Time origin:
the date of pathological diagnosis. Censoring: last contact = the latest of the last-news and
death dates. Months = days / (365.25 / 12).

=========  ===============================================  =========================================
endpoint   event                                            censored at
=========  ===============================================  =========================================
OS         death, any cause                                 last contact
DSS        death with ``death_cause = 'clms'``              last contact; other or unknown causes of
                                                            death are censored at death
PFS        first of local recurrence, metastasis or death   last contact
RFS        first metastasis (the study's "RFS" is           last contact (deaths censored at death)
           metastasis-free survival, see clms_paper.json)
LRFS       first local recurrence                           last contact (deaths censored at death)
=========  ===============================================  =========================================

The survival population (``in_survival_population``) follows the rule the survival analysis last
ran with: a :class:`PopulationRule` preset and a minimum follow-up, stored by the analysis in the
result table ``analytics.survival_population_rule`` and read here, so that the view and the
analysis cannot disagree. Before any analysis, :data:`DEFAULT_POPULATION` with
:data:`MIN_FOLLOW_UP_MONTHS`. Presets: ``paper`` (the study's rule, which also drops patients who
died before the minimum: 68 of its 79 patients) and ``censored_before_minimum`` (the default:
only patients censored before the minimum are left out; early deaths stay).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from clms_etl.results import ResultColumn, ResultTable
from clms_etl.warehouse.schema import ANALYTICS_SCHEMA, declare_results, metadata

# View names never repeat a base table's name: DuckDB binds an unqualified table name inside a
# view of schema ``analytics`` to ``analytics.<name>`` first (a view named like its source table
# would recurse), and the base tables' schema differs between backends (main / public), so the
# view SQL cannot qualify them.

DAYS_PER_MONTH = 365.25 / 12  # 30.4375
MIN_FOLLOW_UP_MONTHS = 3  # the study's minimum follow-up for the survival analyses
MITOSES_THRESHOLD = 10  # the study's "mitotic index > 10 / 10 HPF"
ENDPOINTS = ("OS", "DSS", "PFS", "RFS", "LRFS")


@dataclass(frozen=True)
class PopulationRule:
    """Who the survival analyses keep among the included patients: everyone with a dated diagnosis
    and last contact, except the patients followed for less than the minimum — all of them
    (``excludes_early_deaths``: the study's rule) or only those censored (alive) before it."""

    name: str
    excludes_early_deaths: bool
    summary: str  # ``{m}``: the minimum follow-up in months

    def describe(self, min_follow_up_months: float) -> str:
        """The rule in words, e.g. for the report and the exports."""
        return f"{self.name}: " + self.summary.format(m=f"{min_follow_up_months:g}")

    def frame(self, min_follow_up_months: float) -> pl.DataFrame:
        """The row of ``survival_population_rule`` that makes the views follow this rule."""
        return pl.DataFrame({"population": [self.name], "min_follow_up_months": [float(min_follow_up_months)],
                             "excludes_early_deaths": [self.excludes_early_deaths],
                             "description": [self.describe(min_follow_up_months)]})


POPULATIONS = {
    "paper": PopulationRule(
        "paper", True, "the study's rule (reproduces the paper): patients followed for at least {m} months; "
        "patients who died before {m} months are left out too, while time still runs from diagnosis (this "
        "biases survival upwards)"),
    "censored_before_minimum": PopulationRule(
        "censored_before_minimum", False, "patients censored (alive at last contact) before {m} months are left "
        "out; patients who died before {m} months are kept"),
}
DEFAULT_POPULATION = "censored_before_minimum"

POPULATION_RULE_TABLE = ResultTable(
    "survival_population_rule",
    "The survival population rule the survival analysis last ran with (one row): the views' in_survival_population "
    "follows it; when empty, the default rule.",
    (
        ResultColumn("population", pl.String, "Preset: paper (the study's rule) / censored_before_minimum (default)."),
        ResultColumn("min_follow_up_months", pl.Float64, "Minimum follow-up, months.", nullable=False),
        ResultColumn("excludes_early_deaths", pl.Boolean, "Patients who died before the minimum are left out too.",
                     nullable=False),
        ResultColumn("description", pl.String, "The rule in words."),
    ),
    ("population",),
)
# declared by the warehouse itself: its views read the table
declare_results([POPULATION_RULE_TABLE])


@dataclass(frozen=True)
class View:
    name: str
    description: str
    columns: tuple[tuple[str, str], ...]  # (column, description), in the view's order
    sql: str  # the SELECT
    # each row is computed from one patient's rows of the base tables alone (:func:`view_for_patients`)
    per_patient: bool = False
    # each row is computed from one row of this view alone, the same patient's: the rows of a range of
    # patients are those computed from that range of its rows (the exports' blocks, from its block copy)
    rows_from: str | None = None

    @property
    def qualified(self) -> str:
        return f"{ANALYTICS_SCHEMA}.{self.name}"


_M = f"{DAYS_PER_MONTH!r}"
_DEFAULT_EXCLUDES_EARLY_DEATHS = "TRUE" if POPULATIONS[DEFAULT_POPULATION].excludes_early_deaths else "FALSE"

PATIENT_SUMMARY_SQL = f"""
WITH first_surgery AS (
    SELECT patient_id, surgery_date, resection_status, proposed_margin_cm, clinical_margin_cm,
           histological_margin_cm, adjuvant_radiotherapy,
           ROW_NUMBER() OVER (
               PARTITION BY patient_id
               ORDER BY CASE WHEN surgery_kind = 'primary_excision' THEN 0 ELSE 1 END, surgery_no
           ) AS rn
    FROM surgery
),
final_excision AS (
    SELECT patient_id, resection_status,
           ROW_NUMBER() OVER (PARTITION BY patient_id ORDER BY surgery_no DESC) AS rn
    FROM surgery
    WHERE surgery_kind IN ('primary_excision', 're_excision') AND resection_status IS NOT NULL
),
events AS (
    SELECT patient_id,
           MIN(CASE WHEN event_kind = 'local_recurrence' THEN event_date END) AS first_local_recurrence_date,
           MIN(CASE WHEN event_kind = 'metastasis' THEN event_date END) AS first_metastasis_date,
           string_agg(DISTINCT CASE WHEN event_kind = 'metastasis' THEN metastasis_site END, ','
                      ORDER BY CASE WHEN event_kind = 'metastasis' THEN metastasis_site END) AS metastasis_sites,
           MIN(CASE WHEN event_kind = 'death' THEN event_date END) AS death_date,
           MAX(CASE WHEN event_kind = 'death' THEN death_cause END) AS death_cause,
           MAX(CASE WHEN event_kind IN ('last_news', 'death') THEN event_date END) AS last_contact_date
    FROM event
    GROUP BY patient_id
),
base AS (
    SELECT p.patient_id, p.centre, p.sex, p.age_at_diagnosis_years, p.immunosuppression,
           p.diagnosis_date, p.diagnosis_date_precision, p.vital_status, p.record_complete,
           t.site, t.size_cm, t.presentation, t.pain, t.on_scar, t.histological_ulceration,
           COALESCE(t.fnclcc_grade, t.fnclcc_grade_computed) AS fnclcc_grade,
           CASE WHEN t.fnclcc_grade IS NOT NULL THEN 'recorded'
                WHEN t.fnclcc_grade_computed IS NOT NULL THEN 'computed' END AS fnclcc_grade_source,
           t.grade_check, t.differentiation_score, t.mitoses_per_10hpf, t.mitoses_is_upper_bound,
           t.mitosis_class, t.necrosis_score, t.invasion, t.ki67_percent,
           s.surgery_date AS primary_surgery_date, s.resection_status, s.proposed_margin_cm,
           s.clinical_margin_cm, s.histological_margin_cm, s.adjuvant_radiotherapy,
           f.resection_status AS final_resection_status,
           e.first_local_recurrence_date, e.first_metastasis_date, e.metastasis_sites,
           e.death_date, e.death_cause, e.last_contact_date,
           CAST(e.last_contact_date - p.diagnosis_date AS INTEGER) AS follow_up_days
    FROM patient p
    LEFT JOIN tumour t ON t.patient_id = p.patient_id
    LEFT JOIN first_surgery s ON s.patient_id = p.patient_id AND s.rn = 1
    LEFT JOIN final_excision f ON f.patient_id = p.patient_id AND f.rn = 1
    LEFT JOIN events e ON e.patient_id = p.patient_id
)
SELECT
    patient_id, centre, sex, age_at_diagnosis_years, immunosuppression,
    diagnosis_date, diagnosis_date_precision, CAST(EXTRACT(YEAR FROM diagnosis_date) AS INTEGER) AS diagnosis_year,
    site, size_cm,
    CASE WHEN size_cm < 1 THEN '<1' WHEN size_cm < 3 THEN '1-2.9' WHEN size_cm >= 3 THEN '>=3' END AS size_class,
    presentation, pain, on_scar, histological_ulceration,
    fnclcc_grade, fnclcc_grade_source, grade_check,
    CASE fnclcc_grade WHEN 1 THEN 'I' WHEN 2 THEN 'II' WHEN 3 THEN 'III' END AS grade_label,
    CASE WHEN fnclcc_grade IS NULL THEN NULL ELSE fnclcc_grade >= 2 END AS grade_ii_iii,
    differentiation_score,
    CASE differentiation_score WHEN 1 THEN 'well' WHEN 2 THEN 'moderate' WHEN 3 THEN 'poor' END AS differentiation,
    CASE WHEN differentiation_score IS NULL THEN NULL ELSE differentiation_score >= 2 END AS differentiation_moderate_poor,
    mitoses_per_10hpf,
    CASE WHEN mitoses_per_10hpf IS NOT NULL AND mitoses_is_upper_bound AND mitoses_per_10hpf > {MITOSES_THRESHOLD} THEN NULL
         WHEN mitoses_per_10hpf IS NOT NULL THEN mitoses_per_10hpf > {MITOSES_THRESHOLD}
         WHEN mitosis_class = '>=20' THEN TRUE
         WHEN mitosis_class = '0-9' THEN FALSE END AS mitoses_gt_10,
    necrosis_score,
    CASE WHEN necrosis_score IS NULL THEN NULL ELSE necrosis_score > 0 END AS necrosis_present,
    invasion, ki67_percent,
    primary_surgery_date, resection_status,
    CASE WHEN resection_status IS NULL THEN NULL ELSE resection_status = 'R0' END AS r0,
    final_resection_status, proposed_margin_cm, clinical_margin_cm, histological_margin_cm, adjuvant_radiotherapy,
    vital_status, record_complete, last_contact_date, follow_up_days,
    CAST(follow_up_days AS DOUBLE PRECISION) / {_M} AS follow_up_months,
    CASE WHEN follow_up_days IS NULL OR follow_up_days < 0 THEN FALSE
         WHEN CAST(follow_up_days AS DOUBLE PRECISION) >= pop_rule.min_days THEN TRUE
         ELSE death_date IS NOT NULL AND NOT pop_rule.excludes_early_deaths END AS in_survival_population,
    first_local_recurrence_date IS NOT NULL AS local_recurrence,
    first_local_recurrence_date,
    first_metastasis_date IS NOT NULL AS metastasis,
    first_metastasis_date, metastasis_sites,
    (first_local_recurrence_date IS NOT NULL OR first_metastasis_date IS NOT NULL) AS relapse,
    death_date IS NOT NULL AS death,
    death_date, death_cause
FROM base
CROSS JOIN (
    SELECT COALESCE(MAX(min_follow_up_months), {MIN_FOLLOW_UP_MONTHS!r}) * {_M} AS min_days,
           COALESCE(BOOL_OR(excludes_early_deaths), {_DEFAULT_EXCLUDES_EARLY_DEATHS}) AS excludes_early_deaths
    FROM {ANALYTICS_SCHEMA}.{POPULATION_RULE_TABLE.name}
) pop_rule
"""

SURVIVAL_SQL = f"""
WITH s AS (
    SELECT patient_id, centre, diagnosis_date, last_contact_date, death_date, death_cause,
           first_local_recurrence_date AS lr, first_metastasis_date AS met, in_survival_population
    FROM {ANALYTICS_SCHEMA}.patient_summary
),
e AS (
    SELECT patient_id, centre, 'OS' AS endpoint, diagnosis_date,
           COALESCE(death_date, last_contact_date) AS end_date,
           CASE WHEN death_date IS NOT NULL THEN 1 ELSE 0 END AS event, in_survival_population
    FROM s
    UNION ALL
    SELECT patient_id, centre, 'DSS', diagnosis_date,
           COALESCE(death_date, last_contact_date),
           CASE WHEN death_date IS NOT NULL AND death_cause = 'clms' THEN 1 ELSE 0 END, in_survival_population
    FROM s
    UNION ALL
    SELECT patient_id, centre, 'PFS', diagnosis_date,
           COALESCE(LEAST(lr, met, death_date), last_contact_date),
           CASE WHEN lr IS NOT NULL OR met IS NOT NULL OR death_date IS NOT NULL THEN 1 ELSE 0 END,
           in_survival_population
    FROM s
    UNION ALL
    SELECT patient_id, centre, 'RFS', diagnosis_date,
           COALESCE(met, last_contact_date),
           CASE WHEN met IS NOT NULL THEN 1 ELSE 0 END, in_survival_population
    FROM s
    UNION ALL
    SELECT patient_id, centre, 'LRFS', diagnosis_date,
           COALESCE(lr, last_contact_date),
           CASE WHEN lr IS NOT NULL THEN 1 ELSE 0 END, in_survival_population
    FROM s
)
SELECT patient_id, centre, endpoint, diagnosis_date, end_date,
       CAST(end_date - diagnosis_date AS INTEGER) AS time_days,
       CAST(end_date - diagnosis_date AS DOUBLE PRECISION) / {_M} AS time_months,
       event, in_survival_population
FROM e
"""

GENE_STATUS_SQL = """
SELECT m.patient_id, p.centre, m.case_no, m.sample_id, g.gene, g.cn_event, g.cn_coverage, g.cn_state,
       g.mutated, g.biallelic_inactivation, g.gene_table_version
FROM gene_status g
JOIN molecular_sample m ON m.sample_id = g.sample_id
LEFT JOIN patient p ON p.patient_id = m.patient_id
"""

DELIVERY_STATUS_SQL = """
SELECT d.centre, d.delivery_date, d.loaded_at, c.table_name, c.rows_read, c.rows_accepted, c.rows_quarantined
FROM delivery d
JOIN delivery_count c ON c.delivery_id = d.delivery_id
WHERE d.is_current
"""

QUERY_SUMMARY_SQL = """
SELECT q.centre, q.delivery_date, q.table_name, q.rule, q.severity, COUNT(*) AS n_queries
FROM data_query q
GROUP BY q.centre, q.delivery_date, q.table_name, q.rule, q.severity
"""

QUERY_TURNAROUND_SQL = """
SELECT s.centre,
       COUNT(*) FILTER (WHERE s.status = 'open') AS n_open,
       COUNT(*) FILTER (WHERE s.status = 'answered') AS n_answered,
       COUNT(*) FILTER (WHERE s.status = 'resolved') AS n_resolved,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.answered_on - s.opened_on) AS median_days_to_answer,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.resolved_on - s.opened_on) AS median_days_to_resolve
FROM data_query_status s
GROUP BY s.centre
"""

VIEWS: tuple[View, ...] = (
    View(
        "patient_summary",
        "One row per patient with the analysis variables of the study (Table 1, outcomes, follow-up). "
        "Built from patient, tumour, the first operation (the primary excision) and the events.",
        (
            ("patient_id", "Pseudonym of the patient."),
            ("centre", "Centre following the patient."),
            ("sex", "male / female."),
            ("age_at_diagnosis_years", "Age at diagnosis, completed years."),
            ("immunosuppression", "Immunosuppressed at diagnosis."),
            ("diagnosis_date", "Date of pathological diagnosis (time origin of the endpoints)."),
            ("diagnosis_date_precision", "day / month / year (month and year are imputed dates)."),
            ("diagnosis_year", "Year of diagnosis."),
            ("site", "Primary site: head_neck / trunk / upper_limb / lower_limb."),
            ("size_cm", "Tumour size, centimetres."),
            ("size_class", "Size class of the study: <1, 1-2.9, >=3 (cm)."),
            ("presentation", "nodular / ulcerated / vegetative / infiltrated_patch."),
            ("pain", "Pain at presentation."),
            ("on_scar", "Arose on a scar."),
            ("histological_ulceration", "Ulceration on histology."),
            ("fnclcc_grade", "FNCLCC grade (1-3): as recorded, else as recomputed from its components."),
            ("fnclcc_grade_source", "recorded / computed: where fnclcc_grade comes from."),
            ("grade_check", "Recorded vs recomputed grade: consistent / inconsistent / unverifiable."),
            ("grade_label", "Grade in roman numerals: I / II / III."),
            ("grade_ii_iii", "Grade II or III (vs I), the study's dichotomy."),
            ("differentiation_score", "FNCLCC differentiation score 1-3."),
            ("differentiation", "well / moderate / poor."),
            ("differentiation_moderate_poor", "Moderately or poorly differentiated (vs well)."),
            ("mitoses_per_10hpf", "Mitotic count per 10 HPF."),
            ("mitoses_gt_10", "Mitotic index > 10 / 10 HPF (from the count, else the recorded class; null when undecidable, e.g. class 10-19 or '< N' with N > 10)."),
            ("necrosis_score", "FNCLCC necrosis score 0-2."),
            ("necrosis_present", "Any necrosis (score >= 1)."),
            ("invasion", "dermal / dermo_hypodermal."),
            ("ki67_percent", "Ki67 index, percent."),
            ("primary_surgery_date", "Date of the primary excision (first operation)."),
            ("resection_status", "R status of the primary excision: R0 / R1 / R2."),
            ("r0", "Primary excision R0 (vs R1/R2)."),
            ("final_resection_status", "R status after the last excision or re-excision of the primary."),
            ("proposed_margin_cm", "Margin proposed by the tumour board for the primary excision, cm."),
            ("clinical_margin_cm", "Clinical margin of the primary excision, cm."),
            ("histological_margin_cm", "Histological margin of the primary excision, cm."),
            ("adjuvant_radiotherapy", "Adjuvant radiotherapy after the primary excision."),
            ("vital_status", "alive / dead / lost_to_follow_up at last contact; null: no news."),
            ("record_complete", "Chart marked complete by the centre."),
            ("last_contact_date", "Latest of the last-news and death dates (censoring date)."),
            ("follow_up_days", "Days from diagnosis to last contact."),
            ("follow_up_months", "Months (days / 30.4375) from diagnosis to last contact."),
            ("in_survival_population", "In the survival population of the rule in analytics.survival_population_rule "
             f"(default: {DEFAULT_POPULATION}, {MIN_FOLLOW_UP_MONTHS} months): included in the survival analyses."),
            ("local_recurrence", "At least one local recurrence."),
            ("first_local_recurrence_date", "Date of the first local recurrence."),
            ("metastasis", "At least one metastasis."),
            ("first_metastasis_date", "Date of the first metastasis."),
            ("metastasis_sites", "Metastatic sites, comma-separated, alphabetical."),
            ("relapse", "Local recurrence or metastasis (the outcome of the study's Table 2)."),
            ("death", "Died during follow-up."),
            ("death_date", "Date of death."),
            ("death_cause", "clms / other / unknown."),
        ),
        PATIENT_SUMMARY_SQL,
        per_patient=True,
    ),
    View(
        "survival",
        "One row per patient and endpoint (OS, DSS, PFS, RFS = metastasis-free, LRFS): time from diagnosis "
        "and event flag, ready for Kaplan-Meier or Cox models. Filter on in_survival_population for the study's analyses.",
        (
            ("patient_id", "Pseudonym of the patient."),
            ("centre", "Centre following the patient."),
            ("endpoint", "OS / DSS / PFS / RFS (metastasis-free, deaths censored) / LRFS (deaths censored)."),
            ("diagnosis_date", "Time origin."),
            ("end_date", "Date of the event, or of censoring (last contact) when event = 0."),
            ("time_days", "Days from diagnosis to end_date."),
            ("time_months", "Months (days / 30.4375) from diagnosis to end_date."),
            ("event", "1: the endpoint's event occurred at end_date; 0: censored at end_date."),
            ("in_survival_population", "In the survival population (rule: analytics.survival_population_rule)."),
        ),
        SURVIVAL_SQL,
        rows_from="patient_summary",
    ),
    View(
        "gene_profile",
        "One row per profiled sample and gene of the pinned table: copy-number status, mutation, biallelic inactivation, "
        "with the patient's pseudonym.",
        (
            ("patient_id", "Pseudonym of the patient (from the laboratory manifest)."),
            ("centre", "Centre of the patient; null while that patient's centre has not delivered them."),
            ("case_no", "Case number of the laboratory series."),
            ("sample_id", "Laboratory accession of the sample."),
            ("gene", "Gene symbol."),
            ("cn_event", "amplification / gain / homozygous_deletion / heterozygous_deletion / cn_loh / neutral; null: not assessed."),
            ("cn_coverage", "whole / partial gene covered by the event."),
            ("cn_state", "Copy number of the event's segment."),
            ("mutated", "A reportable variant in the gene; null: not sequenced."),
            ("biallelic_inactivation", "Homozygous deletion, or mutation plus loss/LOH of the other allele."),
            ("gene_table_version", "Pinned gene table used."),
        ),
        GENE_STATUS_SQL,
    ),
    View(
        "delivery_status",
        "Freshness: for each source's current delivery, the rows read, accepted and quarantined per table.",
        (
            ("centre", "Source: a centre or molecular (the laboratory)."),
            ("delivery_date", "Date of the delivery currently loaded."),
            ("loaded_at", "When it was loaded (UTC)."),
            ("table_name", "Canonical table."),
            ("rows_read", "Rows read."),
            ("rows_accepted", "Rows accepted (in the warehouse)."),
            ("rows_quarantined", "Rows quarantined (held back, see the centre's data queries)."),
        ),
        DELIVERY_STATUS_SQL,
    ),
    View(
        "query_summary",
        "Number of data queries per source, table, rule and severity for the current deliveries (counts only: "
        "the values stay with the data managers).",
        (
            ("centre", "Source of the delivery."),
            ("delivery_date", "Date of the delivery."),
            ("table_name", "Canonical table concerned (null: whole file)."),
            ("rule", "Rule that raised the queries."),
            ("severity", "error (rows quarantined) / warning."),
            ("n_queries", "Number of queries."),
        ),
        QUERY_SUMMARY_SQL,
    ),
    View(
        "query_turnaround",
        "The centres' turnaround on their data queries (data_query_status): queries open, answered and "
        "resolved, and the median days from the delivery that raised a query to the centre's answer and "
        "to the delivery that fixed it.",
        (
            ("centre", "Source of the deliveries."),
            ("n_open", "Queries raised and not answered."),
            ("n_answered", "Queries the centre answered, still raised by its latest delivery."),
            ("n_resolved", "Queries a later delivery no longer raises."),
            ("median_days_to_answer", "Median days from the delivery that raised a query to the one bringing the answer."),
            ("median_days_to_resolve", "Median days from the delivery that raised a query to the one that fixed it."),
        ),
        QUERY_TURNAROUND_SQL,
    ),
)
VIEWS_BY_NAME = {v.name: v for v in VIEWS}


def reading_copies(sql: str, copies: dict[str, str]) -> str:
    """``sql`` with each ``analytics.<view>`` it names of ``copies`` ({view: relation holding its rows},
    e.g. a temporary table) read from that relation instead."""
    for view, relation in copies.items():
        # (a function as the replacement: the relation's name is inserted as it is, never read as a template)
        sql = re.sub(rf"\b{ANALYTICS_SCHEMA}\.{view}\b", lambda _, relation=relation: relation, sql)
    return sql


def analytics_names(sql: str) -> set[str]:
    """The relations of the ``analytics`` schema ``sql`` names (views and result tables)."""
    return set(re.findall(rf"\b{ANALYTICS_SCHEMA}\.(\w+)", sql))


def base_tables(view: str) -> list[str]:
    """The warehouse's base tables view ``view`` reads."""
    sql = VIEWS_BY_NAME[view].sql
    return [t.name for t in metadata.sorted_tables if re.search(rf"\b(?:FROM|JOIN)\s+{t.name}\b", sql, re.IGNORECASE)]


def views_read(sql: str) -> set[str]:
    """The ``analytics`` views ``sql`` reads, with the views they are built on (``survival``: ``patient_summary``)."""
    found: set[str] = set()
    pending = analytics_names(sql) & set(VIEWS_BY_NAME)
    while pending:
        found |= pending
        pending = {v for name in pending for v in views_read(VIEWS_BY_NAME[name].sql)} - found
    return found


def view_select(name: str, copies: dict[str, str]) -> str:
    """A SELECT of view ``name``'s rows: its copy when ``copies`` holds one, the view itself, or, when it is
    built on views held in ``copies``,
    its SQL reading those copies instead (:func:`reading_copies`), so that they are not computed again
    (``survival`` from a copy of ``patient_summary``)."""
    if name in copies:
        return f"SELECT * FROM {copies[name]}"
    sql = VIEWS_BY_NAME[name].sql
    derived = reading_copies(sql, copies)
    return f"SELECT * FROM {ANALYTICS_SCHEMA}.{name}" if derived == sql else derived.strip()


def view_for_patients(name: str, patients: str) -> str:
    """A SELECT of the rows of the per-patient view ``name`` (:attr:`View.per_patient`) for the patients
    whose ``patient_id`` the query ``patients`` returns: the view's SQL over its base tables restricted to
    those patients (each shadowed by a CTE of the same name), the same rows as the view filtered on
    ``patient_id``. A filter on the view itself is applied after the view is computed for every patient
    (PostgreSQL carries ``IN (...)`` into none of its aggregates): 7 s at 1,000,000 patients, for the
    2,000 of the laboratory series.

    >>> sql = view_for_patients("patient_summary", "SELECT patient_id FROM molecular_sample")
    """
    view = VIEWS_BY_NAME[name]
    if not view.per_patient:
        raise ValueError(f"{view.qualified} is not computed patient by patient: filter the view instead")
    base = [t for t in base_tables(name) if "patient_id" in metadata.tables[t].c]
    # (a CTE may read the table it shadows: in a WITH that is not RECURSIVE, its own name is the table)
    shadows = ", ".join(f"{t} AS (SELECT * FROM {t} WHERE patient_id IN ({patients}))" for t in base)
    sql = view.sql.strip()
    if re.match(r"WITH\s", sql, re.IGNORECASE):
        return f"WITH {shadows}, {sql[4:].lstrip()}"
    return f"WITH {shadows} {sql}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def statements(schema: str = ANALYTICS_SCHEMA) -> list[str]:
    """DDL creating the analytics schema and its documented views (drops them first)."""
    out = [f"CREATE SCHEMA IF NOT EXISTS {schema}"]
    out += [f"DROP VIEW IF EXISTS {schema}.{v.name}" for v in reversed(VIEWS)]
    for v in VIEWS:
        sql = v.sql.replace(f"{ANALYTICS_SCHEMA}.", f"{schema}.")
        out.append(f"CREATE VIEW {schema}.{v.name} AS {sql.strip()}")
        out.append(f"COMMENT ON VIEW {schema}.{v.name} IS {_literal(v.description)}")
        for column, text in v.columns:
            out.append(f"COMMENT ON COLUMN {schema}.{v.name}.{column} IS {_literal(text)}")
    return out


def duckdb_views_current(conn: sa.Connection) -> bool:
    """On DuckDB: whether the ``analytics`` views are the code's — the same SQL as DuckDB renders it
    (``json_deserialize_sql(json_serialize_sql(...))`` is the rendering ``CREATE VIEW`` stores) and
    the same comments. Every step of the night opens the warehouse: recreating unchanged views
    took a write transaction each time."""
    stored = {name: (sql, comment) for name, sql, comment in conn.exec_driver_sql(
        "SELECT view_name, sql, comment FROM duckdb_views() WHERE schema_name = ?", (ANALYTICS_SCHEMA,))}
    comments = {(view, column): comment for view, column, comment in conn.exec_driver_sql(
        "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE schema_name = ?", (ANALYTICS_SCHEMA,))}
    for v in VIEWS:
        rendered = conn.exec_driver_sql("SELECT json_deserialize_sql(json_serialize_sql(?))", (v.sql.strip(),)).scalar()
        if stored.get(v.name) != (f"CREATE VIEW {v.qualified} AS {rendered};", v.description):
            return False
        if {c: comments.get((v.name, c)) for c, _ in v.columns} != dict(v.columns):
            return False
    return True


def create_analytics(bind: sa.Engine | sa.Connection) -> None:
    """(Re)create the ``analytics`` views with their comments, in one transaction."""
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            create_analytics(conn)
        return
    for statement in statements():
        bind.exec_driver_sql(statement)
