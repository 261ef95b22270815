"""Gene-level status from segments and variants, decided on coordinates."""

from __future__ import annotations

import polars as pl

from clms_etl import model
from clms_etl.warehouse.genes import gene_status

RB1 = ("13", 48877887, 49056122)
DMD = ("X", 31137336, 33357558)


def _samples(*rows):
    return pl.DataFrame([{"sample_id": s, "case_no": i + 1, "status": st, "cn_assay": cn, "ngs_assay": ngs,
                          "row_id": f"m{i}"} for i, (s, st, cn, ngs) in enumerate(rows)],
                        schema={k: model.MOLECULAR_SAMPLE[k] for k in ("sample_id", "case_no", "status", "cn_assay",
                                                                       "ngs_assay", "row_id")})


def _segments(*rows):
    return pl.DataFrame([{"sample_id": s, "chrom": c, "start_bp": a, "end_bp": b, "cn_state": cn, "segment_type": t}
                         for s, c, a, b, cn, t in rows], schema={k: model.CN_SEGMENT[k] for k in
                                                                  ("sample_id", "chrom", "start_bp", "end_bp", "cn_state", "segment_type")})


def _status(result, sample, gene):
    row = result.filter((pl.col("sample_id") == sample) & (pl.col("gene") == gene))
    assert row.height == 1
    return row.row(0, named=True)


def test_strongest_event_wins_and_partial_overlaps_are_their_own_state():
    samples = _samples(("S1", "ok", "tested", "tested"), ("S2", "ok", "tested", "not_done"),
                       ("S3", "not_contributory", "tested", "tested"), ("S4", "ok", "not_done", "tested"))
    segments = _segments(
        ("S1", "chr13", RB1[1] - 1000, RB1[2] + 1000, 1.0, "Loss"),   # hemizygous over RB1 ("chr" prefix)
        ("S1", "13", RB1[1] + 10, RB1[1] + 5000, 0.0, "Loss"),         # homozygous inside RB1: wins, partial
        ("S1", "X", DMD[1] + 100000, DMD[1] + 200000, 1.0, "Loss"),    # intragenic DMD loss
        ("S1", "17", 12000000, 13000000, 8.0, "Gain"),                 # MYOCD amplified
        ("S2", "17", 400959, 11187310, None, "LOH"),                   # TP53 copy-neutral LOH
        ("S2", "17", 12000000, 13000000, 3.0, "Gain"),                 # MYOCD low-level gain
    )
    variants = pl.DataFrame([
        {"sample_id": "S2", "gene": "TP53", "reportable": True}, {"sample_id": "S4", "gene": "TP53", "reportable": True},
        {"sample_id": "S1", "gene": "TP53", "reportable": False},
    ], schema={"sample_id": pl.String, "gene": pl.String, "reportable": pl.Boolean})
    result = gene_status(samples, segments, variants)
    assert set(result["sample_id"]) == {"S1", "S2", "S4"}  # not contributory: no status
    assert result.height == 3 * 10
    rb1 = _status(result, "S1", "RB1")
    assert (rb1["cn_event"], rb1["cn_coverage"], rb1["cn_state"], rb1["biallelic_inactivation"]) == \
        ("homozygous_deletion", "partial", 0.0, True)
    dmd = _status(result, "S1", "DMD")
    assert (dmd["cn_event"], dmd["cn_coverage"]) == ("heterozygous_deletion", "partial")
    myocd = _status(result, "S1", "MYOCD")
    assert (myocd["cn_event"], myocd["cn_coverage"], myocd["cn_state"]) == ("amplification", "whole", 8.0)
    assert _status(result, "S2", "MYOCD")["cn_event"] == "gain"
    tp53 = _status(result, "S2", "TP53")
    assert (tp53["cn_event"], tp53["mutated"], tp53["biallelic_inactivation"]) == ("cn_loh", None, False)  # NGS not done
    assert _status(result, "S1", "TP53")["mutated"] is False  # a non-reportable call is not a mutation
    s4 = _status(result, "S4", "TP53")
    assert (s4["cn_event"], s4["cn_coverage"], s4["mutated"], s4["biallelic_inactivation"]) == (None, None, True, False)
    assert _status(result, "S1", "PTEN")["cn_event"] == "neutral"
    assert result["gene_table_version"].unique().to_list() == ["genes_hg19.tsv v1"]
