"""Canonical frames straight from the synthetic truth: a "perfect reader" for the warehouse.

The warehouse's tests and benchmark use it to exercise loads independently of the readers and
of validation: it turns a :class:`~clms_etl.synth.truth.Truth` (and the laboratory's twin
cases) into what a reader and validation would produce — pseudonyms instead of hospital
numbers, age at diagnosis instead of birth date, no names — wrapped in a
:class:`SyntheticDelivery` with the shape of ``clms_etl.validate.ValidatedDelivery``
(``accepted``, ``quarantined``, ``queries``, ``accounting``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from clms_etl import model
from clms_etl.data_queries import QUERY_SCHEMA
from clms_etl.keys import pseudonym

ACCOUNTING_SCHEMA = {"table": pl.String, "rows_read": pl.Int64, "rows_accepted": pl.Int64,
                     "rows_quarantined": pl.Int64}


@dataclass
class SyntheticDelivery:
    """What validation hands the warehouse (duck-typed like ``ValidatedDelivery``)."""

    centre: str
    delivery_date: dt.date
    accepted: dict[str, pl.DataFrame]
    quarantined: dict[str, pl.DataFrame] = field(default_factory=dict)
    queries: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=QUERY_SCHEMA))
    accounting: pl.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.accounting is None:
            self.accounting = accounting_of(self.accepted, self.quarantined)


def accounting_of(accepted: dict[str, pl.DataFrame], quarantined: dict[str, pl.DataFrame] | None = None) -> pl.DataFrame:
    quarantined = quarantined or {}
    rows = []
    for table, frame in accepted.items():
        q = quarantined.get(table)
        nq = 0 if q is None else q.height
        rows.append({"table": table, "rows_read": frame.height + nq, "rows_accepted": frame.height,
                     "rows_quarantined": nq})
    return pl.DataFrame(rows, schema=ACCOUNTING_SCHEMA)


def _provenance(frame: pl.DataFrame, table: str, source_file: str) -> pl.DataFrame:
    n = frame.height
    return frame.with_columns(
        pl.Series("row_id", [f"{table}:{i + 1}" for i in range(n)], dtype=pl.String),
        pl.lit(source_file).alias("source_file"),
        pl.lit(None, dtype=pl.String).alias("source_sheet"),
        pl.Series("source_row", np.arange(2, n + 2), dtype=pl.Int64),
    )


def clinical_frames(truth, key: bytes, source_file: str = "synthetic.csv") -> dict[str, pl.DataFrame]:
    """Canonical patient / tumour / surgery / event frames of a (one-centre or multi-centre) Truth."""
    pat = truth.patient
    ids = [pseudonym(key, c, l) for c, l in zip(pat["centre"].to_list(), pat["local_id"].to_list())]
    keymap = pl.DataFrame({"patient_key": pat["patient_key"], "patient_id": ids})
    birth, diag = pat["birth_date"], pat["diagnosis_date"]
    ages = [
        None if b is None or d is None else d.year - b.year - ((d.month, d.day) < (b.month, b.day))
        for b, d in zip(birth.to_list(), diag.to_list())
    ]
    patient = pat.with_columns(
        patient_id=pl.Series(ids, dtype=pl.String),
        age_at_diagnosis_years=pl.Series(ages, dtype=pl.Int16),
        diagnosis_date_precision=pl.when(pl.col("diagnosis_date").is_null()).then(None).otherwise(pl.lit("day")),
    )
    mitotic = (pl.when(pl.col("mitoses_per_10hpf") <= 9).then(1).when(pl.col("mitoses_per_10hpf") <= 19).then(2)
               .when(pl.col("mitoses_per_10hpf").is_not_null()).then(3))
    total = pl.col("differentiation_score") + mitotic + pl.col("necrosis_score")
    tumour = truth.tumour.join(keymap, on="patient_key", how="left").with_columns(
        fnclcc_grade_computed=pl.when(total <= 3).then(1).when(total <= 5).then(2).when(total.is_not_null()).then(3)
        .cast(pl.Int8),
        mitoses_is_upper_bound=pl.lit(False),
    ).with_columns(
        grade_check=pl.when(pl.col("fnclcc_grade").is_null()).then(None)
        .when(pl.col("fnclcc_grade_computed").is_null()).then(pl.lit("unverifiable"))
        .when(pl.col("fnclcc_grade") == pl.col("fnclcc_grade_computed")).then(pl.lit("consistent"))
        .otherwise(pl.lit("inconsistent"))
    )
    surgery = truth.surgery.join(keymap, on="patient_key", how="left").with_columns(
        surgery_date_precision=pl.lit("day"))
    event = truth.event.join(keymap, on="patient_key", how="left").with_columns(event_date_precision=pl.lit("day"))
    frames = {"patient": patient, "tumour": tumour, "surgery": surgery, "event": event}
    return {t: model.conform(t, _provenance(f, t, source_file)) for t, f in frames.items()}


def molecular_frames(cases, links: dict[int, tuple[str, str]], key: bytes) -> dict[str, pl.DataFrame]:
    """Canonical molecular frames of ``clms_etl.synth.molecular`` cases (what a lab reader yields)."""
    samples, segments, variants, fusions = [], [], [], []
    for case in cases:
        centre, local_id = links[case.case_no]
        done = case.status == "ok"
        samples.append({
            "patient_id": pseudonym(key, centre, local_id), "case_no": case.case_no, "sample_id": case.sample_id,
            "status": case.status, "cn_assay": "tested" if done else "failed",
            "ngs_assay": "tested" if done else "failed", "fusion_assay": "tested" if done else "failed",
            "row_id": f"manifest:{case.case_no}", "source_file": "manifest.csv", "source_row": case.case_no + 1,
        })
        for i, s in enumerate(case.segments):
            segments.append({
                "sample_id": case.sample_id, "chrom": s.chrom, "start_bp": s.start, "end_bp": s.end,
                "cn_state": s.cn_state, "segment_type": s.kind, "row_id": f"chas/{case.sample_id}:{i + 1}",
                "source_file": f"chas/{case.sample_id}.segments.txt", "source_row": i + 2,
            })
        for i, m in enumerate(case.mutations):
            variants.append({
                "sample_id": case.sample_id, "chrom": m.chrom, "pos": m.pos, "ref": m.ref, "alt": m.alt,
                "gene": m.gene, "transcript": m.transcript, "hgvs_c": m.hgvs_c, "hgvs_p": m.hgvs_p,
                "function": m.function, "vaf": m.vaf, "depth": m.depth, "filter": "PASS", "genotype": "0/1",
                "reportable": True, "row_id": f"ngs/{case.sample_id}:{i + 1}",
                "source_file": f"ngs/{case.sample_id}.vcf", "source_row": i + 1,
            })
        for i, f in enumerate(case.fusions):
            g5, g3 = f.split(":")
            fusions.append({
                "sample_id": case.sample_id, "gene_5p": g5, "gene_3p": g3, "reads": 100, "unique_start_sites": 20,
                "percent_gsp2_reads": 50.0, "strong_evidence": True, "row_id": f"fusions/{case.sample_id}:{i + 1}",
                "source_file": f"fusions/{case.sample_id}.fusions.tsv", "source_row": i + 2,
            })
    tables = {"molecular_sample": samples, "cn_segment": segments, "variant": variants, "fusion": fusions}
    return {t: pl.DataFrame(rows, schema=model.TABLES[t]) if rows else model.empty(t) for t, rows in tables.items()}


def twin_deliveries(key: bytes, delivery_date: dt.date, seed: int = 0) -> dict[str, SyntheticDelivery]:
    """The twin cohort as five deliveries: the four centres and the laboratory."""
    from clms_etl.synth.generate import centre_rng
    from clms_etl.synth.molecular import twin_cases
    from clms_etl.synth.twin import CENTRE_SIZES, build_twin
    from clms_etl.vocabulary import LABORATORY

    truth = build_twin(seed)
    out = {}
    for centre in CENTRE_SIZES:  # the twin's centres
        part = truth.for_centre(centre)
        out[centre] = SyntheticDelivery(centre, delivery_date, clinical_frames(part, key, f"{centre}.synthetic"))
    cases = twin_cases(centre_rng(seed, LABORATORY))
    out[LABORATORY] = SyntheticDelivery(LABORATORY, delivery_date,
                                        molecular_frames(cases, truth.extras["molecular_links"], key))
    return out
