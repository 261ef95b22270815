"""The molecular series as a cBioPortal study folder (docs.cbioportal.org, "File Formats").

:func:`write_study` writes, from a :class:`~clms_etl.molecular.summary.MolecularSummary` and
``analytics.patient_summary``:

=================================  =================================================================
``meta_study.txt``                 study ``clms_registry``, ``type_of_cancer: lms``, hg19
``data_clinical_patient.txt``      4-line attribute header; OS / DFS, sex, age band, outcome
``data_clinical_sample.txt``       one sample per case of the lab series; profile class, ...
``data_mutations.txt``             MAF (reportable somatic mutations, ``Entrez_Gene_Id`` pinned)
``data_cna.txt``                   discrete copy number (-2 / -1 / 0 / 1 / 2) of the pinned genes
``data_cna_hg19.seg``              ChAS segments, ``seg.mean`` = log2(CN / 2)
``data_sv.txt``                    Archer fusions (header only when there is none)
``case_lists/``                    all, sequenced, cna, cnaseq, sv
``data_gene_panel_matrix.txt``     per sample, the gene panel of its mutations and copy-number data
``gene_panels/``                   the panels themselves (``importGenePanel.pl`` loads them first)
=================================  =================================================================

each data file with its ``meta_*.txt``. Conventions:

* **Identifiers**: ``PATIENT_ID`` is the registry pseudonym; ``SAMPLE_ID`` is
  ``<pseudonym>-M<case number>`` (the laboratory's accession is not exported). No name,
  hospital number, birth or event date: times are in months from diagnosis.
* **Shareable** (a portal shows it to every user): the quasi-identifiers are generalised
  before writing (:mod:`clms_etl.disclosure`): ``AGE`` is the lower bound of the 10-year
  band in years (60 = 60-69, 90 = 90 and over), neither the centre nor the year of diagnosis is
  written; then primary site, age band and sex are suppressed (``NA``), in that order, in
  groups smaller than the threshold (default :data:`~clms_etl.disclosure.DEFAULT_K_THRESHOLD`)
  until every group of sex x age band x site reaches it. A study that cannot reach it is not
  written (:class:`~clms_etl.disclosure.DisclosureBlocked`); ``meta_study.txt``'s description
  states the smallest group and what was suppressed.
* **OS**: death of any cause, months from diagnosis to death or last contact
  (``0:LIVING`` / ``1:DECEASED``). A patient recorded dead whose death has no date (its event
  quarantined, say) is ``1:DECEASED`` with the months missing: never living.
* **Gene panels** (``clms_etl/data/gene_panels.toml``): the laboratory's NGS panel and the genes
  whose copy number the warehouse computes (``genes_hg19.tsv``); each profiled sample names its
  panel in the matrix, so a gene outside it reads "not profiled", not "not altered". The MAF's
  ``SWISSPROT`` column gives the panel's UniProtKB/Swiss-Prot entry name of each gene.
* **Structural variants**: the optional genomic columns (region, region number, transcript,
  contig of each site) are present, blank: Archer reports breakpoints, not exons. **DFS**: first local recurrence or metastasis, months from
  diagnosis to it or to last contact (``0:DiseaseFree`` / ``1:Recurred/Progressed``); deaths
  without relapse are censored, as in the study's recurrence endpoints.
* **Discrete CNA** (``clms_etl.warehouse.genes`` thresholds): homozygous deletion -2,
  heterozygous deletion -1, neutral and copy-neutral LOH 0, gain 1, amplification 2;
  partial-gene events count like whole-gene ones (the nuance stays in the warehouse).
* **Segments**: only the segments ChAS reported (unlisted regions are copy-neutral);
  ``loc.start`` is 0-based and ``loc.end`` exclusive (the UCSC convention cBioPortal's
  validator names); ``num.mark`` is 0 because the warehouse does not keep ChAS marker counts;
  LOH segments have ``seg.mean`` 0; CN 0 is floored at :data:`SEG_MIN_CN` before the log.
* Not-contributory cases are samples of the study (``PROFILE_CLASS`` says so) but belong to
  no profile's case list.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from clms_etl.disclosure import DEFAULT_K_THRESHOLD, DisclosureBlocked, KAnonymity, age_band_floor, suppress_until_k
from clms_etl.molecular.summary import MolecularSummary
from clms_etl.warehouse.analytics import DAYS_PER_MONTH
from clms_etl.vocabulary import code_label
from clms_etl.warehouse.genes import entrez_ids

STUDY_ID = "clms_registry"
CANCER_TYPE = "lms"  # OncoTree code of leiomyosarcoma, lower case as cBioPortal's type_of_cancer
NCBI_BUILD = "GRCh37"
GENOME = "hg19"
CENTER = "clms-registry"
SEG_MIN_CN = 0.1  # a homozygous deletion (CN 0) has no log; 0.1 copies gives seg.mean -4.32

# Entrez Gene ids of panel genes outside the pinned CN table that the laboratory reports
# (NCBI Gene); genes of clms_etl/data/genes_hg19.tsv take their id from that table.
PANEL_ENTREZ = {"BRAF": 673, "EGFR": 1956, "KDR": 3791, "KIT": 3815, "KRAS": 3845, "PIK3CA": 5290}

CNA_VALUES = {"homozygous_deletion": -2, "heterozygous_deletion": -1, "neutral": 0, "cn_loh": 0, "gain": 1,
              "amplification": 2}
# Ion Reporter "function" -> MAF Variant_Classification
VARIANT_CLASSIFICATION = {
    "missense": "Missense_Mutation", "nonsense": "Nonsense_Mutation", "synonymous": "Silent",
    "frameshiftDeletion": "Frame_Shift_Del", "frameshiftInsertion": "Frame_Shift_Ins",
    "frameshiftBlockSubstitution": "Frame_Shift_Del", "nonframeshiftDeletion": "In_Frame_Del",
    "nonframeshiftInsertion": "In_Frame_Ins", "stoploss": "Nonstop_Mutation", "splice": "Splice_Site",
    "startloss": "Translation_Start_Site",
}  # fmt: skip
_AA3 = {
    "Ala": "A", "Arg": "R", "Asn": "N", "Asp": "D", "Cys": "C", "Gln": "Q", "Glu": "E", "Gly": "G", "His": "H",
    "Ile": "I", "Leu": "L", "Lys": "K", "Met": "M", "Phe": "F", "Pro": "P", "Ser": "S", "Thr": "T", "Trp": "W",
    "Tyr": "Y", "Val": "V", "Ter": "*", "Sec": "U",
}  # fmt: skip
ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")

MAF_COLUMNS = (
    "Hugo_Symbol", "Entrez_Gene_Id", "Center", "NCBI_Build", "Chromosome", "Start_Position", "End_Position",
    "Strand", "Variant_Classification", "Variant_Type", "Reference_Allele", "Tumor_Seq_Allele1",
    "Tumor_Seq_Allele2", "Tumor_Sample_Barcode", "Mutation_Status", "Validation_Status", "HGVSc", "HGVSp",
    "HGVSp_Short", "RefSeq", "SWISSPROT", "t_ref_count", "t_alt_count",
)  # fmt: skip
SEG_COLUMNS = ("ID", "chrom", "loc.start", "loc.end", "num.mark", "seg.mean")
SV_COLUMNS = (
    "Sample_Id", "SV_Status", "Site1_Hugo_Symbol", "Site1_Entrez_Gene_Id", "Site1_Chromosome", "Site1_Position",
    "Site2_Hugo_Symbol", "Site2_Entrez_Gene_Id", "Site2_Chromosome", "Site2_Position", "NCBI_Build", "Class",
    "Event_Info", "Tumor_Split_Read_Count", "Comments",
    # optional genomic columns of the format (their absence draws validateData.py's "Missing genomic
    # information" warning); Archer's breakpoints give neither exon nor transcript: left blank
    "Site1_Region", "Site1_Region_Number", "Site1_Ensembl_Transcript_Id", "Site1_Contig",
    "Site2_Region", "Site2_Region_Number", "Site2_Ensembl_Transcript_Id", "Site2_Contig",
)  # fmt: skip
SV_BLANK_COLUMNS = 8  # the optional genomic columns above
GENE_PANELS = "gene_panels.toml"


# -- attributes --------------------------------------------------------------------------------
# (column, display name, description, datatype, priority)
PATIENT_ATTRIBUTES = (
    ("PATIENT_ID", "Patient Identifier", "Registry pseudonym of the patient", "STRING", "1"),
    ("SEX", "Sex", "Sex of the patient", "STRING", "1"),
    ("AGE", "Age at diagnosis (10-year band)",
     "Age at diagnosis in years, rounded down to its 10-year band (60: 60-69; 90: 90 and over)", "NUMBER", "1"),
    ("IMMUNOSUPPRESSION", "Immunosuppression", "Immunosuppressed at diagnosis", "STRING", "1"),
    ("OS_STATUS", "Overall Survival Status", "Death of any cause", "STRING", "1"),
    ("OS_MONTHS", "Overall Survival (Months)", "Months from diagnosis to death or last contact", "NUMBER", "1"),
    ("DFS_STATUS", "Disease Free Status", "First local recurrence or metastasis (deaths censored)", "STRING", "1"),
    ("DFS_MONTHS", "Disease Free (Months)", "Months from diagnosis to first relapse or last contact", "NUMBER", "1"),
    ("LOCAL_RECURRENCE", "Local recurrence", "Local recurrence during follow-up", "STRING", "1"),
    ("METASTASIS", "Metastasis", "Metastasis during follow-up", "STRING", "1"),
    ("VITAL_STATUS", "Vital status", "alive / dead / lost to follow-up at last contact", "STRING", "1"),
)
SAMPLE_ATTRIBUTES = (
    ("SAMPLE_ID", "Sample Identifier", "Pseudonym of the patient and case number of the laboratory series", "STRING", "1"),
    ("PATIENT_ID", "Patient Identifier", "Registry pseudonym of the patient", "STRING", "1"),
    ("CASE_NO", "Case number", "Case number of the laboratory series", "NUMBER", "1"),
    ("CANCER_TYPE", "Cancer Type", "Cancer type", "STRING", "1"),
    ("CANCER_TYPE_DETAILED", "Cancer Type Detailed", "Cancer type, detailed", "STRING", "1"),
    ("ONCOTREE_CODE", "Oncotree Code", "OncoTree code", "STRING", "1"),
    ("SAMPLE_TYPE", "Sample Type", "Primary tumour", "STRING", "1"),
    ("PRIMARY_SITE", "Primary site", "Site of the primary tumour", "STRING", "1"),
    ("TUMOR_SIZE_CM", "Tumour size (cm)", "Largest diameter of the primary tumour, cm", "NUMBER", "1"),
    ("FNCLCC_GRADE", "FNCLCC grade", "FNCLCC grade I / II / III", "STRING", "1"),
    ("INVASION", "Invasion", "Depth of invasion: dermal / dermo-hypodermal", "STRING", "1"),
    ("RESECTION_STATUS", "Resection status", "R status after the last excision of the primary", "STRING", "1"),
    ("PROFILE_CLASS", "Genomic profile", "flat / simple / complex (> 10 anomalies) / not contributory", "STRING", "1"),
    ("SEGMENTAL_ANOMALIES", "Segmental anomalies", "Copy-number anomalies counted for the profile class", "NUMBER", "1"),
    ("BIALLELIC_TP53_RB1", "Biallelic TP53/RB1", "Biallelic inactivation of TP53 or RB1", "STRING", "1"),
    ("FUSION_STATUS", "Fusion status", "Archer: negative / positive / failed / not done", "STRING", "1"),
)


def sample_id(patient_id: str | None, case_no: int) -> str:
    """The study's sample id: ``<pseudonym>-M<case number>`` (``UNLINKED-M<n>`` without a pseudonym)."""
    return f"{patient_id or 'UNLINKED'}-M{case_no}"


