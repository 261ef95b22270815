"""Gene-level status of each profiled sample, derived from the laboratory's canonical rows.

One row per sample whose assays succeeded (``molecular_sample.status = 'ok'``) and per gene of
the pinned hg19 table ``clms_etl/data/genes_hg19.tsv`` (1-based inclusive coordinates, version
on its first line, Entrez ids for exports):

* ``cn_event``, decided on coordinates only (never on ChAS's cytoband or gene columns), from
  the copy-number segments overlapping the gene, the strongest one winning:
  ``homozygous_deletion`` (Loss, CN < :data:`HOMOZYGOUS_DELETION_BELOW_CN`) > ``amplification``
  (Gain, CN > :data:`AMPLIFICATION_ABOVE_CN`) > ``heterozygous_deletion`` (other Loss) >
  ``cn_loh`` > ``gain`` (other Gain); ``neutral`` when nothing overlaps; null when copy number
  was not assessed. An LOH segment lying over a loss is therefore never counted on top of it
  (a loss *is* a loss of heterozygosity; oncoscanR's ``adjust_loh`` drops such LOH segments).
* ``cn_coverage``: ``whole`` when the segments of the winning event cover every base of the
  gene (one segment or adjacent ones), ``partial`` otherwise (e.g. an intragenic DMD deletion)
  — the two are different states (``formats_and_rules.md`` §6).
* ``mutated``: a reportable variant annotated to the gene (null when not sequenced).
* ``biallelic_inactivation``: homozygous deletion, or a reportable mutation with a loss or a
  copy-neutral LOH of the other allele (the paper's "biallelic TP53 or RB1 inactivation").

Copy-number thresholds are oncoscanR's OncoScan categories (``formats_and_rules.md`` §2, from
yannchristinat/oncoscanR ``R/input.R::get_cn_subtype``): homozygous loss CN < 1, heterozygous
loss 1 <= CN < 2, gain 2 < CN <= 4, amplification CN > 4 (weak 4-9, strong > 9). They are the
autosome values: the laboratory's files carry no sex, so X genes (ATRX, DMD) of men are judged
on the same scale (ChAS's ``Type`` is already relative to the expected copy number).
"""

from __future__ import annotations

import io
from functools import cache
from importlib import resources

import polars as pl

# oncoscanR get_cn_subtype (formats_and_rules.md §2): "homozygous loss CN < 1"
HOMOZYGOUS_DELETION_BELOW_CN = 1.0
# oncoscanR get_cn_subtype: "weak amplification 4 < CN <= 9 (3-7 extra copies)"; gain is 2 < CN <= 4
AMPLIFICATION_ABOVE_CN = 4.0
GENE_TABLE = "genes_hg19.tsv"

_RANK = {"homozygous_deletion": 1, "amplification": 2, "heterozygous_deletion": 3, "cn_loh": 4, "gain": 5}

SCHEMA = {
    "sample_id": pl.String,
    "gene": pl.String,
    "chrom": pl.String,
    "gene_start_bp": pl.Int64,
    "gene_end_bp": pl.Int64,
    "cn_event": pl.String,
    "cn_coverage": pl.String,
    "cn_state": pl.Float64,
    "mutated": pl.Boolean,
    "biallelic_inactivation": pl.Boolean,
    "gene_table_version": pl.String,
}


@cache
def gene_table() -> tuple[pl.DataFrame, str]:
    """(gene, chrom, start, end) of the pinned table, and its version label."""
    raw = (resources.files("clms_etl") / "data" / GENE_TABLE).read_bytes()
    first = raw.split(b"\n", 1)[0].decode("utf-8")
    version = first.split("version:", 1)[1].split()[0] if "version:" in first else "unversioned"
    frame = pl.read_csv(io.BytesIO(raw), separator="\t", comment_prefix="#",
                        schema_overrides={"chrom": pl.String, "start": pl.Int64, "end": pl.Int64})
    return frame.select("gene", "chrom", "start", "end"), f"{GENE_TABLE} v{version}"


def entrez_ids() -> dict[str, int]:
    """Gene symbol -> NCBI Entrez Gene id, for the pinned table's genes (its ``entrez_id`` column)."""
    raw = (resources.files("clms_etl") / "data" / GENE_TABLE).read_bytes()
    frame = pl.read_csv(io.BytesIO(raw), separator="\t", comment_prefix="#", schema_overrides={"entrez_id": pl.Int64})
    return dict(frame.select("gene", "entrez_id").iter_rows())


