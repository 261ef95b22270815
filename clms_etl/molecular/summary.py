"""Molecular summary of the laboratory series: per case, per gene, and the study's counts.

A pure function of the warehouse's frames (:func:`summarise`): no warehouse, no file. The
conventions, with their sources (``docs/molecular.md`` has the long form):

* **Segmental anomaly** — a copy-number segment of the ChAS export (``Gain``, ``Loss`` or
  ``LOH``) after two clean-ups taken from oncoscanR (``formats_and_rules.md`` §2): an LOH segment
  lying inside a loss is dropped (a loss already is a loss of heterozygosity: ``adjust_loh``),
  and segments of the same type with fewer than :data:`SEGMENT_MERGE_GAP_BP` bases between them are one anomaly
  (OncoScan's genome-wide resolution; a homozygous core inside a hemizygous deletion is one
  deletion). Whole-arm events count as one anomaly each.
* **Genomic profile class** (the study's CGH/SNP-array classes, ``clms_paper.json`` →
  ``molecular.cgh_snp_array``): ``flat`` = no anomaly, ``simple`` = 1 to
  :data:`COMPLEX_ABOVE_ANOMALIES` anomalies, ``complex`` = more than
  :data:`COMPLEX_ABOVE_ANOMALIES`; ``not_contributory`` for cases whose assays failed (kept as
  such, never dropped); ``not_assessed`` for a contributory case without a readable ChAS file.
* **Gene level** — :mod:`clms_etl.warehouse.genes` (``gene_status``): homozygous / heterozygous
  deletion, copy-neutral LOH, gain, amplification, whole vs partial gene, biallelic inactivation.
* **Mutations** — reportable variant calls only (the reader's rule: FILTER PASS, a called
  genotype carrying the allele, VAF >= 2 %, GMAF < 0.01); VAF is a fraction. Excluded calls are
  counted per sample by ``exclusion_reason`` (polymorphism, filtered, other).
* **Fusions** — ``negative`` when the Archer table was read and is empty (tested, no fusion),
  ``positive`` with rows, ``failed`` / ``not_done`` when the assay failed or was not done: an
  empty table and a failed assay are never confused.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from clms_etl import model
from clms_etl.warehouse import genes as gene_calls

SEGMENT_MERGE_GAP_BP = 300_000  # OncoScan genome-wide resolution (oncoscanR, formats_and_rules.md §2)
COMPLEX_ABOVE_ANOMALIES = 10  # the study: "complex (> 10 segments)" (clms_paper.json molecular)
PROFILE_CLASSES = ("flat", "simple", "complex", "not_contributory", "not_assessed")
FUSION_STATES = ("negative", "positive", "failed", "not_done")
# Genes the paper reports on (Table 3 columns, recurrent alterations)
KEY_GENES = ("RB1", "TP53", "MYOCD")
BIALLELIC_GENES = ("TP53", "RB1")

# alteration -> (label, which gene_status rows count); grouped alterations come last
CN_ALTERATIONS = ("amplification", "gain", "homozygous_deletion", "heterozygous_deletion", "cn_loh")
GROUPED_ALTERATIONS = {
    "deletion": ("homozygous_deletion", "heterozygous_deletion"),
    "deletion_or_loh": ("homozygous_deletion", "heterozygous_deletion", "cn_loh"),
}
ALTERATIONS = (*CN_ALTERATIONS, *GROUPED_ALTERATIONS, "mutation", "fusion", "biallelic_inactivation", "any")

_EVENT_LABEL = {
    "amplification": "amplification", "gain": "gain", "homozygous_deletion": "homozygous deletion",
    "heterozygous_deletion": "heterozygous deletion", "cn_loh": "copy-neutral LOH",
}  # fmt: skip


@dataclass(frozen=True)
class MolecularSummary:
    """Everything the molecular outputs are built from (all frames keyed by ``sample_id``).

    * ``cases``: one row per case of the laboratory manifest (:data:`PROFILE_COLUMNS`).
    * ``gene_status``: one row per contributory case and gene (``clms_etl.warehouse.genes``),
      with ``case_no`` and ``patient_id``.
    * ``mutations``: reportable somatic mutations, with ``case_no`` and ``patient_id``.
    * ``fusions``: Archer fusion calls of contributory cases.
    * ``anomalies``: the segmental anomalies counted for the profile class.
    * ``recurrent``: per gene and alteration, cases / assessed cases.
    * ``segments``: the copy-number segments of the cases (for the ``.seg`` export).
    """

    cases: pl.DataFrame
    gene_status: pl.DataFrame
    mutations: pl.DataFrame
    fusions: pl.DataFrame
    anomalies: pl.DataFrame
    recurrent: pl.DataFrame
    segments: pl.DataFrame

    def counts(self) -> dict:
        """The study's published numbers, computed (same keys as ``clms_paper.json`` → molecular)."""
        c = self.cases
        profiles = dict(c.group_by("profile_class").len().iter_rows())
        rec = {(g, a): n for g, a, n in self.recurrent.select("gene", "alteration", "cases").iter_rows()}
        return {
            "cases": c.height,
            "contributory": c.filter(pl.col("status") == "ok").height,
            "cgh_snp_array": {k: profiles.get(k, 0) for k in PROFILE_CLASSES},
            "recurrent_alterations": {
                "RB1_deletion": rec.get(("RB1", "deletion"), 0),
                "TP53_deletion_or_LOH": rec.get(("TP53", "deletion_or_loh"), 0),
                "MYOCD_amplification": rec.get(("MYOCD", "amplification"), 0),
            },
            "most_altered_genes_cases": {g: rec.get((g, "any"), 0) for g in KEY_GENES},
            "biallelic_TP53_or_RB1_inactivation": int(c["biallelic_tp53_or_rb1"].fill_null(False).sum()),
            "mutations": self.mutations.height,
            "fusions": self.fusions.height,
            "fusion_negative_cases": c.filter(pl.col("fusion_status") == "negative").height,
        }


