"""Result tables of the molecular summary (see :mod:`clms_etl.results`).

Written whole by every run of the ``molecular_summary`` asset from
:func:`clms_etl.molecular.summary.summarise` and :func:`clms_etl.molecular.table3.table3`.
Pseudonyms and the laboratory's case numbers and accessions only.
"""

from __future__ import annotations

import polars as pl

from clms_etl.results import ResultColumn as C
from clms_etl.results import ResultTable

_CASE = (
    C("case_no", pl.Int32, "Case number of the laboratory series.", nullable=False),
    C("sample_id", pl.String, "Laboratory accession of the sample (molecular_sample.sample_id).", nullable=False),
    C("patient_id", pl.String, "Pseudonym of the patient (from the laboratory manifest)."),
)

MOLECULAR_PROFILE = ResultTable(
    "molecular_profile",
    "One row per case of the laboratory series: genomic profile class with its segment and anomaly counts, "
    "RB1 / TP53 / MYOCD status, biallelic TP53 / RB1 inactivation, mutations, excluded calls, fusion status "
    "(docs/molecular.md).",
    (
        *_CASE,
        C("status", pl.String, "ok / not_contributory (assays failed)."),
        C("cn_assay", pl.String, "OncoScan copy number: tested / not_done / failed."),
        C("ngs_assay", pl.String, "Ion Torrent sequencing: tested / not_done / failed."),
        C("fusion_assay", pl.String, "Archer fusions: tested / not_done / failed."),
        C("profile_class", pl.String, "flat (no segmental anomaly) / simple (1-10) / complex (> 10) / "
          "not_contributory / not_assessed (contributory, copy number not read)."),
        C("segment_count", pl.Int32, "ChAS segments (Gain, Loss, LOH) as exported; null: copy number not assessed."),
        C("anomaly_count", pl.Int32, "Segmental anomalies: segments after dropping LOH inside a loss and merging "
          "same-type segments less than 300 kb apart; decides profile_class."),
        C("n_gains", pl.Int32, "Anomalies of type Gain."),
        C("n_losses", pl.Int32, "Anomalies of type Loss."),
        C("n_cn_loh", pl.Int32, "Anomalies of type LOH (copy-neutral, not inside a loss)."),
        C("rb1_alteration", pl.String, "RB1 status in words ('' = not altered), e.g. 'homozygous deletion'."),
        C("tp53_alteration", pl.String, "TP53 status in words, e.g. 'mutation + copy-neutral LOH'."),
        C("myocd_alteration", pl.String, "MYOCD status in words, e.g. 'amplification (CN 8)'."),
        C("tp53_biallelic", pl.Boolean, "Biallelic TP53 inactivation (homozygous deletion, or mutation with loss / LOH)."),
        C("rb1_biallelic", pl.Boolean, "Biallelic RB1 inactivation."),
        C("biallelic_tp53_or_rb1", pl.Boolean, "Biallelic inactivation of TP53 or RB1; null when not contributory."),
        C("n_mutations", pl.Int32, "Reportable somatic mutations; null: not sequenced."),
        C("mutations", pl.String, "Reportable mutations: gene, HGVS c. and p., VAF (fraction), '; '-separated."),
        C("n_calls_excluded_polymorphism", pl.Int32, "Variant calls excluded as polymorphisms (GMAF >= 0.01)."),
        C("n_calls_excluded_filtered", pl.Int32, "Variant calls excluded as filtered by the caller (FILTER not PASS)."),
        C("n_calls_excluded_other", pl.Int32, "Variant calls excluded otherwise (reference or no call, VAF below the floor)."),
        C("fusion_status", pl.String, "negative (Archer table read, empty) / positive / failed / not_done."),
        C("fusions", pl.String, "Fusions 5'::3', '; '-separated ('' = none); null when not tested."),
    ),
    ("sample_id",),
)