def _chrom(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String).str.strip_chars().str.replace(r"^(?i)chr", "")


def gene_status(molecular_sample: pl.DataFrame, cn_segment: pl.DataFrame, variant: pl.DataFrame) -> pl.DataFrame:
    genes, version = gene_table()
    samples = molecular_sample.filter(pl.col("status") == "ok").select(
        "sample_id",
        (pl.col("cn_assay") == "tested").fill_null(False).alias("_cn"),
        (pl.col("ngs_assay") == "tested").fill_null(False).alias("_ngs"),
    ).unique("sample_id", keep="first")
    grid = samples.join(genes, how="cross")

    seg = cn_segment.select(
        "sample_id", _chrom(pl.col("chrom")).alias("chrom"), "start_bp", "end_bp", "cn_state", "segment_type"
    )
    hits = grid.select("sample_id", "gene", "chrom", "start", "end").join(seg, on=["sample_id", "chrom"]).filter(
        (pl.col("start_bp") <= pl.col("end")) & (pl.col("end_bp") >= pl.col("start"))
    )
    hits = hits.with_columns(
        pl.when((pl.col("segment_type") == "Loss") & (pl.col("cn_state") < HOMOZYGOUS_DELETION_BELOW_CN))
        .then(pl.lit("homozygous_deletion"))
        .when(pl.col("segment_type") == "Loss").then(pl.lit("heterozygous_deletion"))
        .when((pl.col("segment_type") == "Gain") & (pl.col("cn_state") > AMPLIFICATION_ABOVE_CN))
        .then(pl.lit("amplification"))
        .when(pl.col("segment_type") == "Gain").then(pl.lit("gain"))
        .when(pl.col("segment_type") == "LOH").then(pl.lit("cn_loh"))
        .otherwise(None).alias("event"),
        # bases of the gene under this segment (ChAS segments of a sample are disjoint)
        (pl.min_horizontal("end_bp", "end") - pl.max_horizontal("start_bp", "start") + 1).alias("covered_bp"),
    ).filter(pl.col("event").is_not_null())
    hits = hits.with_columns(pl.col("event").replace_strict(_RANK, return_dtype=pl.Int8).alias("rank"))
    best = hits.filter(pl.col("rank") == pl.col("rank").min().over("sample_id", "gene"))
    cn = best.group_by("sample_id", "gene").agg(
        pl.col("event").first().alias("cn_event"),
        pl.when(pl.col("covered_bp").sum() >= (pl.col("end") - pl.col("start") + 1).first())
        .then(pl.lit("whole")).otherwise(pl.lit("partial")).alias("cn_coverage"),
        pl.when(pl.col("event").first().is_in(["amplification", "gain"])).then(pl.col("cn_state").max())
        .when(pl.col("event").first().is_in(["homozygous_deletion", "heterozygous_deletion"]))
        .then(pl.col("cn_state").min())
        .otherwise(None).alias("cn_state"),
    )
    mutated = (
        variant.filter(pl.col("reportable").fill_null(False) & pl.col("gene").is_not_null())
        .select("sample_id", "gene").unique().with_columns(pl.lit(True).alias("_mut"))
    )
    out = (
        grid.join(cn, on=["sample_id", "gene"], how="left")
        .join(mutated, on=["sample_id", "gene"], how="left")
        .with_columns(
            pl.when(pl.col("_cn")).then(pl.col("cn_event").fill_null("neutral")).otherwise(None).alias("cn_event"),
            pl.when(pl.col("_cn")).then(pl.col("cn_coverage")).otherwise(None).alias("cn_coverage"),
            pl.when(pl.col("_cn")).then(pl.col("cn_state")).otherwise(None).alias("cn_state"),
            pl.when(pl.col("_ngs")).then(pl.col("_mut").fill_null(False)).otherwise(None).alias("mutated"),
        )
        .with_columns(
            (
                (pl.col("cn_event") == "homozygous_deletion").fill_null(False)
                | (pl.col("mutated").fill_null(False)
                   & pl.col("cn_event").is_in(["heterozygous_deletion", "cn_loh"]).fill_null(False))
            ).alias("biallelic_inactivation"),
            pl.lit(version).alias("gene_table_version"),
        )
        .rename({"start": "gene_start_bp", "end": "gene_end_bp"})
        .sort("sample_id", "gene")
    )
    return out.select([pl.col(c).cast(t) for c, t in SCHEMA.items()])