def _chrom(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String).str.strip_chars().str.replace(r"^(?i)chr", "")


def segmental_anomalies(cn_segment: pl.DataFrame) -> pl.DataFrame:
    """The segmental anomalies of each sample (see the module docstring for the definition).

    One row per anomaly: ``sample_id, chrom, start_bp, end_bp, segment_type, n_segments``
    (how many ChAS segments were merged into it).
    """
    seg = cn_segment.select(
        "sample_id", _chrom(pl.col("chrom")).alias("chrom"), "start_bp", "end_bp", "segment_type"
    ).filter(pl.col("segment_type").is_in(["Gain", "Loss", "LOH"]) & pl.col("start_bp").is_not_null()
             & pl.col("end_bp").is_not_null())
    merged = _merge(seg)
    losses = merged.filter(pl.col("segment_type") == "Loss").select(
        "sample_id", "chrom", pl.col("start_bp").alias("_ls"), pl.col("end_bp").alias("_le"))
    loh = merged.filter(pl.col("segment_type") == "LOH").with_row_index("_i")
    inside = loh.join(losses, on=["sample_id", "chrom"]).filter(
        (pl.col("start_bp") >= pl.col("_ls")) & (pl.col("end_bp") <= pl.col("_le")))["_i"]
    kept_loh = loh.filter(~pl.col("_i").is_in(inside.implode())).drop("_i")
    return pl.concat([merged.filter(pl.col("segment_type") != "LOH"), kept_loh]).sort(
        "sample_id", "chrom", "start_bp")


def _merge(seg: pl.DataFrame) -> pl.DataFrame:
    """Same-type segments closer than SEGMENT_MERGE_GAP_BP, merged (a sweep along each chromosome)."""
    keys = ["sample_id", "chrom", "segment_type"]
    ordered = seg.sort([*keys, "start_bp"])
    reach = pl.col("end_bp").cum_max().shift(1).over(keys)
    grouped = ordered.with_columns(
        (reach.is_null() | (pl.col("start_bp") - reach > SEGMENT_MERGE_GAP_BP)).cast(pl.Int32).alias("_new"))
    grouped = grouped.with_columns(pl.col("_new").cum_sum().over(keys).alias("_group"))
    return grouped.group_by([*keys, "_group"]).agg(
        pl.col("start_bp").min(), pl.col("end_bp").max(), pl.len().cast(pl.Int32).alias("n_segments"),
    ).drop("_group").select("sample_id", "chrom", "start_bp", "end_bp", "segment_type", "n_segments")


def profile_class(anomaly_count: int | None, status: str | None, cn_assessed: bool) -> str:
    """flat / simple / complex from the anomaly count; not_contributory / not_assessed otherwise."""
    if status != "ok":
        return "not_contributory"
    if not cn_assessed or anomaly_count is None:
        return "not_assessed"
    if anomaly_count == 0:
        return "flat"
    return "complex" if anomaly_count > COMPLEX_ABOVE_ANOMALIES else "simple"