RECURRENT_ALTERATION = ResultTable(
    "recurrent_alteration",
    "Per gene and alteration type: cases altered among cases assessed (contributory cases with copy number for "
    "copy-number alterations, sequenced cases for mutations, fusion-tested cases for fusions).",
    (
        C("gene", pl.String, "Gene symbol.", nullable=False),
        C("alteration", pl.String, "amplification / gain / homozygous_deletion / heterozygous_deletion / cn_loh / "
          "deletion (homozygous or heterozygous) / deletion_or_loh / mutation / fusion / biallelic_inactivation / "
          "any (any of these).", nullable=False),
        C("cases", pl.Int32, "Cases with the alteration."),
        C("assessed_cases", pl.Int32, "Cases in which the alteration could be observed (the denominator)."),
        C("percent", pl.Float64, "100 x cases / assessed_cases, one decimal."),
        C("recurrent", pl.Boolean, "Altered in at least 2 cases."),
    ),
    ("gene", "alteration"),
)

SOMATIC_MUTATION = ResultTable(
    "somatic_mutation",
    "Reportable somatic mutations of the Ion Torrent panel (FILTER PASS, called genotype, VAF >= 2 %, not a "
    "polymorphism), hg19.",
    (
        *_CASE,
        C("gene", pl.String, "Gene symbol."),
        C("chrom", pl.String, "Chromosome (hg19, without 'chr')."),
        C("pos", pl.Int64, "Position (hg19, 1-based).", nullable=False),
        C("ref", pl.String, "Reference allele (+ strand)."),
        C("alt", pl.String, "Alternate allele (+ strand).", nullable=False),
        C("transcript", pl.String, "RefSeq transcript of the annotation."),
        C("hgvs_c", pl.String, "HGVS coding change, e.g. c.736A>G."),
        C("hgvs_p", pl.String, "HGVS protein change, e.g. p.Met246Val."),
        C("function", pl.String, "Effect as annotated by Ion Reporter (missense, nonsense, ...)."),
        C("vaf", pl.Float64, "Variant allele fraction (0-1): FAO / FDP."),
        C("depth", pl.Int32, "Flow-evaluator read depth (FDP)."),
    ),
    ("sample_id", "pos", "alt"),
)

TABLE3 = ResultTable(
    "table3",
    "Table 3: one row per profiled case with its clinical features, genomic profile, RB1 / TP53 / MYOCD "
    "alterations, mutations with VAF, fusions and outcome.",
    (
        C("case_no", pl.Int32, "Case number of the laboratory series.", nullable=False),
        C("patient_id", pl.String, "Pseudonym of the patient."),
        C("centre", pl.String, "Centre following the patient (null if the patient is not in the clinical data)."),
        C("site", pl.String, "Primary site."),
        C("size_cm", pl.Float64, "Tumour size, cm."),
        C("grade", pl.String, "FNCLCC grade I / II / III."),
        C("invasion", pl.String, "Depth of invasion: dermal / dermo_hypodermal."),
        C("resection_status", pl.String, "R status of the primary excision."),
        C("final_resection_status", pl.String, "R status after the last excision of the primary."),
        C("histological_margin_cm", pl.Float64, "Histological margin of the primary excision, cm."),
        C("profile_class", pl.String, "flat / simple / complex / not_contributory / not_assessed."),
        C("anomaly_count", pl.Int32, "Segmental anomalies (see molecular_profile)."),
        C("rb1", pl.String, "RB1 alteration in words ('' = none)."),
        C("tp53", pl.String, "TP53 alteration in words."),
        C("myocd", pl.String, "MYOCD alteration in words."),
        C("biallelic_tp53_or_rb1", pl.Boolean, "Biallelic TP53 or RB1 inactivation."),
        C("mutations", pl.String, "Reportable mutations with VAF (fraction)."),
        C("fusions", pl.String, "Fusions, or 'none' (tested negative) / 'failed' / 'not done'."),
        C("local_recurrence", pl.Boolean, "Local recurrence during follow-up."),
        C("metastasis", pl.Boolean, "Metastasis during follow-up."),
        C("vital_status", pl.String, "alive / dead / lost_to_follow_up at last contact."),
        C("death_cause", pl.String, "clms / other / unknown when dead."),
        C("follow_up_months", pl.Float64, "Months from diagnosis to last contact."),
    ),
    ("case_no",),
)

TABLES: tuple[ResultTable, ...] = (MOLECULAR_PROFILE, RECURRENT_ALTERATION, SOMATIC_MUTATION, TABLE3)
