"""The canonical model every reader produces (and the warehouse stores).

Each canonical frame carries, besides its domain columns, its provenance so that any
problem found later can be sent back to the exact cell: ``row_id`` (unique within one
delivery read), ``source_file``, ``source_sheet`` (Excel only) and ``source_row`` (the row a
data manager sees: header = 1). Identifiers never enter these frames: ``patient_id`` is the
pseudonym and the age at diagnosis replaces the birth date.

Dates that were partial in the chart are imputed (mid-month, 1 July) and carry a precision
column (``day``/``month``/``year``).
"""

from __future__ import annotations

import polars as pl

PROVENANCE = {
    "row_id": pl.String,
    "source_file": pl.String,
    "source_sheet": pl.String,
    "source_row": pl.Int64,
}

PATIENT = {
    "patient_id": pl.String,
    "centre": pl.String,
    "sex": pl.String,
    "age_at_diagnosis_years": pl.Int16,
    "immunosuppression": pl.Boolean,
    "diagnosis_date": pl.Date,
    "diagnosis_date_precision": pl.String,
    "vital_status": pl.String,
    "record_complete": pl.Boolean,
    **PROVENANCE,
}

TUMOUR = {
    "patient_id": pl.String,
    "site": pl.String,
    "site_detail": pl.String,
    "size_cm": pl.Float64,
    "presentation": pl.String,
    "pain": pl.Boolean,
    "on_scar": pl.Boolean,
    "consultation_delay_months": pl.Float64,
    "fnclcc_grade": pl.Int8,  # as recorded
    "fnclcc_grade_computed": pl.Int8,  # from the three components when all are known
    "grade_check": pl.String,  # consistent / inconsistent / unverifiable (set by validation)
    "differentiation_score": pl.Int8,
    "mitoses_per_10hpf": pl.Int32,
    "mitoses_is_upper_bound": pl.Boolean,  # "< 5" written in the chart: stored as 5, flagged
    "mitosis_class": pl.String,  # class recorded in the chart ("0-9", "10-19", ">=20"), if any
    "necrosis_score": pl.Int8,
    "invasion": pl.String,
    "histological_ulceration": pl.Boolean,
    "ki67_percent": pl.Float64,
    **PROVENANCE,
}

SURGERY = {
    "patient_id": pl.String,
    "surgery_no": pl.Int32,
    "surgery_date": pl.Date,
    "surgery_date_precision": pl.String,
    "surgery_kind": pl.String,
    "proposed_margin_cm": pl.Float64,
    "clinical_margin_cm": pl.Float64,
    "histological_margin_cm": pl.Float64,
    "resection_status": pl.String,
    "adjuvant_radiotherapy": pl.Boolean,
    **PROVENANCE,
}

EVENT = {
    "patient_id": pl.String,
    "event_no": pl.Int32,
    "event_kind": pl.String,
    "event_date": pl.Date,
    "event_date_precision": pl.String,
    "metastasis_site": pl.String,
    "death_cause": pl.String,
    "treatment": pl.String,
    **PROVENANCE,
}

MOLECULAR_SAMPLE = {
    "patient_id": pl.String,
    "case_no": pl.Int32,
    "sample_id": pl.String,
    "status": pl.String,  # ok / not_contributory
    "cn_assay": pl.String,  # tested / not_done / failed
    "ngs_assay": pl.String,
    "fusion_assay": pl.String,
    **PROVENANCE,
}

CN_SEGMENT = {
    "sample_id": pl.String,
    "chrom": pl.String,
    "start_bp": pl.Int64,
    "end_bp": pl.Int64,
    "cn_state": pl.Float64,  # null for LOH
    "segment_type": pl.String,  # Gain / Loss / LOH
    **PROVENANCE,
}

VARIANT = {
    "sample_id": pl.String,
    "chrom": pl.String,
    "pos": pl.Int64,
    "ref": pl.String,
    "alt": pl.String,
    "gene": pl.String,
    "transcript": pl.String,
    "hgvs_c": pl.String,
    "hgvs_p": pl.String,
    "function": pl.String,
    "vaf": pl.Float64,  # fraction 0-1
    "depth": pl.Int32,
    "gmaf": pl.Float64,
    "filter": pl.String,
    "genotype": pl.String,
    "reportable": pl.Boolean,
    "exclusion_reason": pl.String,  # polymorphism / filtered / reference_call / low_vaf
    **PROVENANCE,
}

FUSION = {
    "sample_id": pl.String,
    "gene_5p": pl.String,
    "gene_3p": pl.String,
    "breakpoint_5p": pl.String,
    "breakpoint_3p": pl.String,
    "reads": pl.Int32,
    "unique_start_sites": pl.Int32,
    "percent_gsp2_reads": pl.Float64,
    "strong_evidence": pl.Boolean,
    **PROVENANCE,
}

CLINICAL_TABLES = {"patient": PATIENT, "tumour": TUMOUR, "surgery": SURGERY, "event": EVENT}
MOLECULAR_TABLES = {"molecular_sample": MOLECULAR_SAMPLE, "cn_segment": CN_SEGMENT, "variant": VARIANT, "fusion": FUSION}
TABLES = {**CLINICAL_TABLES, **MOLECULAR_TABLES}


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=TABLES[table])


def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Columns of ``table`` in canonical order and types (missing columns -> null)."""
    schema = TABLES[table]
    return frame.select(
        [
            (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in schema.items()
        ]
    )