def gene_label(cn_event: str | None, cn_coverage: str | None, cn_state: float | None, mutated: bool | None) -> str:
    """A reader's description of a gene's status, e.g. 'amplification (CN 8)', 'mutation + copy-neutral LOH'.

    '' when nothing is altered; 'not assessed' when neither copy number nor sequencing was done.
    """
    parts = []
    if mutated:
        parts.append("mutation")
    if cn_event and cn_event != "neutral":
        text = _EVENT_LABEL[cn_event]
        if cn_coverage == "partial":
            text = f"partial {text}"
        if cn_event in ("amplification", "gain") and cn_state is not None:
            text += f" (CN {cn_state:g})"
        parts.append(text)
    if not parts and cn_event is None and mutated is None:
        return "not assessed"
    return " + ".join(parts)


def summarise(
    molecular_sample: pl.DataFrame,
    cn_segment: pl.DataFrame,
    variant: pl.DataFrame,
    fusion: pl.DataFrame,
    gene_status: pl.DataFrame | None = None,
) -> MolecularSummary:
    """The molecular summary of the laboratory's canonical frames (as stored in the warehouse).

    ``gene_status`` is the warehouse's table of that name; when None it is computed here with
    :func:`clms_etl.warehouse.genes.gene_status` (the same function the loader uses).
    """
    # the warehouse gives empty tables untyped columns: the canonical types, whatever came in
    molecular_sample, cn_segment, variant, fusion = (
        model.conform(name, frame) for name, frame in (("molecular_sample", molecular_sample),
                                                       ("cn_segment", cn_segment), ("variant", variant),
                                                       ("fusion", fusion)))
    samples = molecular_sample.select(
        "sample_id", "patient_id", pl.col("case_no").cast(pl.Int32), "status", "cn_assay", "ngs_assay", "fusion_assay",
    ).unique("sample_id", keep="first").sort("case_no", "sample_id")
    if gene_status is None:
        gene_status = gene_calls.gene_status(molecular_sample, cn_segment, variant)
    gs, segments, fusions = case_details(samples, gene_status, cn_segment, fusion)
    ids = samples.select("sample_id", "case_no", "patient_id")
    ok_ids = samples.filter(pl.col("status") == "ok")["sample_id"].implode()
    anomalies = segmental_anomalies(segments)
    per_sample = anomalies.group_by("sample_id").agg(
        pl.len().cast(pl.Int32).alias("anomaly_count"),
        (pl.col("segment_type") == "Gain").sum().cast(pl.Int32).alias("n_gains"),
        (pl.col("segment_type") == "Loss").sum().cast(pl.Int32).alias("n_losses"),
        (pl.col("segment_type") == "LOH").sum().cast(pl.Int32).alias("n_cn_loh"),
    )
    raw = segments.group_by("sample_id").agg(pl.len().cast(pl.Int32).alias("segment_count"))

    reportable = variant.filter(pl.col("sample_id").is_in(ok_ids) & pl.col("reportable").fill_null(False))
    mutations = reportable.join(ids, on="sample_id").select(
        "sample_id", "case_no", "patient_id", "gene", "chrom", "pos", "ref", "alt", "transcript", "hgvs_c",
        "hgvs_p", "function", "vaf", "depth",
    ).sort("case_no", "gene", "pos")
    excluded = variant.filter(pl.col("sample_id").is_in(ok_ids) & ~pl.col("reportable").fill_null(True))
    exclusions = excluded.group_by("sample_id").agg(
        (pl.col("exclusion_reason") == "polymorphism").sum().cast(pl.Int32).alias("n_calls_excluded_polymorphism"),
        (pl.col("exclusion_reason") == "filtered").sum().cast(pl.Int32).alias("n_calls_excluded_filtered"),
        (~pl.col("exclusion_reason").is_in(["polymorphism", "filtered"])).sum().cast(pl.Int32)
        .alias("n_calls_excluded_other"),
    )
    mut_text = mutations.group_by("sample_id").agg(
        pl.len().cast(pl.Int32).alias("n_mutations"),
        pl.concat_str([pl.col("gene"), pl.lit(" "), pl.col("hgvs_c"), pl.lit(" "), pl.col("hgvs_p"),
                       pl.lit(" (VAF "), pl.col("vaf").round(2).cast(pl.String), pl.lit(")")], ignore_nulls=True)
        .sort().str.join("; ").alias("mutations"),
    )
    fus_text = fusions.group_by("sample_id").agg(
        pl.concat_str([pl.col("gene_5p"), pl.lit("::"), pl.col("gene_3p")]).sort().str.join("; ").alias("fusions"))

    key = gs.filter(pl.col("gene").is_in(KEY_GENES)).with_columns(
        pl.struct("cn_event", "cn_coverage", "cn_state", "mutated").map_elements(
            lambda r: gene_label(r["cn_event"], r["cn_coverage"], r["cn_state"], r["mutated"]),
            return_dtype=pl.String).alias("label"))
    wide = key.pivot(on="gene", index="sample_id", values="label") if key.height else pl.DataFrame(
        schema={"sample_id": pl.String})
    biallelic = gs.filter(pl.col("gene").is_in(BIALLELIC_GENES)).pivot(
        on="gene", index="sample_id", values="biallelic_inactivation") if gs.height else pl.DataFrame(
        schema={"sample_id": pl.String})
    for gene in KEY_GENES:
        if gene not in wide.columns:
            wide = wide.with_columns(pl.lit(None, dtype=pl.String).alias(gene))
    for gene in BIALLELIC_GENES:
        if gene not in biallelic.columns:
            biallelic = biallelic.with_columns(pl.lit(None, dtype=pl.Boolean).alias(gene))
    wide = wide.select("sample_id", *[pl.col(g).alias(f"{g.lower()}_alteration") for g in KEY_GENES])
    biallelic = biallelic.select("sample_id", *[pl.col(g).alias(f"{g.lower()}_biallelic") for g in BIALLELIC_GENES])

    cases = (
        samples.join(raw, on="sample_id", how="left").join(per_sample, on="sample_id", how="left")
        .join(wide, on="sample_id", how="left").join(biallelic, on="sample_id", how="left")
        .join(mut_text, on="sample_id", how="left").join(exclusions, on="sample_id", how="left")
        .join(fus_text, on="sample_id", how="left")
    )
    cn_ok = (pl.col("status") == "ok") & (pl.col("cn_assay") == "tested").fill_null(False)
    ngs_ok = (pl.col("status") == "ok") & (pl.col("ngs_assay") == "tested").fill_null(False)
    fus_ok = (pl.col("status") == "ok") & (pl.col("fusion_assay") == "tested").fill_null(False)
    cases = cases.with_columns(
        pl.when(cn_ok).then(pl.col(c).fill_null(0)).otherwise(None).alias(c)
        for c in ("segment_count", "anomaly_count", "n_gains", "n_losses", "n_cn_loh")
    ).with_columns(
        pl.when(ngs_ok).then(pl.col(c).fill_null(0)).otherwise(None).alias(c)
        for c in ("n_mutations", "n_calls_excluded_polymorphism", "n_calls_excluded_filtered", "n_calls_excluded_other")
    ).with_columns(
        pl.struct("anomaly_count", "status", "cn_assay").map_elements(
            lambda r: profile_class(r["anomaly_count"], r["status"], r["cn_assay"] == "tested"),
            return_dtype=pl.String).alias("profile_class"),
        pl.when(pl.col("status") != "ok").then(pl.lit("failed"))
        .when(fus_ok & pl.col("fusions").is_null()).then(pl.lit("negative"))
        .when(fus_ok).then(pl.lit("positive"))
        .when(pl.col("fusion_assay") == "not_done").then(pl.lit("not_done"))
        .otherwise(pl.lit("failed")).alias("fusion_status"),
        pl.when(pl.col("status") == "ok").then(
            pl.any_horizontal(pl.col("tp53_biallelic").fill_null(False), pl.col("rb1_biallelic").fill_null(False))
        ).otherwise(None).alias("biallelic_tp53_or_rb1"),
        pl.when(ngs_ok).then(pl.col("mutations").fill_null("")).otherwise(None).alias("mutations"),
        pl.when(fus_ok).then(pl.col("fusions").fill_null("")).otherwise(None).alias("fusions"),
    ).select(PROFILE_COLUMNS).sort("case_no", "sample_id")

    return MolecularSummary(cases=cases, gene_status=gs, mutations=mutations, fusions=fusions,
                            anomalies=anomalies, recurrent=_recurrent(cases, gs, mutations, fusions),
                            segments=segments.sort("sample_id", "chrom", "start_bp"))


