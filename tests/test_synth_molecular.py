"""The synthetic laboratory delivery says what the paper says, in the formats the lab's tools write.

Every assertion reads the written files back with standard tools (csv and polars for the manifest,
ChAS and Archer tables, vcfpy for the VCFs, csv for the pinned gene table), never through the
generator's own code, so a bug in rendering cannot hide behind the same bug in reading.
"""

from __future__ import annotations

import ast
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import vcfpy

from clms_etl.synth.molecular import load_gene_table, random_cases, twin_cases, write_lab_delivery

DELIVERY_DATE = "2026-11-23"
GENE_TABLE = Path(__file__).resolve().parents[1] / "clms_etl" / "data" / "genes_hg19.tsv"
CHAS_HEADER = [
    "File", "CN State", "Type", "Chromosome", "Cytoband Start", "Size (kbp)", "Marker Count",
    "Gene Count", "Genes", "OMIM \u00ae Genes Count", "OMIM \u00ae Genes", "CytoRegions", "Call",
    "Segment Interpretation", "Curation By", "Materially Modified Segment",
    "Microarray Nomenclature", "Full Location",
]  # fmt: skip
ARCHER_HEADER = [
    "Genes", "Breakpoints", "Reads", "Unique Start Sites", "Percent of GSP2 reads", "Strong Evidence",
]  # fmt: skip
TVC_FORMAT = "GT:GQ:DP:FDP:RO:FRO:AO:FAO:AF:SAR:SAF:SRF:SRR:FSAR:FSAF:FSRF:FSRR".split(":")
CHR13_CENTROMERE_END = 18_000_000  # hg19; everything beyond is 13q
NOISE_AF = 0.02  # below the panel's limit of detection: low-level artefact, not a call
BOM = b"\xef\xbb\xbf"


# ---- independent readers --------------------------------------------------------------------


