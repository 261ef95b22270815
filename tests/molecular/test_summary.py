"""The molecular summary: definitions on small frames, and the published counts on the twin."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl import model
from clms_etl.molecular.summary import (
    COMPLEX_ABOVE_ANOMALIES,
    SEGMENT_MERGE_GAP_BP,
    profile_class,
    segmental_anomalies,
    summarise,
)

RB1 = ("13", 48877887, 49056122)


def _frame(table: str, rows: list[dict]) -> pl.DataFrame:
    return model.conform(table, pl.DataFrame(rows, infer_schema_length=None)) if rows else model.empty(table)


def _samples(*rows) -> pl.DataFrame:
    return _frame("molecular_sample", [
        {"sample_id": s, "patient_id": f"P{i}", "case_no": i + 1, "status": st, "cn_assay": a, "ngs_assay": a,
         "fusion_assay": f} for i, (s, st, a, f) in enumerate(rows)])


def _segments(*rows) -> pl.DataFrame:
    return _frame("cn_segment", [{"sample_id": s, "chrom": c, "start_bp": a, "end_bp": b, "cn_state": cn,
                                  "segment_type": t} for s, c, a, b, cn, t in rows])


# -- definitions -------------------------------------------------------------------------------


def test_profile_class_boundaries_follow_the_study_definition():
    assert profile_class(0, "ok", True) == "flat"
    assert profile_class(1, "ok", True) == "simple"
    assert profile_class(COMPLEX_ABOVE_ANOMALIES, "ok", True) == "simple"
    assert profile_class(COMPLEX_ABOVE_ANOMALIES + 1, "ok", True) == "complex"
    assert profile_class(None, "not_contributory", False) == "not_contributory"
    assert profile_class(None, "ok", False) == "not_assessed"


def test_loh_inside_a_loss_is_not_a_second_anomaly_but_loh_elsewhere_is():
    segs = _segments(("S", "13", 40_000_000, 60_000_000, 1.0, "Loss"),
                     ("S", "13", 45_000_000, 50_000_000, None, "LOH"),   # inside the loss
                     ("S", "17", 400_959, 11_187_310, None, "LOH"))      # alone
    anomalies = segmental_anomalies(segs)
    assert sorted(anomalies["segment_type"].to_list()) == ["LOH", "Loss"]
    assert anomalies.filter(pl.col("segment_type") == "LOH")["chrom"].to_list() == ["17"]


def test_same_type_segments_closer_than_the_resolution_are_one_anomaly():
    gap = SEGMENT_MERGE_GAP_BP
    segs = _segments(
        ("S", "13", 35_000_000, 48_512_439, 1.0, "Loss"),            # hemizygous flank ...
        ("S", "chr13", 48_512_440, 49_387_002, 0.0, "Loss"),         # ... homozygous core ...
        ("S", "13", 49_387_002 + gap, 61_000_000, 1.0, "Loss"),      # ... flank gap - 1 bases away
        ("S", "13", 61_000_000 + gap + 1, 70_000_000, 1.0, "Loss"),  # gap bases away: a second anomaly
        ("S", "13", 80_000_000, 81_000_000, 3.0, "Gain"),            # another type: its own anomaly
    )
    anomalies = segmental_anomalies(segs)
    assert anomalies.sort("start_bp").select("segment_type", "n_segments").rows() == [
        ("Loss", 3), ("Loss", 1), ("Gain", 1)]


def test_empty_archer_table_is_a_tested_negative_distinct_from_a_failed_assay():
    samples = _samples(("A", "ok", "tested", "tested"), ("B", "ok", "tested", "failed"),
                       ("C", "ok", "tested", "not_done"), ("D", "not_contributory", "failed", "failed"),
                       ("E", "ok", "tested", "tested"))
    fusion = _frame("fusion", [{"sample_id": "E", "gene_5p": "COL1A1", "gene_3p": "PDGFB",
                                "breakpoint_5p": "chr17:48265495", "breakpoint_3p": "chr22:39639691",
                                "reads": 120, "strong_evidence": True, "row_id": "f1"}])
    s = summarise(samples, model.empty("cn_segment"), model.empty("variant"), fusion)
    status = dict(s.cases.select("sample_id", "fusion_status").iter_rows())
    assert status == {"A": "negative", "B": "failed", "C": "not_done", "D": "failed", "E": "positive"}
    assert s.cases.filter(pl.col("sample_id") == "E")["fusions"].to_list() == ["COL1A1::PDGFB"]
    fused = s.recurrent.filter((pl.col("gene") == "PDGFB") & (pl.col("alteration") == "fusion")).row(0, named=True)
    assert (fused["cases"], fused["assessed_cases"]) == (1, 2)  # A and E were tested


def test_polymorphisms_and_filtered_calls_are_excluded_with_their_reason_counted():
    samples = _samples(("A", "ok", "tested", "tested"))
    base = {"sample_id": "A", "chrom": "17", "gene": "TP53", "depth": 1000}
    variant = _frame("variant", [
        {**base, "pos": 7577545, "ref": "T", "alt": "C", "hgvs_c": "c.736A>G", "hgvs_p": "p.Met246Val", "vaf": 0.38,
         "reportable": True, "row_id": "v1"},
        {**base, "pos": 7579472, "ref": "G", "alt": "C", "vaf": 0.5, "gmaf": 0.46, "reportable": False,
         "exclusion_reason": "polymorphism", "row_id": "v2"},
        {**base, "pos": 7577538, "ref": "C", "alt": "T", "vaf": 0.03, "filter": "NOCALL", "reportable": False,
         "exclusion_reason": "filtered", "row_id": "v3"},
        {**base, "pos": 7577120, "ref": "C", "alt": "T", "vaf": 0.0, "reportable": False,
         "exclusion_reason": "reference_call", "row_id": "v4"},
    ])
    s = summarise(samples, model.empty("cn_segment"), variant, model.empty("fusion"))
    case = s.cases.row(0, named=True)
    assert s.mutations.select("hgvs_c", "vaf").rows() == [("c.736A>G", 0.38)]
    assert (case["n_mutations"], case["n_calls_excluded_polymorphism"], case["n_calls_excluded_filtered"],
            case["n_calls_excluded_other"]) == (1, 1, 1, 1)
    assert case["mutations"] == "TP53 c.736A>G p.Met246Val (VAF 0.38)"


def test_mutation_with_loh_of_the_other_allele_is_biallelic_but_loh_alone_is_not():
    samples = _samples(("A", "ok", "tested", "tested"), ("B", "ok", "tested", "tested"))
    segs = _segments(("A", "17", 400_959, 11_187_310, None, "LOH"), ("B", "17", 400_959, 11_187_310, None, "LOH"))
    variant = _frame("variant", [{"sample_id": "A", "chrom": "17", "pos": 7577545, "ref": "T", "alt": "C",
                                  "gene": "TP53", "vaf": 0.7, "depth": 800, "reportable": True, "row_id": "v1"}])
    s = summarise(samples, segs, variant, model.empty("fusion"))
    flags = dict(s.cases.select("sample_id", "tp53_biallelic").iter_rows())
    assert flags == {"A": True, "B": False}
    assert s.cases.filter(pl.col("sample_id") == "A")["tp53_alteration"].to_list() == ["mutation + copy-neutral LOH"]


# -- the twin against the paper ------------------------------------------------------------------


def test_twin_counts_equal_the_published_molecular_section(twin_summary, paper):
    c = twin_summary.counts()
    published = paper["cgh_snp_array"]
    assert c["cases"] == paper["cases"]
    assert c["contributory"] == paper["cases"] - published["not_contributory"]
    assert c["cgh_snp_array"]["complex"] == published["complex_gt_10_segments"]
    assert c["cgh_snp_array"]["simple"] == published["simple_one_anomaly"]
    assert c["cgh_snp_array"]["flat"] == published["flat"]
    assert c["cgh_snp_array"]["not_contributory"] == published["not_contributory"]
    assert c["recurrent_alterations"] == paper["recurrent_alterations"]
    assert c["most_altered_genes_cases"] == paper["most_altered_genes_cases"]
    assert c["biallelic_TP53_or_RB1_inactivation"] == paper["biallelic_TP53_or_RB1_inactivation"]
    assert c["fusions"] == paper["fusions"]
    assert c["fusion_negative_cases"] == c["contributory"]  # every contributory case tested negative


def test_twin_simple_profiles_have_exactly_one_anomaly(twin_summary):
    simple = twin_summary.cases.filter(pl.col("profile_class") == "simple")
    assert simple["anomaly_count"].to_list() == [1] * simple.height


def test_twin_tp53_mutations_are_the_published_ones(twin_summary, paper):
    got = sorted(twin_summary.mutations.select("case_no", "gene", "hgvs_c", "hgvs_p", "vaf").rows())
    want = sorted((m["case"], "TP53", m["hgvs_c"], m["hgvs_p"], m["vaf"]) for m in paper["ngs_tp53_mutations"])
    assert [g[:4] for g in got] == [w[:4] for w in want]
    assert [g[4] for g in got] == pytest.approx([w[4] for w in want])
    assert set(twin_summary.mutations["function"]) == {m["type"] for m in paper["ngs_tp53_mutations"]}


def test_twin_case_2_is_complex_with_myocd_amplification_and_rb1_homozygous_deletion(twin_summary, paper):
    case = twin_summary.cases.filter(pl.col("case_no") == 2).row(0, named=True)
    genes = {r["gene"]: r for r in twin_summary.gene_status.filter(pl.col("case_no") == 2).iter_rows(named=True)}
    assert "complex" in paper["case_2"] and case["profile_class"] == "complex"
    assert "8 copies" in paper["case_2"]
    assert (genes["MYOCD"]["cn_event"], genes["MYOCD"]["cn_state"]) == ("amplification", 8.0)
    assert (genes["RB1"]["cn_event"], genes["RB1"]["biallelic_inactivation"]) == ("homozygous_deletion", True)
    assert genes["TP53"]["cn_event"] == "heterozygous_deletion"
    assert (case["myocd_alteration"], case["rb1_alteration"], case["tp53_alteration"]) == (
        "amplification (CN 8)", "homozygous deletion", "heterozygous deletion")


def test_twin_case_6_is_a_single_13q_loss_including_rb1(twin_summary, paper):
    assert "single anomaly" in paper["case_6"]
    case = twin_summary.cases.filter(pl.col("case_no") == 6).row(0, named=True)
    anomaly = twin_summary.anomalies.filter(pl.col("sample_id") == case["sample_id"])
    assert (case["profile_class"], case["anomaly_count"]) == ("simple", 1)
    assert anomaly.select("chrom", "segment_type").rows() == [("13", "Loss")]  # 13q, not the legend's "13p"
    rb1 = twin_summary.gene_status.filter((pl.col("case_no") == 6) & (pl.col("gene") == "RB1")).row(0, named=True)
    assert (rb1["cn_event"], rb1["cn_coverage"]) == ("heterozygous_deletion", "whole")
    assert anomaly["start_bp"][0] < RB1[1] and anomaly["end_bp"][0] > RB1[2]


def test_not_contributory_cases_are_kept_as_such(twin_summary, paper):
    nc = twin_summary.cases.filter(pl.col("status") == "not_contributory")
    assert nc.height == paper["cgh_snp_array"]["not_contributory"]
    assert set(nc["profile_class"]) == {"not_contributory"} and nc["anomaly_count"].null_count() == nc.height
    assert set(twin_summary.gene_status["sample_id"]).isdisjoint(set(nc["sample_id"]))


def test_the_warehouse_gives_the_same_summary_as_the_lab_frames(twin_read, twin_summary):
    summary, _ = twin_read
    assert summary.counts() == twin_summary.counts()
    assert summary.cases.equals(twin_summary.cases)
