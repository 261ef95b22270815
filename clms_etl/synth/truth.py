"""The synthetic truth: what the generator *means* before any centre writes it down.

A :class:`Truth` holds canonical polars frames, one row per patient / operation / event, with
the direct identifiers a real chart carries (they exist only here and in the delivered files;
readers replace them by pseudonyms). Centre writers render a Truth into their own format;
tests compare what readers recover with it.

Conventions: dates are ``pl.Date``; margins in centimetres; mitoses per 10 HPF; absent values
are null. ``patient_key`` = ``"<centre>:<local_id>"`` ties the frames together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

PATIENT_SCHEMA = {
    "patient_key": pl.String,
    "centre": pl.String,
    "local_id": pl.String,
    "last_name": pl.String,
    "first_name": pl.String,
    "birth_date": pl.Date,
    "sex": pl.String,
    "immunosuppression": pl.Boolean,
    "diagnosis_date": pl.Date,
    "vital_status": pl.String,  # alive / dead / lost_to_follow_up / null
    "record_complete": pl.Boolean,  # REDCap's <form>_complete == 2; others True
}

TUMOUR_SCHEMA = {
    "patient_key": pl.String,
    "site": pl.String,
    "site_detail": pl.String,  # anatomical free text (Nimes), e.g. "jambe gauche"
    "size_cm": pl.Float64,
    "presentation": pl.String,
    "pain": pl.Boolean,
    "on_scar": pl.Boolean,
    "consultation_delay_months": pl.Float64,
    "fnclcc_grade": pl.Int8,
    "differentiation_score": pl.Int8,
    "mitoses_per_10hpf": pl.Int32,
    "necrosis_score": pl.Int8,
    "invasion": pl.String,
    "histological_ulceration": pl.Boolean,
    "ki67_percent": pl.Float64,
}

SURGERY_SCHEMA = {
    "patient_key": pl.String,
    "surgery_no": pl.Int32,  # 1 = primary excision
    "surgery_date": pl.Date,
    "surgery_kind": pl.String,
    "proposed_margin_cm": pl.Float64,
    "clinical_margin_cm": pl.Float64,
    "histological_margin_cm": pl.Float64,
    "resection_status": pl.String,
    "adjuvant_radiotherapy": pl.Boolean,
}

EVENT_SCHEMA = {
    "patient_key": pl.String,
    "event_no": pl.Int32,
    "event_kind": pl.String,
    "event_date": pl.Date,
    "metastasis_site": pl.String,  # one row per site: a metastasis in two organs is two rows
    "death_cause": pl.String,
    "treatment": pl.String,
}

SCHEMAS = {
    "patient": PATIENT_SCHEMA,
    "tumour": TUMOUR_SCHEMA,
    "surgery": SURGERY_SCHEMA,
    "event": EVENT_SCHEMA,
}


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[table])


@dataclass
class Truth:
    """Canonical frames of one batch of patients (possibly many centres)."""

    patient: pl.DataFrame
    tumour: pl.DataFrame
    surgery: pl.DataFrame
    event: pl.DataFrame
    extras: dict = field(default_factory=dict)

    def for_centre(self, centre: str) -> Truth:
        keys = self.patient.filter(pl.col("centre") == centre)["patient_key"]
        pick = pl.col("patient_key").is_in(keys.implode())
        return Truth(
            self.patient.filter(pick),
            self.tumour.filter(pick),
            self.surgery.filter(pick),
            self.event.filter(pick),
        )

    def tables(self) -> dict[str, pl.DataFrame]:
        return {"patient": self.patient, "tumour": self.tumour, "surgery": self.surgery, "event": self.event}