def pinned_genes() -> dict[str, tuple[str, int, int]]:
    lines = [ln for ln in GENE_TABLE.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    rows = csv.DictReader(lines, delimiter="\t")
    return {r["gene"]: (r["chrom"], int(r["start"]), int(r["end"])) for r in rows}


def read_manifest(delivery: Path) -> list[dict[str, str]]:
    with open(delivery / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dataclass(frozen=True)
class Row:
    chrom: str
    start: int
    end: int
    kind: str
    cn: float | None


def read_chas_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = path.read_text(encoding="utf-8-sig")  # drops the BOM when there is one
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    reader = csv.DictReader(lines, delimiter="\t")
    return list(reader.fieldnames or []), list(reader)


def read_chas(path: Path) -> list[Row]:
    rows = []
    for r in read_chas_table(path)[1]:
        match = re.fullmatch(r"chr([0-9XY]+):([0-9,' ]+)-([0-9,' ]+)", r["Full Location"])
        assert match, r["Full Location"]
        start, end = (int(re.sub(r"[^0-9]", "", g)) for g in match.groups()[1:])
        chrom = r["Chromosome"].removeprefix("chr")
        assert chrom == match.group(1)
        rows.append(Row(chrom, start, end, r["Type"], float(r["CN State"]) if r["CN State"] else None))
    return rows


@dataclass
class Call:
    chrom: str
    pos: int
    alts: list[str]
    filters: list[str]
    gt: str
    af: list[float]
    gmaf: list[float | None]
    hotspot: bool
    fr: list
    func: list[dict]


def read_vcf(path: Path) -> tuple[vcfpy.Reader, list[Call]]:
    reader = vcfpy.Reader.from_path(path)
    calls = []
    for rec in reader:
        # FUNC is declared Number=. so vcfpy splits it on commas; the value is one Python literal.
        func = ast.literal_eval(",".join(rec.INFO["FUNC"]))
        alts = [a.value for a in rec.ALT]
        calls.append(
            Call(
                rec.CHROM.removeprefix("chr"), rec.POS, alts, rec.FILTER, rec.calls[0].data["GT"],
                list(rec.INFO["AF"]), list(rec.INFO.get("GMAF", [None] * len(alts))),
                bool(rec.INFO.get("HS")), list(rec.INFO.get("FR", [])), func,
            )
        )  # fmt: skip
    return reader, calls


def somatic(calls: list[Call]) -> list[tuple[dict, float]]:
    """Reportable somatic alleles: PASS, a called genotype, not a polymorphism, above noise."""
    found = []
    for c in calls:
        if c.filters != ["PASS"] or c.gt in ("0/0", "./."):
            continue
        for alt, af, gmaf in zip(c.alts, c.af, c.gmaf, strict=True):
            if (gmaf is not None and gmaf >= 0.01) or af < NOISE_AF:
                continue
            (annotation,) = [f for f in c.func if f["origAlt"] == alt]
            found.append((annotation, af))
    return found


def read_archer(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def overlaps(row: Row, gene: tuple[str, int, int]) -> bool:
    chrom, start, end = gene
    return row.chrom == chrom and row.start <= end and row.end >= start


# ---- what the files say, case by case -------------------------------------------------------


@dataclass
class Observed:
    status: str
    rows: list[Row] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    fusion_rows: list[dict] = field(default_factory=list)

    @property
    def profile(self) -> str | None:
        if self.status != "ok":
            return None
        n = len(self.rows)
        return "flat" if n == 0 else "simple" if n == 1 else "complex" if n > 10 else "other"

    def over(self, gene: str) -> list[Row]:
        return [r for r in self.rows if overlaps(r, pinned_genes()[gene])]

    def deleted(self, gene: str) -> bool:
        return any(r.kind == "Loss" and r.cn is not None and r.cn < 2 for r in self.over(gene))

    def loh(self, gene: str) -> bool:
        return any(r.kind == "LOH" for r in self.over(gene))

    def amplified(self, gene: str) -> bool:
        return any(r.kind == "Gain" and r.cn is not None and r.cn > 4 for r in self.over(gene))

    def mutated(self, gene: str) -> bool:
        return any(a["gene"] == gene for a, _ in somatic(self.calls))


def deliver(root: Path, seed: int, cases=None) -> Path:
    rng = np.random.default_rng(seed)
    cases = twin_cases(rng) if cases is None else cases
    centres = ("nice", "montpellier", "lyon", "nimes")
    links = {c.case_no: (centres[c.case_no % 4], f"P{c.case_no:04d}") for c in cases}
    delivery = root / "molecular" / DELIVERY_DATE
    write_lab_delivery(delivery, cases, links, rng)
    return delivery


def observe(delivery: Path) -> dict[int, Observed]:
    seen = {}
    for entry in read_manifest(delivery):
        obs = Observed(entry["status"])
        sample = entry["sample_id"]
        if obs.status == "ok":
            obs.rows = read_chas(delivery / "chas" / f"{sample}.segments.txt")
            obs.calls = read_vcf(delivery / "ngs" / f"{sample}.vcf")[1]
            obs.fusion_rows = read_archer(delivery / "fusions" / f"{sample}.fusions.tsv")[1]
        seen[int(entry["case_no"])] = obs
    return seen


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    return deliver(tmp_path_factory.mktemp("twin"), seed=20240611)


@pytest.fixture(scope="module")
def cases(twin) -> dict[int, Observed]:
    return observe(twin)


def which(cases: dict[int, Observed], predicate) -> set[int]:
    return {n for n, obs in cases.items() if obs.status == "ok" and predicate(obs)}


# ---- the published series -------------------------------------------------------------------


def test_profiles_match_the_published_array_results(cases):
    profiles = [obs.profile for obs in cases.values()]
    assert len(cases) == 14
    assert profiles.count("complex") == 4
    assert profiles.count("simple") == 3
    assert profiles.count("flat") == 4
    assert profiles.count(None) == 3
    assert {n for n, o in cases.items() if o.profile is None} == {12, 13, 14}


def test_not_contributory_cases_are_in_the_manifest_only(twin, cases):
    manifest = read_manifest(twin)
    assert list(manifest[0]) == ["case_no", "centre", "local_id", "sample_id", "status"]
    failed = [m for m in manifest if m["status"] == "not_contributory"]
    assert len(failed) == 3
    for m in failed:
        sample = m["sample_id"]
        assert not (twin / "chas" / f"{sample}.segments.txt").exists()
        assert not (twin / "ngs" / f"{sample}.vcf").exists()
        assert not (twin / "fusions" / f"{sample}.fusions.tsv").exists()
    assert {m["status"] for m in manifest} == {"ok", "not_contributory"}
    assert all(re.fullmatch(r"OS-\d{4}-\d{4}", m["sample_id"]) for m in manifest)


def test_recurrent_gene_alterations_match_the_published_counts(cases):
    assert which(cases, lambda o: o.deleted("RB1")) == {1, 2, 3, 4, 6}
    assert which(cases, lambda o: o.deleted("TP53") or o.loh("TP53")) == {1, 2, 3, 4}
    assert which(cases, lambda o: o.deleted("TP53") or o.loh("TP53") or o.mutated("TP53")) == {1, 2, 3, 4, 9}
    assert which(cases, lambda o: o.amplified("MYOCD")) == {2, 3}


def test_biallelic_tp53_or_rb1_inactivation_is_in_four_cases(cases):
    def biallelic(o: Observed) -> bool:
        rb1_homozygous = any(r.kind == "Loss" and r.cn == 0 for r in o.over("RB1"))
        tp53_two_hits = o.mutated("TP53") and (o.loh("TP53") or o.deleted("TP53"))
        return rb1_homozygous or tp53_two_hits

    assert which(cases, biallelic) == {1, 2, 3, 4}


def test_case_2_has_myocd_x8_homozygous_rb1_and_heterozygous_tp53_deletions(cases):
    case = cases[2]
    assert [(r.kind, r.cn) for r in case.over("MYOCD")] == [("Gain", 8.0)]
    assert [(r.kind, r.cn) for r in case.over("RB1")] == [("Loss", 0.0)]
    assert [(r.kind, r.cn) for r in case.over("TP53")] == [("Loss", 1.0)]


def test_case_6_is_a_single_13q_loss_including_rb1(cases):
    (row,) = cases[6].rows
    _, rb1_start, rb1_end = pinned_genes()["RB1"]
    assert (row.chrom, row.kind, row.cn) == ("13", "Loss", 1.0)
    assert row.start > CHR13_CENTROMERE_END
    assert row.start <= rb1_start and row.end >= rb1_end


def test_case_1_has_biallelic_tp53_and_a_heterozygous_rb1_loss(cases):
    case = cases[1]
    assert case.loh("TP53") and case.mutated("TP53")
    assert [(r.kind, r.cn) for r in case.over("RB1")] == [("Loss", 1.0)]


def test_tp53_mutations_carry_published_hgvs_and_vaf(cases):
    found = {
        (n, a["gene"], a["transcript"], a["coding"], a["protein"], a["function"], round(af, 2))
        for n, obs in cases.items()
        for a, af in somatic(obs.calls)
    }
    assert found == {
        (1, "TP53", "NM_000546.5", "c.736A>G", "p.Met246Val", "missense", 0.38),
        (9, "TP53", "NM_000546.5", "c.722C>T", "p.Ser241Phe", "missense", 0.06),
    }


def test_tp53_mutations_sit_at_their_hg19_reverse_strand_positions(cases):
    def record(case: int, pos: int) -> Call:
        (call,) = [c for c in cases[case].calls if c.chrom == "17" and c.pos == pos and c.gt == "0/1"]
        return call

    # c.736A>G: coding A on the reverse strand = genomic T; c.722C>T = genomic G>A.
    assert (record(1, 7577545).alts, record(1, 7577545).af) == (["C"], [0.38])
    assert (record(9, 7577559).alts, record(9, 7577559).af) == (["A"], [0.06])


def test_vaf_is_exactly_fao_over_fdp(twin):
    for path in sorted((twin / "ngs").glob("*.vcf")):
        for rec in vcfpy.Reader.from_path(path):
            fdp = rec.INFO["FDP"]
            for fao, af in zip(rec.INFO["FAO"], rec.INFO["AF"], strict=True):
                assert af == pytest.approx(fao / fdp, abs=5e-6)


def test_no_fusion_is_reported_but_every_case_was_tested(twin, cases):
    for obs in cases.values():
        assert obs.fusion_rows == []
    contributory = [m["sample_id"] for m in read_manifest(twin) if m["status"] == "ok"]
    for sample in contributory:
        header, rows = read_archer(twin / "fusions" / f"{sample}.fusions.tsv")
        assert header == ARCHER_HEADER and rows == []


def test_background_anomalies_touch_no_pinned_gene_but_one_partial_dmd_loss(cases):
    genes = pinned_genes()
    rows = [r for obs in cases.values() for r in obs.rows]
    touched = {g for r in rows for g, span in genes.items() if overlaps(r, span)}
    assert touched == {"RB1", "TP53", "MYOCD", "DMD"}
    dmd_chrom, dmd_start, dmd_end = genes["DMD"]
    partial = [r for obs in cases.values() for r in obs.over("DMD")]
    assert partial and all(r.start > dmd_start and r.end < dmd_end for r in partial)


# ---- file formats ---------------------------------------------------------------------------


def test_every_vcf_parses_with_the_tvc_layout(twin, cases):
    for path in sorted((twin / "ngs").glob("*.vcf")):
        reader, calls = read_vcf(path)
        lines = reader.header.lines
        meta = {ln.key: ln.value for ln in lines if not hasattr(ln, "mapping")}
        assert meta["fileformat"] == "VCFv4.1"
        assert meta["fileDate"] == DELIVERY_DATE.replace("-", "")
        assert meta["source"].startswith('"tvc 5.0')
        assert meta["reference"].endswith("hg19.fasta")
        assert "IonReporterExportVersion" in meta
        assert reader.header.get_info_field_info("AF").number == "A"
        assert reader.header.get_info_field_info("GMAF").type == "Float"
        assert reader.header.samples.names == [path.name.removesuffix(".vcf")]
        contigs = {ln.mapping["ID"] for ln in lines if ln.key == "contig"}
        assert {f"chr{c.chrom}" for c in calls} <= contigs
        text = path.read_text(encoding="utf-8")
        body = [ln.split("\t") for ln in text.splitlines() if not ln.startswith("#")]
        assert all(fields[8].split(":") == TVC_FORMAT for fields in body)


def test_every_vcf_has_polymorphisms_nocalls_reference_hotspots_and_one_multiallelic(cases):
    for obs in (o for o in cases.values() if o.status == "ok"):
        polymorphisms = [c for c in obs.calls if any(g is not None and g >= 0.01 for g in c.gmaf)]
        assert 2 <= len(polymorphisms) <= 4
        nocalls = [c for c in obs.calls if c.filters == ["NOCALL"]]
        assert nocalls and all(any(c.fr) for c in nocalls)
        reference = [c for c in obs.calls if c.hotspot and c.gt == "0/0" and c.af == [0.0]]
        assert reference
        (multi,) = [c for c in obs.calls if len(c.alts) > 1]
        assert len(multi.alts) == 2 and len(multi.af) == 2 and len(multi.func) == 2
        assert all(af < NOISE_AF for af in multi.af[1:])  # the second allele is noise


def test_chas_exports_have_the_exact_header_and_chas_conventions(twin):
    for path in sorted((twin / "chas").glob("*.segments.txt")):
        header, rows = read_chas_table(path)
        assert header == CHAS_HEADER
        for r in rows:
            assert r["File"] == path.name.replace(".segments.txt", ".OSCHP")
            assert r["Type"] in ("Gain", "Loss", "LOH")
            assert (r["CN State"] == "") == (r["Type"] == "LOH")
            assert r["Microarray Nomenclature"].startswith("arr[hg19] ")
            assert r["Microarray Nomenclature"].endswith(" hmz") == (r["Type"] == "LOH")
            assert re.fullmatch(r"\d+\.\d{1,3}", r["Size (kbp)"])


def test_chas_exports_load_with_polars_whatever_the_bom_and_preamble(twin, cases):
    manifest = {m["sample_id"]: int(m["case_no"]) for m in read_manifest(twin) if m["status"] == "ok"}
    for sample, case_no in manifest.items():
        raw = (twin / "chas" / f"{sample}.segments.txt").read_bytes()
        frame = pl.read_csv(raw, separator="\t", comment_prefix="#", infer_schema=False)
        assert frame.columns == CHAS_HEADER
        assert frame.height == len(cases[case_no].rows)


def test_chas_files_mix_bom_chromosome_spellings_separators_and_fractional_states(twin):
    paths = sorted((twin / "chas").glob("*.segments.txt"))
    boms = [p.read_bytes().startswith(BOM) for p in paths]
    assert any(boms) and not all(boms)
    tables = [read_chas_table(p)[1] for p in paths]
    spellings = {r["Chromosome"].startswith("chr") for rows in tables for r in rows}
    assert spellings == {True, False}
    assert any("," in r["Full Location"] for rows in tables for r in rows)
    assert any("," not in r["Full Location"] for rows in tables for r in rows)
    states = [float(r["CN State"]) for rows in tables for r in rows if r["CN State"]]
    assert any(s != int(s) for s in states)


# ---- determinism ----------------------------------------------------------------------------


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_deliveries(tmp_path):
    first = deliver(tmp_path / "a", seed=7)
    second = deliver(tmp_path / "b", seed=7)
    assert tree(first) == tree(second)


def test_different_seeds_give_different_deliveries(tmp_path):
    assert tree(deliver(tmp_path / "a", seed=7)) != tree(deliver(tmp_path / "b", seed=8))


def test_delivery_folder_must_be_named_by_date(tmp_path):
    rng = np.random.default_rng(0)
    cases = twin_cases(rng)
    links = {c.case_no: ("nice", str(c.case_no)) for c in cases}
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        write_lab_delivery(tmp_path / "molecular" / "latest", cases, links, rng)


# ---- scale runs -----------------------------------------------------------------------------


def test_random_cases_exercise_every_reader_path(tmp_path):
    generated = random_cases(120, np.random.default_rng(3))
    delivery = deliver(tmp_path, seed=3, cases=generated)
    seen = observe(delivery)
    assert len(seen) == 120
    assert {o.profile for o in seen.values()} == {"complex", "simple", "flat", None}
    by_no = {c.case_no: c for c in generated}
    for n, obs in seen.items():
        assert obs.profile == by_no[n].profile
        assert len(obs.rows) == len(by_no[n].segments)
        found = sorted((a["gene"], a["coding"], round(af, 2)) for a, af in somatic(obs.calls))
        assert found == sorted((m.gene, m.hgvs_c, m.vaf) for m in by_no[n].mutations)
        assert [r["Genes"] for r in obs.fusion_rows] == list(by_no[n].fusions)
    assert any(obs.fusion_rows for obs in seen.values())
    assert any(somatic(obs.calls) for obs in seen.values())


# ---- pinned gene table ----------------------------------------------------------------------


def test_gene_table_is_versioned_hg19_with_entrez_ids():
    first_line = GENE_TABLE.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "# version: 1 (GRCh37/hg19, 1-based inclusive)"
    table = load_gene_table()
    assert table.columns == ["gene", "chrom", "start", "end", "band", "source", "entrez_id"]
    rows = {r["gene"]: r for r in table.iter_rows(named=True)}
    assert set(rows) == {"RB1", "TP53", "MYOCD", "PTEN", "CDKN2A", "CDKN2B", "ATRX", "MDM2", "CDK4", "DMD"}
    assert (rows["RB1"]["chrom"], rows["RB1"]["start"], rows["RB1"]["end"], rows["RB1"]["entrez_id"]) == (
        "13", 48877887, 49056122, 5925,
    )  # fmt: skip
    assert (rows["TP53"]["start"], rows["TP53"]["end"], rows["TP53"]["entrez_id"]) == (7565097, 7590856, 7157)
    assert rows["MYOCD"]["entrez_id"] == 93649 and rows["DMD"]["chrom"] == "X"