def patient_id(patient: str | None, case_no: int) -> str:
    return patient or f"UNLINKED-{case_no}"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("\t", " ").replace("\n", " ")


def _write_table(path: Path, columns: Iterable[str], rows: Iterable[Iterable], header: list[str] | None = None) -> None:
    lines = list(header or [])
    lines.append("\t".join(columns))
    lines += ["\t".join(_cell(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_meta(path: Path, fields: dict[str, str]) -> None:
    path.write_text("".join(f"{k}: {v}\n" for k, v in fields.items()), encoding="utf-8")


def _clinical_header(attributes) -> list[str]:
    """The four ``#`` lines above a clinical file's column header (name, description, datatype, priority)."""
    return ["#" + "\t".join(a[i] for a in attributes) for i in (1, 2, 3, 4)]


def hgvsp_short(hgvs_p: str | None) -> str | None:
    """p.Met246Val -> p.M246V (three-letter amino acids to one letter)."""
    if not hgvs_p:
        return None
    return re.sub("|".join(_AA3), lambda m: _AA3[m.group(0)], hgvs_p)


def maf_alleles(pos: int, ref: str, alt: str) -> tuple[int, int, str, str, str]:
    """VCF (pos, ref, alt) -> MAF (start, end, ref, alt, Variant_Type), anchor base dropped for indels."""
    if len(ref) == len(alt):
        kind = {1: "SNP", 2: "DNP", 3: "TNP"}.get(len(ref), "ONP")
        return pos, pos + len(ref) - 1, ref, alt, kind
    if len(ref) > len(alt) and ref.startswith(alt):  # deletion after the anchor base(s)
        deleted = ref[len(alt):]
        start = pos + len(alt)
        return start, start + len(deleted) - 1, deleted, "-", "DEL"
    if len(alt) > len(ref) and alt.startswith(ref):  # insertion between pos+len(ref)-1 and the next base
        start = pos + len(ref) - 1
        return start, start + 1, "-", alt[len(ref):], "INS"
    return pos, pos + len(ref) - 1, ref, alt, "ONP" if len(ref) > 1 else "SNP"


def _months(days: int | None) -> float | None:
    return None if days is None else days / DAYS_PER_MONTH


# quasi-identifiers the study publishes, least important to the portal's users first (suppressed first)
SUPPRESSION_ORDER = ("site", "age_band", "sex")
BLOCKED_HOW = "clms-etl export cbioportal --k-threshold N, or the cbioportal_study asset's config k_threshold"


# the analytics.patient_summary columns the study's clinical files read (the quasi-identifiers, the
# outcome dates and the tumour); the warehouse is asked for these only
CLINICAL_COLUMNS = (
    "patient_id", "sex", "age_at_diagnosis_years", "site", "immunosuppression", "diagnosis_date",
    "last_contact_date", "first_local_recurrence_date", "first_metastasis_date", "death_date", "vital_status",
    "local_recurrence", "metastasis", "size_cm", "grade_label", "invasion", "final_resection_status",
)  # fmt: skip


def protected_clinical(summary: MolecularSummary, clinical: pl.DataFrame,
                       k_threshold: int = DEFAULT_K_THRESHOLD) -> tuple[pl.DataFrame, KAnonymity]:
    """One row per patient of the study (``PATIENT_ID`` as written) with the quasi-identifiers it
    publishes, generalised (age band; no centre, no diagnosis year) and locally suppressed until
    every group reaches ``k_threshold``. Raises :class:`DisclosureBlocked` when it cannot."""
    ids = pl.DataFrame(
        [{"PATIENT_ID": patient_id(r["patient_id"], r["case_no"]), "patient_id": r["patient_id"]}
         for r in summary.cases.iter_rows(named=True)],
        schema={"PATIENT_ID": pl.String, "patient_id": pl.String}).unique("PATIENT_ID", maintain_order=True)
    wanted = ["patient_id", "sex", "age_at_diagnosis_years", "site"]
    rows = ids.join(clinical.select([c for c in wanted if c in clinical.columns]), on="patient_id", how="left")
    rows = rows.with_columns(*[pl.lit(None, pl.String).alias(c) for c in ("sex", "site") if c not in rows.columns])
    age = pl.col("age_at_diagnosis_years") if "age_at_diagnosis_years" in rows.columns else pl.lit(None, pl.Int32)
    rows = rows.with_columns(age_band_floor(age).alias("age_band")).drop("age_at_diagnosis_years", strict=False)
    protected, k = suppress_until_k(rows, SUPPRESSION_ORDER, k_threshold)
    if not k.passes:
        raise DisclosureBlocked("cBioPortal study", k, BLOCKED_HOW)
    return protected, k


def _patients(summary: MolecularSummary, clinical: pl.DataFrame, protected: pl.DataFrame) -> list[dict]:
    by_id = {r["patient_id"]: r for r in clinical.iter_rows(named=True)}
    qi = {r["PATIENT_ID"]: r for r in protected.iter_rows(named=True)}
    rows, seen = [], set()
    for case in summary.cases.iter_rows(named=True):
        pid = patient_id(case["patient_id"], case["case_no"])
        if pid in seen:
            continue
        seen.add(pid)
        c, q = by_id.get(case["patient_id"], {}), qi[pid]
        diag, last = c.get("diagnosis_date"), c.get("last_contact_date")
        relapse = min([d for d in (c.get("first_local_recurrence_date"), c.get("first_metastasis_date")) if d],
                      default=None)
        death = c.get("death_date")
        vital = c.get("vital_status")
        dead = death is not None or vital == "dead"  # dead without a date: its death event was quarantined
        os_end = death if death is not None else None if dead else last
        os_days = None if diag is None or os_end is None else (os_end - diag).days
        dfs_end = relapse or last
        dfs_days = None if diag is None or dfs_end is None else (dfs_end - diag).days
        rows.append({
            "PATIENT_ID": pid, "SEX": q.get("sex"), "AGE": q.get("age_band"),
            "IMMUNOSUPPRESSION": c.get("immunosuppression"),
            "OS_STATUS": None if not c else "1:DECEASED" if dead else "0:LIVING",
            "OS_MONTHS": _months(os_days),
            "DFS_STATUS": None if not c else "1:Recurred/Progressed" if relapse is not None else "0:DiseaseFree",
            "DFS_MONTHS": _months(dfs_days),
            "LOCAL_RECURRENCE": c.get("local_recurrence"), "METASTASIS": c.get("metastasis"),
            "VITAL_STATUS": None if vital is None else code_label("vital_status", vital),
        })
    return rows


def _samples(summary: MolecularSummary, clinical: pl.DataFrame, protected: pl.DataFrame) -> list[dict]:
    by_id = {r["patient_id"]: r for r in clinical.iter_rows(named=True)}
    site = {r["PATIENT_ID"]: r["site"] for r in protected.iter_rows(named=True)}
    rows = []
    for case in summary.cases.iter_rows(named=True):
        c = by_id.get(case["patient_id"], {})
        pid = patient_id(case["patient_id"], case["case_no"])
        rows.append({
            "SAMPLE_ID": sample_id(case["patient_id"], case["case_no"]), "PATIENT_ID": pid, "CASE_NO": case["case_no"],
            "CANCER_TYPE": "Leiomyosarcoma", "CANCER_TYPE_DETAILED": "Cutaneous Leiomyosarcoma",
            "ONCOTREE_CODE": "LMS", "SAMPLE_TYPE": "Primary",
            "PRIMARY_SITE": None if site[pid] is None else code_label("site", site[pid]),
            "TUMOR_SIZE_CM": c.get("size_cm"), "FNCLCC_GRADE": c.get("grade_label"),
            "INVASION": None if c.get("invasion") is None else code_label("invasion", c["invasion"]),
            "RESECTION_STATUS": c.get("final_resection_status"),
            "PROFILE_CLASS": case["profile_class"].replace("_", " "), "SEGMENTAL_ANOMALIES": case["anomaly_count"],
            "BIALLELIC_TP53_RB1": case["biallelic_tp53_or_rb1"], "FUSION_STATUS": case["fusion_status"].replace("_", " "),
        })
    return rows


def _entrez(gene: str | None, table: dict[str, int]) -> int | None:
    return None if gene is None else table.get(gene, PANEL_ENTREZ.get(gene))


def _breakpoint(text: str | None) -> tuple[str | None, int | None]:
    m = re.match(r"^\s*(?:chr)?([0-9]{1,2}|[XY])\s*:\s*([0-9,]+)", text or "", re.IGNORECASE)
    return (m.group(1).upper(), int(m.group(2).replace(",", ""))) if m else (None, None)


@dataclass(frozen=True)
class GenePanel:
    profile: str  # the stable_id of the profile it covers ("mutations", "cna")
    stable_id: str
    description: str
    genes: tuple[str, ...]
    swissprot: dict[str, str]  # gene -> UniProtKB/Swiss-Prot entry name (NGS panel)


def gene_panels() -> tuple[GenePanel, ...]:
    """The laboratory's gene panels as declared in ``clms_etl/data/gene_panels.toml``: the NGS panel's
    genes, and the copy-number genes of its ``genes_file`` (``genes_hg19.tsv``)."""
    declared = tomllib.loads((resources.files("clms_etl") / "data" / GENE_PANELS).read_text(encoding="utf-8"))
    panels = []
    for spec in declared.values():
        genes = spec.get("genes", {})
        names = tuple(genes) if genes else tuple(entrez_ids())  # genes_file: the pinned table's genes
        panels.append(GenePanel(spec["profile"], spec["stable_id"], spec["description"], names, dict(genes)))
    return tuple(panels)


def _write_gene_panels(outdir: Path, files: dict[str, Path], profiled: dict[str, list[str]],
                       samples: list[str]) -> None:
    """``gene_panels/data_gene_panel_<id>.txt`` and the matrix naming each sample's panel per profile
    (``NA`` for a sample the profile did not cover)."""
    folder = outdir / "gene_panels"
    folder.mkdir(exist_ok=True)
    panels = [p for p in gene_panels() if p.profile in profiled]
    for panel in panels:
        name = f"gene_panels/data_gene_panel_{panel.stable_id}.txt"
        files[name] = outdir / name
        _write_meta(files[name], {"stable_id": panel.stable_id, "description": panel.description,
                                  "gene_list": "\t".join(panel.genes)})
    covered = {p.profile: set(profiled[p.profile]) for p in panels}
    files["data_gene_panel_matrix.txt"] = outdir / "data_gene_panel_matrix.txt"
    _write_table(files["data_gene_panel_matrix.txt"], ["SAMPLE_ID", *(p.profile for p in panels)],
                 ([s, *(p.stable_id if s in covered[p.profile] else None for p in panels)] for s in samples))
    files["meta_gene_panel_matrix.txt"] = outdir / "meta_gene_panel_matrix.txt"
    _write_meta(files["meta_gene_panel_matrix.txt"], {
        "cancer_study_identifier": STUDY_ID, "genetic_alteration_type": "GENE_PANEL_MATRIX",
        "datatype": "GENE_PANEL_MATRIX", "data_filename": "data_gene_panel_matrix.txt"})


@dataclass(frozen=True)
class Study:
    files: dict[str, Path]  # by short name
    disclosure: KAnonymity


def write_study(summary: MolecularSummary, patient_summary: pl.DataFrame, outdir: Path,
                k_threshold: int = DEFAULT_K_THRESHOLD) -> Study:
    """Write the study folder into ``outdir`` (created; files of a previous export replaced).

    ``patient_summary``: ``analytics.patient_summary`` (dates are used to compute months, never
    written). Checked first: a study whose smallest group stays below ``k_threshold`` raises
    :class:`DisclosureBlocked` and writes nothing (a previous export stays as it was).
    """
    protected, disclosure = protected_clinical(summary, patient_summary, k_threshold)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "case_lists").mkdir(exist_ok=True)
    for stale in (outdir / "case_lists").glob("*.txt"):  # a list empty this time must not survive
        stale.unlink()
    table = entrez_ids()
    cases = summary.cases
    sid = {r["sample_id"]: sample_id(r["patient_id"], r["case_no"]) for r in cases.iter_rows(named=True)}
    contributory = cases.filter(pl.col("status") == "ok")
    all_samples = [sid[s] for s in cases["sample_id"]]
    sequenced = [sid[s] for s in contributory.filter(pl.col("n_mutations").is_not_null())["sample_id"]]
    cna = [sid[s] for s in contributory.filter(pl.col("anomaly_count").is_not_null())["sample_id"]]
    sv = [sid[s] for s in contributory.filter(pl.col("fusion_status").is_in(["negative", "positive"]))["sample_id"]]
    files: dict[str, Path] = {}

    def meta(name: str, fields: dict[str, str]) -> None:
        files[name] = outdir / name
        _write_meta(files[name], {"cancer_study_identifier": STUDY_ID, **fields})

    files["meta_study.txt"] = outdir / "meta_study.txt"
    _write_meta(files["meta_study.txt"], {
        "type_of_cancer": CANCER_TYPE,
        "cancer_study_identifier": STUDY_ID,
        "name": "Primary cutaneous leiomyosarcoma (multicentre registry)",
        "description": "Molecular series of the cLMS registry: OncoScan copy number (ChAS), Ion Torrent "
                       "hotspot panel, Archer fusions; clinical data pseudonymised, ages in 10-year bands, no "
                       f"date, no centre. Disclosure control: {disclosure.summary()}",
        "add_global_case_list": "false",
        "reference_genome": GENOME,
    })

    patients = _patients(summary, patient_summary, protected)
    files["data_clinical_patient.txt"] = outdir / "data_clinical_patient.txt"
    _write_table(files["data_clinical_patient.txt"], [a[0] for a in PATIENT_ATTRIBUTES],
                 ([r[a[0]] for a in PATIENT_ATTRIBUTES] for r in patients), _clinical_header(PATIENT_ATTRIBUTES))
    meta("meta_clinical_patient.txt", {"genetic_alteration_type": "CLINICAL", "datatype": "PATIENT_ATTRIBUTES",
                                       "data_filename": "data_clinical_patient.txt"})
    samples = _samples(summary, patient_summary, protected)
    files["data_clinical_sample.txt"] = outdir / "data_clinical_sample.txt"
    _write_table(files["data_clinical_sample.txt"], [a[0] for a in SAMPLE_ATTRIBUTES],
                 ([r[a[0]] for a in SAMPLE_ATTRIBUTES] for r in samples), _clinical_header(SAMPLE_ATTRIBUTES))
    meta("meta_clinical_sample.txt", {"genetic_alteration_type": "CLINICAL", "datatype": "SAMPLE_ATTRIBUTES",
                                      "data_filename": "data_clinical_sample.txt"})

    swissprot = {g: name for p in gene_panels() for g, name in p.swissprot.items()}
    maf_rows = []
    for m in summary.mutations.iter_rows(named=True):
        start, end, ref, alt, kind = maf_alleles(m["pos"], m["ref"], m["alt"])
        depth, vaf = m["depth"], m["vaf"]
        alt_reads = None if depth is None or vaf is None else int(round(vaf * depth))
        maf_rows.append([
            m["gene"], _entrez(m["gene"], table), CENTER, NCBI_BUILD, m["chrom"], start, end, "+",
            VARIANT_CLASSIFICATION.get(m["function"] or "", "Missense_Mutation" if kind == "SNP" else "Unknown"),
            kind, ref, ref, alt, sid[m["sample_id"]], "Somatic", "Unknown",
            m["hgvs_c"], m["hgvs_p"], hgvsp_short(m["hgvs_p"]), m["transcript"], swissprot.get(m["gene"], ""),
            # read counts: an integer, or empty when unknown (validateData.py rejects "NA" here)
            "" if alt_reads is None else depth - alt_reads, "" if alt_reads is None else alt_reads,
        ])
    files["data_mutations.txt"] = outdir / "data_mutations.txt"
    _write_table(files["data_mutations.txt"], MAF_COLUMNS, maf_rows)
    meta("meta_mutations.txt", {
        "genetic_alteration_type": "MUTATION_EXTENDED", "datatype": "MAF", "stable_id": "mutations",
        "swissprot_identifier": "name",
        "show_profile_in_analysis_tab": "true", "profile_name": "Mutations (Ion Torrent hotspot panel)",
        "profile_description": "Reportable somatic mutations: FILTER PASS, called genotype, VAF >= 2 %, "
                               "polymorphisms (GMAF >= 0.01) excluded.",
        "data_filename": "data_mutations.txt"})

    gs = summary.gene_status.filter(pl.col("cn_event").is_not_null())
    genes = sorted(set(gs["gene"]))
    values = {(sid[s], g): CNA_VALUES[e] for s, g, e in gs.select("sample_id", "gene", "cn_event").iter_rows()}
    files["data_cna.txt"] = outdir / "data_cna.txt"
    _write_table(files["data_cna.txt"], ["Hugo_Symbol", "Entrez_Gene_Id", *cna],
                 ([g, _entrez(g, table), *[values.get((s, g)) for s in cna]] for g in genes))
    meta("meta_cna.txt", {
        "genetic_alteration_type": "COPY_NUMBER_ALTERATION", "datatype": "DISCRETE", "stable_id": "cna",
        "show_profile_in_analysis_tab": "true", "profile_name": "Copy-number alterations (OncoScan)",
        "profile_description": "Gene-level copy number from ChAS segments (oncoscanR thresholds): -2 homozygous "
                               "deletion (CN < 1), -1 heterozygous deletion, 0 neutral or copy-neutral LOH, "
                               "1 gain, 2 amplification (CN > 4).",
        "data_filename": "data_cna.txt"})

    seg_rows = []
    rank = {c: i for i, c in enumerate([*map(str, range(1, 23)), "X", "Y"])}
    ordered = sorted(summary.segments.iter_rows(named=True),
                     key=lambda r: (r["sample_id"], rank.get(r["chrom"], 99), r["chrom"], r["start_bp"]))
    for s in ordered:
        cn = s["cn_state"]
        if s["segment_type"] == "LOH":
            mean = 0.0
        elif cn is None:
            continue  # a Gain / Loss without copy number: nothing to plot
        else:
            mean = math.log2(max(cn, SEG_MIN_CN) / 2)
        seg_rows.append([sid[s["sample_id"]], s["chrom"], s["start_bp"] - 1, s["end_bp"], 0, f"{mean:.4f}"])
    files["data_cna_hg19.seg"] = outdir / "data_cna_hg19.seg"
    _write_table(files["data_cna_hg19.seg"], SEG_COLUMNS, seg_rows)
    meta("meta_cna_hg19_seg.txt", {
        "genetic_alteration_type": "COPY_NUMBER_ALTERATION", "datatype": "SEG", "reference_genome_id": GENOME,
        "description": "OncoScan segments exported by ChAS (NA33, hg19); seg.mean = log2(CN / 2), LOH = 0.",
        "data_filename": "data_cna_hg19.seg"})

    sv_rows = []
    for f in summary.fusions.iter_rows(named=True):
        c1, p1 = _breakpoint(f["breakpoint_5p"])
        c2, p2 = _breakpoint(f["breakpoint_3p"])
        sv_rows.append([sid[f["sample_id"]], "SOMATIC", f["gene_5p"], _entrez(f["gene_5p"], table), c1, p1,
                        f["gene_3p"], _entrez(f["gene_3p"], table), c2, p2, NCBI_BUILD, "TRANSLOCATION",
                        f"{f['gene_5p']}::{f['gene_3p']} fusion", f["reads"],
                        "Archer FusionPlex, strong evidence" if f["strong_evidence"] else "Archer FusionPlex",
                        *[""] * SV_BLANK_COLUMNS])
    files["data_sv.txt"] = outdir / "data_sv.txt"
    _write_table(files["data_sv.txt"], SV_COLUMNS, sv_rows)
    meta("meta_sv.txt", {
        "genetic_alteration_type": "STRUCTURAL_VARIANT", "datatype": "SV", "stable_id": "structural_variants",
        "show_profile_in_analysis_tab": "true", "profile_name": "Fusions (Archer FusionPlex)",
        "profile_description": "Fusions called by Archer Analysis; a tested sample without row had no fusion.",
        "data_filename": "data_sv.txt"})

    lists = (
        ("cases_all.txt", "all", "All samples", "All cases of the laboratory series", "all_cases_in_study",
         all_samples),
        ("cases_sequenced.txt", "sequenced", "Sequenced samples", "Samples sequenced on the Ion Torrent panel",
         "all_cases_with_mutation_data", sequenced),
        ("cases_cna.txt", "cna", "Samples with copy-number data", "Samples profiled with OncoScan",
         "all_cases_with_cna_data", cna),
        ("cases_cnaseq.txt", "cnaseq", "Samples with mutation and copy-number data",
         "Samples sequenced and profiled with OncoScan", "all_cases_with_mutation_and_cna_data",
         [s for s in sequenced if s in set(cna)]),
        ("cases_sv.txt", "sv", "Samples with fusion data", "Samples tested with Archer FusionPlex", None, sv),
    )
    _write_gene_panels(outdir, files, {"mutations": sequenced, "cna": cna}, all_samples)
    for name, suffix, title, description, category, ids in lists:
        if not ids:  # cBioPortal's validator rejects an empty list (it reads one sample named '')
            continue
        fields = {"cancer_study_identifier": STUDY_ID, "stable_id": f"{STUDY_ID}_{suffix}",
                  "case_list_name": title, "case_list_description": description}
        if category:
            fields["case_list_category"] = category
        fields["case_list_ids"] = "\t".join(ids)
        files[f"case_lists/{name}"] = outdir / "case_lists" / name
        _write_meta(files[f"case_lists/{name}"], fields)
    return Study(files, disclosure)