def case_details(cases: pl.DataFrame, gene_status: pl.DataFrame, cn_segment: pl.DataFrame,
                 fusion: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The warehouse's gene status, segments and fusions of ``cases`` (sample_id, case_no, patient_id,
    status): gene status of every case, segments and fusions of the contributory ones."""
    ids = cases.select("sample_id", "case_no", "patient_id")
    ok_ids = cases.filter(pl.col("status") == "ok")["sample_id"].implode()
    gs = gene_status.select([pl.col(c).cast(t) for c, t in gene_calls.SCHEMA.items()]).join(
        ids, on="sample_id", how="inner").sort("case_no", "gene")
    segments = cn_segment.filter(pl.col("sample_id").is_in(ok_ids)).select(
        "sample_id", _chrom(pl.col("chrom")).alias("chrom"), "start_bp", "end_bp", "cn_state", "segment_type")
    fusions = fusion.filter(pl.col("sample_id").is_in(ok_ids)).join(ids, on="sample_id").select(
        "sample_id", "case_no", "patient_id", "gene_5p", "gene_3p", "breakpoint_5p", "breakpoint_3p", "reads",
        "unique_start_sites", "percent_gsp2_reads", "strong_evidence",
    ).sort("case_no")
    return gs, segments, fusions


PROFILE_COLUMNS = (
    "case_no", "sample_id", "patient_id", "status", "cn_assay", "ngs_assay", "fusion_assay", "profile_class",
    "segment_count", "anomaly_count", "n_gains", "n_losses", "n_cn_loh", "rb1_alteration", "tp53_alteration",
    "myocd_alteration", "tp53_biallelic", "rb1_biallelic", "biallelic_tp53_or_rb1", "n_mutations", "mutations",
    "n_calls_excluded_polymorphism", "n_calls_excluded_filtered", "n_calls_excluded_other", "fusion_status", "fusions",
)


def _recurrent(cases: pl.DataFrame, gs: pl.DataFrame, mutations: pl.DataFrame, fusions: pl.DataFrame) -> pl.DataFrame:
    """Per gene and alteration: altered cases, assessed cases, percent, recurrent (>= 2 cases)."""
    cn_assessed = gs.filter(pl.col("cn_event").is_not_null())
    n_cn = cn_assessed["sample_id"].n_unique()
    n_ngs = cases.filter(pl.col("n_mutations").is_not_null()).height
    n_fus = cases.filter(pl.col("fusion_status").is_in(["negative", "positive"])).height
    n_any = cases.filter((pl.col("status") == "ok") & (pl.col("profile_class") != "not_assessed")
                         | pl.col("n_mutations").is_not_null()).height
    genes = sorted(set(gs["gene"].to_list()) | set(mutations["gene"].drop_nulls().to_list())
                   | set(fusions["gene_5p"].drop_nulls().to_list()) | set(fusions["gene_3p"].drop_nulls().to_list()))
    fused = pl.concat([fusions.select("sample_id", pl.col("gene_5p").alias("gene")),
                       fusions.select("sample_id", pl.col("gene_3p").alias("gene"))]).drop_nulls()
    altered: dict[tuple[str, str], set[str]] = {}

    def add(frame: pl.DataFrame, alteration: str) -> None:
        for sample, gene in frame.select("sample_id", "gene").unique().iter_rows():
            altered.setdefault((gene, alteration), set()).add(sample)

    for event in CN_ALTERATIONS:
        add(cn_assessed.filter(pl.col("cn_event") == event), event)
    for name, events in GROUPED_ALTERATIONS.items():
        add(cn_assessed.filter(pl.col("cn_event").is_in(events)), name)
    add(mutations, "mutation")
    add(fused, "fusion")
    add(gs.filter(pl.col("biallelic_inactivation").fill_null(False)), "biallelic_inactivation")
    add(cn_assessed.filter(pl.col("cn_event") != "neutral"), "any")
    add(mutations, "any")
    add(fused, "any")

    denominators = {"mutation": n_ngs, "fusion": n_fus, "any": n_any, "biallelic_inactivation": n_any}
    rows = []
    for gene in genes:
        for alteration in ALTERATIONS:
            n = len(altered.get((gene, alteration), ()))
            assessed = denominators.get(alteration, n_cn)
            rows.append({"gene": gene, "alteration": alteration, "cases": n, "assessed_cases": assessed,
                         "percent": round(100.0 * n / assessed, 1) if assessed else None, "recurrent": n >= 2})
    schema = {"gene": pl.String, "alteration": pl.String, "cases": pl.Int32, "assessed_cases": pl.Int32,
              "percent": pl.Float64, "recurrent": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)
