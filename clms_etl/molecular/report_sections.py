"""The molecular section of the report (:mod:`clms_etl.report.sections` contract)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from clms_etl.molecular.summary import COMPLEX_ABOVE_ANOMALIES, MolecularSummary
from clms_etl.molecular.table3 import table3_display
from clms_etl.report.sections import ReportFigure, ReportTable, Section

_ALTERATION_LABELS = {
    "deletion": "deletion (homo- or heterozygous)", "deletion_or_loh": "deletion or copy-neutral LOH",
    "amplification": "amplification", "mutation": "mutation", "biallelic_inactivation": "biallelic inactivation",
    "any": "any alteration",
}  # fmt: skip


def _recurrent_display(summary: MolecularSummary) -> pl.DataFrame:
    rec = summary.recurrent.filter((pl.col("cases") > 0) & pl.col("alteration").is_in(list(_ALTERATION_LABELS)))
    return rec.sort(["gene", "cases"], descending=[False, True]).select(
        pl.col("gene").alias("Gene"),
        pl.col("alteration").replace_strict(_ALTERATION_LABELS).alias("Alteration"),
        pl.format("{} / {}", "cases", "assessed_cases").alias("Cases"),
        pl.col("percent").round(0).cast(pl.Int32).cast(pl.String).alias("%"),
    )


def report_sections(summary: MolecularSummary, table3: pl.DataFrame, figure_png: Path,
                    figure_svg: Path | None = None) -> list[Section]:
    """The molecular section: counts in words, Table 3, recurrent alterations, the OncoPrint."""
    c = summary.counts()
    profiles = c["cgh_snp_array"]
    rec = c["recurrent_alterations"]
    text = (
        f"{c['cases']} cases were profiled; {c['contributory']} were contributory. Genomic profiles: "
        f"{profiles['complex']} complex (> {COMPLEX_ABOVE_ANOMALIES} segmental anomalies), {profiles['simple']} "
        f"simple, {profiles['flat']} flat; {profiles['not_contributory']} not contributory.\n\n"
        f"Recurrent alterations: RB1 deletion in {rec['RB1_deletion']} cases, TP53 deletion or LOH in "
        f"{rec['TP53_deletion_or_LOH']}, MYOCD amplification in {rec['MYOCD_amplification']}. Biallelic "
        f"inactivation of TP53 or RB1 in {c['biallelic_TP53_or_RB1_inactivation']} cases. {c['mutations']} somatic "
        f"mutation(s) reported; {c['fusions']} fusion(s) ({c['fusion_negative_cases']} cases tested negative)."
    )
    tables = (
        ReportTable("table3", "Table 3. Clinical and molecular features of the profiled cases",
                    table3_display(table3),
                    note="Pseudonyms and laboratory case numbers only. Genomic profile: flat = no segmental "
                         f"anomaly, simple = 1-{COMPLEX_ABOVE_ANOMALIES}, complex = more. Copy-number states from "
                         "ChAS segments with oncoscanR thresholds (homozygous deletion CN < 1, amplification "
                         "CN > 4). VAF = variant allele fraction."),
        ReportTable("recurrent_alterations", "Alterations per gene",
                    _recurrent_display(summary),
                    note="Cases altered / cases in which the alteration could be observed."),
    )
    figures = (ReportFigure("oncoprint", "Figure. OncoPrint of the molecular series (cases x genes), with "
                            "profile class and outcome tracks", figure_png, figure_svg,
                            note="Hatched columns: not-contributory cases. Dotted cells: partial-gene events."),)
    return [Section("molecular", "Molecular profile", text, tables, figures)]
