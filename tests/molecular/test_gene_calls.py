"""Gene-level copy-number states: oncoscanR thresholds, whole vs partial gene, LOH inside a loss."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl import model
from clms_etl.warehouse.genes import AMPLIFICATION_ABOVE_CN, HOMOZYGOUS_DELETION_BELOW_CN, entrez_ids, gene_status

RB1 = ("13", 48877887, 49056122)
MYOCD = ("17", 12569207, 12672266)


def _call(*segments) -> dict[str, dict]:
    samples = model.conform("molecular_sample", pl.DataFrame([{"sample_id": "S", "case_no": 1, "status": "ok",
                                                               "cn_assay": "tested", "ngs_assay": "tested"}]))
    segs = model.conform("cn_segment", pl.DataFrame(
        [{"sample_id": "S", "chrom": c, "start_bp": a, "end_bp": b, "cn_state": cn, "segment_type": t}
         for c, a, b, cn, t in segments], schema_overrides={"cn_state": pl.Float64}))
    result = gene_status(samples, segs, model.empty("variant"))
    return {r["gene"]: r for r in result.iter_rows(named=True)}


@pytest.mark.parametrize(("cn", "event"), [
    (0.0, "homozygous_deletion"),
    (0.67, "homozygous_deletion"),   # "x0-1", subclonal: oncoscanR's CN < 1
    (HOMOZYGOUS_DELETION_BELOW_CN, "heterozygous_deletion"),
    (1.67, "heterozygous_deletion"),
])
def test_losses_follow_oncoscanr_thresholds(cn, event):
    assert _call(("13", RB1[1] - 10, RB1[2] + 10, cn, "Loss"))["RB1"]["cn_event"] == event


@pytest.mark.parametrize(("cn", "event"), [
    (2.33, "gain"), (AMPLIFICATION_ABOVE_CN, "gain"), (4.33, "amplification"), (6.0, "amplification"),
])
def test_gains_follow_oncoscanr_thresholds(cn, event):
    assert _call(("17", MYOCD[1] - 10, MYOCD[2] + 10, cn, "Gain"))["MYOCD"]["cn_event"] == event


def test_adjacent_segments_covering_the_gene_together_make_a_whole_gene_event():
    mid = (RB1[1] + RB1[2]) // 2
    calls = _call(("13", RB1[1] - 100, mid, 1.0, "Loss"), ("13", mid + 1, RB1[2] + 100, 1.33, "Loss"))
    assert (calls["RB1"]["cn_event"], calls["RB1"]["cn_coverage"]) == ("heterozygous_deletion", "whole")
    one_side = _call(("13", RB1[1] - 100, mid, 1.0, "Loss"))
    assert one_side["RB1"]["cn_coverage"] == "partial"


def test_loh_inside_a_loss_is_not_counted_on_top_of_it():
    calls = _call(("13", RB1[1] - 1000, RB1[2] + 1000, 1.0, "Loss"), ("13", RB1[1] - 500, RB1[2] + 500, None, "LOH"))
    assert calls["RB1"]["cn_event"] == "heterozygous_deletion"
    assert calls["RB1"]["biallelic_inactivation"] is False  # a loss and its own LOH are one hit


def test_entrez_ids_are_pinned_with_the_gene_table():
    ids = entrez_ids()
    assert (ids["TP53"], ids["RB1"], ids["MYOCD"]) == (7157, 5925, 93649)
    assert set(ids) >= {"RB1", "TP53", "MYOCD", "PTEN", "CDKN2A", "ATRX", "MDM2", "CDK4", "DMD"}
