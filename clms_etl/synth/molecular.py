"""Synthetic delivery of the molecular laboratory: OncoScan/ChAS segments, Ion Torrent VCFs, Archer.

Two layers, like the centre formats:

* *meaning*: :class:`MolecularCase` (profile, copy-number segments, somatic mutations, fusions).
  :func:`twin_cases` is the published series (clms_paper.json, "molecular"); :func:`random_cases`
  is a plausible mix for scale runs.
* *rendering*: :func:`write_lab_delivery` writes what the laboratory's software would write
  (``docs/formats_and_rules.md`` §2 ChAS 3.3, §3 TVC 5.0 / Ion Reporter 5.0, §4 Archer 6.0),
  including the nuisances a reader must survive: BOM or not, ``#`` preamble, ``7`` vs ``chr7``,
  thousands separators, fractional CN states, polymorphisms, NOCALL and hotspot reference calls,
  multi-allelic records.

Gene-level truth is decided on coordinates against the pinned table ``clms_etl/data/genes_hg19.tsv``
(1-based inclusive, hg19). The random "background" anomalies of complex profiles never touch a gene
of that table, so the published gene-level counts stay exact whatever the seed.

What a reader must do to recover the truth from the files (the tests do exactly this):

* ChAS: decide on ``Type`` / ``CN State`` / ``Full Location`` (after dropping the BOM, the ``#``
  lines and the separators); Cytoband and Genes are decoration (bands are approximate, see
  :func:`_band_at`; non-pinned gene names are LOC/LINC fillers).
* VCF: a somatic allele is FILTER PASS, genotype neither ``0/0`` nor ``./.``, no GMAF >= 0.01, and
  AF above the panel's noise (the second allele of a multi-allelic record is <= 0.4 %); VAF is AF.
* Archer: a header without rows means "tested, no fusion".

Everything that varies comes from the caller's ``numpy.random.Generator``: the same seed gives
byte-identical files (no clock, no set ordering; dates come from the delivery folder's name).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl

# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One ChAS segment (one row of the export)."""

    chrom: str  # "13", "X" (no "chr": the writer decides how each file spells it)
    start: int  # 1-based inclusive, hg19
    end: int
    cn_state: float | None  # None for LOH (ChAS leaves the cell empty)
    kind: str  # "Gain" | "Loss" | "LOH"


@dataclass(frozen=True)
class Mutation:
    """A somatic variant to be reported (hg19, genomic + strand alleles as in the VCF)."""

    gene: str
    chrom: str
    pos: int
    ref: str
    alt: str
    hgvs_c: str
    hgvs_p: str
    transcript: str
    vaf: float  # written as AF = FAO / FDP
    depth: int  # FDP
    function: str  # Ion Reporter's word: "missense", "nonsense", "synonymous"...


@dataclass(frozen=True)
class MolecularCase:
    case_no: int
    sample_id: str  # laboratory accession, e.g. "OS-2017-0142" (no patient identifier)
    status: str  # "ok" | "not_contributory"
    profile: str | None  # "complex" | "simple" | "flat"; None when not contributory
    segments: tuple[Segment, ...]
    mutations: tuple[Mutation, ...]
    fusions: tuple[str, ...]  # "5'GENE:3'GENE"; always () in the twin


# --------------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------------

_GENE_TABLE = "genes_hg19.tsv"


def load_gene_table() -> pl.DataFrame:
    """The pinned hg19 gene table (gene, chrom, start, end, band, source, entrez_id)."""
    raw = (resources.files("clms_etl") / "data" / _GENE_TABLE).read_bytes()
    return pl.read_csv(
        io.BytesIO(raw),
        separator="\t",
        comment_prefix="#",
        schema_overrides={"chrom": pl.String, "start": pl.Int64, "end": pl.Int64, "entrez_id": pl.Int64},
    )


@dataclass(frozen=True)
class _Gene:
    gene: str
    chrom: str
    start: int
    end: int
    band: str


@functools.cache
def _genes() -> tuple[_Gene, ...]:
    frame = load_gene_table()
    return tuple(
        _Gene(r["gene"], r["chrom"], r["start"], r["end"], r["band"]) for r in frame.iter_rows(named=True)
    )


def _gene(name: str) -> _Gene:
    return next(g for g in _genes() if g.gene == name)


# OMIM gene numbers, only to fill ChAS's "OMIM ® Genes" column like the real export does.
_OMIM = {
    "RB1": 614041, "TP53": 191170, "MYOCD": 606127, "PTEN": 601728, "CDKN2A": 600160,
    "CDKN2B": 600431, "ATRX": 300032, "MDM2": 164785, "CDK4": 123829, "DMD": 300377,
}  # fmt: skip

CHROMOSOMES = tuple(str(i) for i in range(1, 23)) + ("X", "Y")
_CHROM_RANK = {c: i for i, c in enumerate(CHROMOSOMES)}

# hg19 chromosome lengths, for the VCF ##contig lines.
_HG19_LENGTH = {
    "1": 249250621, "2": 243199373, "3": 198022430, "4": 191154276, "5": 180915260,
    "6": 171115067, "7": 159138663, "8": 146364022, "9": 141213431, "10": 135534747,
    "11": 135006516, "12": 133851895, "13": 115169878, "14": 107349540, "15": 102531392,
    "16": 90354753, "17": 81195210, "18": 78077248, "19": 59128983, "20": 63025520,
    "21": 48129895, "22": 51304566, "X": 155270560, "Y": 59373566,
}  # fmt: skip

# Arm spans covered by OncoScan probes (NA33, hg19), from oncoscanR
# inst/extdata/Oncoscan.na33.r2.cov.processed.bed. Segments are drawn inside these, so an
# "arm-level" event has the coordinates a real whole-arm call would have.
_ARMS = {
    "1p": (754192, 121350934), "1q": (144851599, 249212878), "2p": (21494, 90245035),
    "2q": (95429197, 243052331), "3p": (63411, 90473621), "3q": (93517443, 197852564),
    "4p": (69404, 49092454), "4q": (52684891, 190915650), "5p": (38139, 46401271),
    "5q": (49441966, 180698312), "6p": (204909, 58770502), "6q": (61886393, 170913051),
    "7p": (41421, 58025423), "7q": (61545024, 159118443), "8p": (172417, 43767534),
    "8q": (46896972, 146292734), "9p": (204738, 38771831), "9q": (70984372, 141054761),
    "10p": (126070, 39146676), "10q": (42413322, 135434303), "11p": (192764, 51575951),
    "11q": (54795357, 134938847), "12p": (189400, 34828211), "12q": (37902988, 133818115),
    "13q": (19084823, 115103150), "14q": (20219083, 107282024), "15q": (22752399, 102397317),
    "16p": (83887, 35271725), "16q": (46461309, 90158005), "17p": (400959, 22217883),
    "17q": (25326941, 80263427), "18p": (12842, 15377471), "18q": (18554307, 78007784),
    "19p": (247232, 24544320), "19q": (27754573, 59093239), "20p": (69094, 26309255),
    "20q": (29519156, 62912463), "21q": (14344537, 48097610), "22q": (16863070, 51213826),
    "Xp": (177942, 58470802), "Xq": (61732394, 155219364), "Yp": (2660163, 10010068),
    "Yq": (13905435, 23997786),
}  # fmt: skip

# Most distal ISCN band of each arm. Only used to *approximate* cytobands (see _band_at):
# readers must decide on coordinates, never on the band text.
_TERMINAL_BAND = {
    "1p": 36, "1q": 44, "2p": 25, "2q": 37, "3p": 26, "3q": 29, "4p": 16, "4q": 35, "5p": 15,
    "5q": 35, "6p": 25, "6q": 27, "7p": 22, "7q": 36, "8p": 23, "8q": 24, "9p": 24, "9q": 34,
    "10p": 15, "10q": 26, "11p": 15, "11q": 25, "12p": 13, "12q": 24, "13q": 34, "14q": 32,
    "15q": 26, "16p": 13, "16q": 24, "17p": 13, "17q": 25, "18p": 11, "18q": 23, "19p": 13,
    "19q": 13, "20p": 13, "20q": 13, "21q": 22, "22q": 13, "Xp": 22, "Xq": 28, "Yp": 11, "Yq": 12,
}  # fmt: skip


def _arm_name(chrom: str, pos: int) -> str:
    p, q = _ARMS.get(f"{chrom}p"), _ARMS[f"{chrom}q"]
    if p is None:
        return f"{chrom}q"
    # Inside the centromere gap: the nearer covered arm.
    return f"{chrom}p" if pos <= p[1] + (q[0] - p[1]) // 2 else f"{chrom}q"


@functools.cache
def _band_labels(arm: str) -> tuple[str, ...]:
    """Plausible band names of an arm, centromere first (region 1 band 1 ... terminal band)."""
    last = _TERMINAL_BAND[arm]
    regions, last_band = divmod(last, 10)
    labels = []
    for region in range(1, regions + 1):
        for band in range(1, (last_band if region == regions else 4) + 1):
            labels.append(f"{region}{band}")
    return tuple(labels)


def _band_at(chrom: str, pos: int) -> str:
    """Cytoband of a position, e.g. "q14.2" (without the chromosome, like ChAS's column).

    Inside a gene of the pinned table the gene's band is used; elsewhere the band is
    interpolated along the arm. That is an approximation (the OncoScan annotation has the real
    one); no consumer may rely on it.
    """
    for g in _genes():
        if g.chrom == chrom and g.start <= pos <= g.end:
            band = g.band.split("-")[0]
            return band[len(chrom) :]
    arm = _arm_name(chrom, pos)
    lo, hi = _ARMS[arm]
    labels = _band_labels(arm)
    frac = min(max((pos - lo) / (hi - lo), 0.0), 0.999999)
    if arm.endswith("p"):  # p bands are numbered from the centromere towards pter
        frac = 0.999999 - frac
    scaled = frac * len(labels)
    index = int(scaled)
    sub = 1 + int((scaled - index) * 3)
    return f"{arm[-1]}{labels[index]}.{sub}"


# ---- Variant catalogue ----------------------------------------------------------------------
#
# Every allele the generator writes comes from here, with its Ion Reporter annotation. hg19
# positions and alleles are on the genome's + strand; TP53, KDR, BRAF and KRAS are on the
# reverse strand, so their VCF REF/ALT are the complements of the coding bases.
#
# TP53 anchor (NM_000546.5, exon 7 = c.673-c.782 = chr17:7577608-7577499, reverse strand):
# c.743 = chr17:7577538 (R248Q, C>T in TCGA MAFs) and c.722 = chr17:7577559 (S241F,
# "17:7577559G>A NM_000546.5:c.722C>T exon 7/11" in a public test), so g = 7577538 + (743 - c):
# c.736 -> 7577545, coding A (codon 246 ATG) = genomic T, hence c.736A>G p.Met246Val is
# chr17:7577545 T>C.


@dataclass(frozen=True)
class _Allele:
    gene: str
    chrom: str
    pos: int
    ref: str
    alt: str
    transcript: str
    exon: str
    hgvs_c: str
    hgvs_p: str
    function: str
    ident: str = "."  # COSMIC id of the hotspot or dbSNP rs id, "." when none
    gmaf: float | None = None  # global minor allele frequency (polymorphisms only)


def _a(gene, chrom, pos, ref, alt, tx, exon, c, p, fn, ident=".", gmaf=None) -> _Allele:
    return _Allele(gene, chrom, pos, ref, alt, tx, exon, c, p, fn, ident, gmaf)


_TP53 = "NM_000546.5"
_CATALOGUE = (
    # TP53 hotspots (reverse strand)
    _a("TP53", "17", 7577545, "T", "C", _TP53, "7", "c.736A>G", "p.Met246Val", "missense"),
    _a("TP53", "17", 7577545, "T", "A", _TP53, "7", "c.736A>T", "p.Met246Leu", "missense"),
    _a("TP53", "17", 7577559, "G", "A", _TP53, "7", "c.722C>T", "p.Ser241Phe", "missense"),
    _a("TP53", "17", 7577559, "G", "T", _TP53, "7", "c.722C>A", "p.Ser241Tyr", "missense"),
    _a("TP53", "17", 7577538, "C", "T", _TP53, "7", "c.743G>A", "p.Arg248Gln", "missense", "COSM10662"),
    _a("TP53", "17", 7577538, "C", "A", _TP53, "7", "c.743G>T", "p.Arg248Leu", "missense"),
    _a("TP53", "17", 7577539, "G", "A", _TP53, "7", "c.742C>T", "p.Arg248Trp", "missense", "COSM10656"),
    _a("TP53", "17", 7578406, "C", "T", _TP53, "5", "c.524G>A", "p.Arg175His", "missense", "COSM10648"),
    _a("TP53", "17", 7578406, "C", "A", _TP53, "5", "c.524G>T", "p.Arg175Leu", "missense"),
    _a("TP53", "17", 7577120, "C", "T", _TP53, "8", "c.818G>A", "p.Arg273His", "missense", "COSM10660"),
    _a("TP53", "17", 7577120, "C", "A", _TP53, "8", "c.818G>T", "p.Arg273Leu", "missense"),
    _a("TP53", "17", 7577121, "G", "A", _TP53, "8", "c.817C>T", "p.Arg273Cys", "missense", "COSM10659"),
    _a("TP53", "17", 7577094, "G", "A", _TP53, "8", "c.844C>T", "p.Arg282Trp", "missense"),
    # Other CHPv2 hotspots, used for reference calls, NOCALLs and noise
    _a("BRAF", "7", 140453136, "A", "T", "NM_004333.4", "15", "c.1799T>A", "p.Val600Glu", "missense", "COSM476"),
    _a("BRAF", "7", 140453136, "A", "C", "NM_004333.4", "15", "c.1799T>G", "p.Val600Gly", "missense"),
    _a("KRAS", "12", 25398284, "C", "T", "NM_033360.3", "2", "c.35G>A", "p.Gly12Asp", "missense", "COSM521"),
    _a("KRAS", "12", 25398284, "C", "A", "NM_033360.3", "2", "c.35G>T", "p.Gly12Val", "missense", "COSM520"),
    _a("PIK3CA", "3", 178952085, "A", "G", "NM_006218.2", "21", "c.3140A>G", "p.His1047Arg", "missense", "COSM775"),
    _a("PIK3CA", "3", 178952085, "A", "T", "NM_006218.2", "21", "c.3140A>T", "p.His1047Leu", "missense"),
    # Common polymorphisms (first allele) and a second, artefactual allele at the same site.
    # GMAF values are plausible orders of magnitude, not copied from dbSNP.
    _a("TP53", "17", 7579472, "G", "C", _TP53, "4", "c.215C>G", "p.Pro72Arg", "missense", "rs1042522", 0.4571),
    _a("TP53", "17", 7579472, "G", "A", _TP53, "4", "c.215C>T", "p.Pro72Leu", "missense"),
    _a("EGFR", "7", 55249063, "G", "A", "NM_005228.3", "20", "c.2361G>A", "p.Gln787=", "synonymous", "rs1050171", 0.4117),
    _a("EGFR", "7", 55249063, "G", "T", "NM_005228.3", "20", "c.2361G>T", "p.Gln787His", "missense"),
    _a("KDR", "4", 55972974, "T", "A", "NM_002253.2", "11", "c.1416A>T", "p.Gln472His", "missense", "rs1870377", 0.2344),
    _a("KDR", "4", 55972974, "T", "C", "NM_002253.2", "11", "c.1416A>G", "p.Gln472=", "synonymous"),
    _a("KIT", "4", 55593464, "A", "C", "NM_000222.2", "10", "c.1621A>C", "p.Met541Leu", "missense", "rs3822214", 0.0899),
    _a("KIT", "4", 55593464, "A", "G", "NM_000222.2", "10", "c.1621A>G", "p.Met541Val", "missense"),
)  # fmt: skip


def _site(chrom: str, pos: int) -> tuple[_Allele, ...]:
    return tuple(a for a in _CATALOGUE if a.chrom == chrom and a.pos == pos)


def _allele(chrom: str, pos: int, alt: str) -> _Allele | None:
    return next((a for a in _site(chrom, pos) if a.alt == alt), None)


_POLYMORPHISM_SITES = (("17", 7579472), ("7", 55249063), ("4", 55972974), ("4", 55593464))
_HOTSPOT_SITES = (
    ("7", 140453136), ("12", 25398284), ("3", 178952085), ("17", 7577538),
    ("17", 7578406), ("17", 7577120), ("17", 7577545), ("17", 7577559),
)  # fmt: skip
# Somatic mutations random_cases may draw (TP53 hotspots dominate in LMS; PIK3CA is rare).
_RANDOM_SOMATIC = (
    ("17", 7577538, "T"), ("17", 7577539, "A"), ("17", 7578406, "T"), ("17", 7577120, "T"),
    ("17", 7577121, "A"), ("17", 7577094, "A"), ("17", 7577545, "C"), ("17", 7577559, "A"),
)  # fmt: skip
_RARE_SOMATIC = (("3", 178952085, "G"),)


def _mutation(chrom: str, pos: int, alt: str, vaf: float, depth: int) -> Mutation:
    a = _allele(chrom, pos, alt)
    assert a is not None, f"not in the catalogue: {chrom}:{pos}>{alt}"
    return Mutation(
        a.gene, a.chrom, a.pos, a.ref, a.alt, a.hgvs_c, a.hgvs_p, a.transcript, vaf, depth, a.function
    )


# Archer fusions random_cases may report (breakpoints hg19; EWSR1:FLI1 from the brief,
# COL1A1:PDGFB - the dermatofibrosarcoma fusion, a real differential of cLMS - approximate).
_FUSION_BREAKPOINTS = {
    "EWSR1:FLI1": "chr22:29683123;chr11:128675261",
    "COL1A1:PDGFB": "chr17:48265495;chr22:39639691",
}

# --------------------------------------------------------------------------------------------
# Small rng helpers: numpy returns numpy scalars; the records hold plain Python values.
# --------------------------------------------------------------------------------------------


def _randint(rng: np.random.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high]."""
    return int(rng.integers(low, high + 1))


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> int:
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


# --------------------------------------------------------------------------------------------
# Building segments
# --------------------------------------------------------------------------------------------


class _Layout:
    """What is already occupied on each chromosome of one case.

    Seeded with the genes of the pinned table so that background anomalies never touch them,
    and grown with every segment placed, so that segments of a case never overlap (ChAS
    segments of one CN track are disjoint).
    """

    def __init__(self) -> None:
        self.taken: dict[str, list[tuple[int, int, str]]] = {}
        for g in _genes():
            self.taken.setdefault(g.chrom, []).append((g.start, g.end, g.gene))

    def is_free(self, chrom: str, start: int, end: int, ignore: tuple[str, ...] = ()) -> bool:
        return all(e < start or s > end for s, e, label in self.taken.get(chrom, ()) if label not in ignore)

    def take(self, seg: Segment) -> Segment:
        self.taken.setdefault(seg.chrom, []).append((seg.start, seg.end, "segment"))
        return seg

    def room(self, chrom: str, start: int, end: int, ignore: tuple[str, ...]) -> tuple[int, int]:
        """Widest free span around [start, end], within its arm."""
        lo, hi = _ARMS[_arm_name(chrom, start)]
        for s, e, label in self.taken.get(chrom, ()):
            if label in ignore:
                continue
            if e < start:
                lo = max(lo, e + 1)
            elif s > end:
                hi = min(hi, s - 1)
        return lo, hi


def _gain_cn(rng: np.random.Generator) -> float:
    # Fractional states are what ChAS reports for subclonal or polyploid segments.
    return float(_pick(rng, (3.0, 3.0, 3.0, 4.0, 2.67, 3.33, 2.33)))


def _loss_cn(rng: np.random.Generator) -> float:
    return float(_pick(rng, (1.0, 1.0, 1.0, 1.33, 1.67)))


# Background anomalies land on an arm with a probability proportional to its length; Y is left
# out because the sex of the patients is not the laboratory's business.
_BACKGROUND_ARMS = tuple(a for a in _ARMS if not a.startswith("Y"))
_BACKGROUND_WEIGHTS = np.array([_ARMS[a][1] - _ARMS[a][0] for a in _BACKGROUND_ARMS], dtype=float)
_BACKGROUND_WEIGHTS /= _BACKGROUND_WEIGHTS.sum()


def _background_segment(layout: _Layout, rng: np.random.Generator) -> Segment:
    """A random anomaly touching no gene of the pinned table nor any segment already placed."""
    for _ in range(1000):
        arm = _BACKGROUND_ARMS[int(rng.choice(len(_BACKGROUND_ARMS), p=_BACKGROUND_WEIGHTS))]
        lo, hi = _ARMS[arm]
        length = min(_log_uniform(rng, 4e5, 4e7), (hi - lo) // 2)
        start = _randint(rng, lo, hi - length)
        end = start + length - 1
        chrom = arm[:-1]
        if not layout.is_free(chrom, start, end):
            continue
        kind = _pick(rng, ("Gain", "Gain", "Loss", "Loss", "LOH"))
        cn = None if kind == "LOH" else (_gain_cn(rng) if kind == "Gain" else _loss_cn(rng))
        return layout.take(Segment(chrom, start, end, cn, kind))
    raise RuntimeError("no free room left for a background segment")


def _focal(
    layout: _Layout, rng: np.random.Generator, genes: tuple[str, ...], kind: str, cn: float | None,
    flank: tuple[float, float] = (5e4, 5e6),
) -> Segment:  # fmt: skip
    """A segment over whole genes, with random flanks that stop short of anything else taken."""
    members = [_gene(g) for g in genes]
    chrom = members[0].chrom
    gstart, gend = min(g.start for g in members), max(g.end for g in members)
    lo, hi = layout.room(chrom, gstart, gend, ignore=genes)
    start = max(lo, gstart - _log_uniform(rng, *flank))
    end = min(hi, gend + _log_uniform(rng, *flank))
    assert layout.is_free(chrom, start, end, ignore=genes)
    return layout.take(Segment(chrom, start, end, cn, kind))


def _partial(layout: _Layout, rng: np.random.Generator, gene: str, kind: str, cn: float | None) -> Segment:
    """An intragenic segment (e.g. a DMD deletion): a partial-gene event, not a whole-gene one."""
    g = _gene(gene)
    length = g.end - g.start + 1
    start = g.start + int(length * rng.uniform(0.1, 0.4))
    end = start + int(length * rng.uniform(0.1, 0.3))
    return layout.take(Segment(g.chrom, start, end, cn, kind))


def _whole_arm(arm: str, kind: str, cn: float | None) -> Segment:
    lo, hi = _ARMS[arm]
    return Segment(arm[:-1], lo, hi, cn, kind)


def _sorted(segments) -> tuple[Segment, ...]:
    return tuple(sorted(segments, key=lambda s: (_CHROM_RANK[s.chrom], s.start)))


def _sample_ids(rng: np.random.Generator, n: int, years: tuple[int, int]) -> list[str]:
    """Unique laboratory accessions "OS-<year>-<number>" (4 digits, 5 once those run out)."""
    span = years[1] - years[0] + 1
    width = 4 if n <= span * 9000 else 5
    per_year = 10**width - 1
    codes = rng.choice(span * per_year, size=n, replace=False)
    return [f"OS-{years[0] + int(c) // per_year}-{int(c) % per_year + 1:0{width}d}" for c in codes]


def _depth(rng: np.random.Generator) -> int:
    # A multiple of 50: FAO = VAF x FDP is then an integer for any 2-decimal VAF, so the AF
    # written by TVC is exactly the published VAF.
    return 50 * _randint(rng, 16, 60)


# --------------------------------------------------------------------------------------------
# The twin of the published series
# --------------------------------------------------------------------------------------------

# Hand-placed gene-level events (hg19). TP53 = 7,565,097-7,590,856 and MYOCD = 12,569,207-
# 12,672,266 are 5 Mb apart on 17p: every 17p segment below stops short of the gene it must not
# touch, so RB1 / TP53 / MYOCD counts are exact by construction.
_TWIN_EVENTS: dict[int, tuple[Segment, ...]] = {
    1: (
        Segment("17", 400959, 11187310, None, "LOH"),  # copy-neutral LOH over TP53 (not MYOCD)
        Segment("13", 41203774, 70512336, 1.0, "Loss"),  # heterozygous loss over RB1
    ),
    2: (
        Segment("17", 1024532, 9870112, 1.0, "Loss"),  # heterozygous TP53 deletion, 17p13
        Segment("17", 12103334, 13298871, 8.0, "Gain"),  # MYOCD amplification x8, 17p12
        Segment("13", 48602117, 49310455, 0.0, "Loss"),  # homozygous RB1 deletion, 13q14
    ),
    3: (
        Segment("13", 48731009, 49122876, 0.0, "Loss"),  # homozygous RB1 deletion
        Segment("17", 5987221, 8402113, 1.0, "Loss"),  # heterozygous TP53 loss
        Segment("17", 11874560, 14032778, 6.0, "Gain"),  # weak MYOCD amplification x6
        Segment("X", 31642118, 32205904, 1.0, "Loss"),  # intragenic DMD loss: partial-gene event
    ),
    4: (
        Segment("13", 35118004, 48512439, 1.0, "Loss"),  # hemizygous flank...
        Segment("13", 48512440, 49387002, 0.0, "Loss"),  # ...around the homozygous RB1 deletion
        Segment("13", 49387003, 61240118, 1.0, "Loss"),
        Segment("17", 400959, 10004871, None, "LOH"),  # copy-neutral LOH over TP53
    ),
    5: (_whole_arm("7q", "Gain", 3.0),),  # no gene of the table on chr7
    6: (_whole_arm("13q", "Loss", 1.0),),  # the legend's "13p" is a typo: RB1 is on 13q14
    7: (_whole_arm("1q", "Gain", 3.0),),  # no gene of the table on chr1
}
_TWIN_COMPLEX = (1, 2, 3, 4)
_TWIN_SIMPLE = (5, 6, 7)
_TWIN_FLAT = (8, 9, 10, 11)
_TWIN_FAILED = (12, 13, 14)
_TWIN_MUTATIONS = {1: (("17", 7577545, "C"), 0.38), 9: (("17", 7577559, "A"), 0.06)}
_STUDY_YEARS = (2014, 2019)


def twin_cases(rng: np.random.Generator) -> list[MolecularCase]:
    """The 14 profiled cases of the paper: 4 complex, 3 simple, 4 flat, 3 not contributory.

    Gene level: RB1 deleted in 1, 2, 3, 4, 6; TP53 deleted or LOH in 1-4 and mutated in 1 (with
    LOH: biallelic) and 9; MYOCD amplified in 2 (x8) and 3 (x6); no fusion. The seed only moves
    the background anomalies of complex cases, the accessions and the sequencing depths.
    """
    ids = _sample_ids(rng, 14, _STUDY_YEARS)
    cases = []
    for case_no in range(1, 15):
        sample_id = ids[case_no - 1]
        if case_no in _TWIN_FAILED:
            cases.append(MolecularCase(case_no, sample_id, "not_contributory", None, (), (), ()))
            continue
        profile = "complex" if case_no in _TWIN_COMPLEX else "simple" if case_no in _TWIN_SIMPLE else "flat"
        layout = _Layout()
        segments = [layout.take(s) for s in _TWIN_EVENTS.get(case_no, ())]
        if profile == "complex":
            segments += [_background_segment(layout, rng) for _ in range(_randint(rng, 12, 25))]
        mutations = ()
        if case_no in _TWIN_MUTATIONS:
            (chrom, pos, alt), vaf = _TWIN_MUTATIONS[case_no]
            mutations = (_mutation(chrom, pos, alt, vaf, _depth(rng)),)
        cases.append(MolecularCase(case_no, sample_id, "ok", profile, _sorted(segments), mutations, ()))
    return cases


# --------------------------------------------------------------------------------------------
# Random cases for scale runs
# --------------------------------------------------------------------------------------------

# (genes, kind, probability in a complex profile, CN choices; None = LOH)
_GENE_EVENTS = (
    (("RB1",), "Loss", 0.45, (0.0, 1.0, 1.0)),
    (("TP53",), "Loss", 0.25, (1.0, 1.0, 1.33)),
    (("TP53",), "LOH", 0.2, (None,)),
    (("MYOCD",), "Gain", 0.2, (5.0, 6.0, 6.67, 8.0, 9.33, 12.0)),
    (("PTEN",), "Loss", 0.2, (0.0, 1.0)),
    (("CDKN2A", "CDKN2B"), "Loss", 0.15, (0.0, 1.0)),
    (("ATRX",), "Loss", 0.1, (1.0,)),
    (("MDM2",), "Gain", 0.05, (6.0, 10.0, 14.0)),
    (("CDK4",), "Gain", 0.05, (6.0, 10.0)),
)


def _gene_event(layout: _Layout, rng: np.random.Generator, genes, kind, cns) -> Segment:
    cn = _pick(rng, cns)
    # Homozygous deletions and amplifications are focal; hemizygous losses and LOH are broad.
    focal = kind == "Gain" or cn == 0.0
    flank = (2e4, 6e5) if focal else (5e5, 2e7)
    return _focal(layout, rng, genes, kind, cn, flank)


def _random_profile_segments(profile: str, rng: np.random.Generator) -> list[Segment]:
    layout = _Layout()
    if profile == "flat":
        return []
    if profile == "simple":
        roll = rng.uniform()
        if roll < 0.6:
            arm = _pick(rng, _BACKGROUND_ARMS)
            kind = _pick(rng, ("Gain", "Loss", "LOH"))
            cn = {"Gain": 3.0, "Loss": 1.0, "LOH": None}[kind]
            return [_whole_arm(arm, kind, cn)]
        if roll < 0.85:
            genes, kind, _, cns = _pick(rng, _GENE_EVENTS)
            return [_gene_event(layout, rng, genes, kind, cns)]
        return [_background_segment(layout, rng)]
    segments = []
    done: list[tuple[str, ...]] = []
    for genes, kind, probability, cns in _GENE_EVENTS:
        if rng.uniform() < probability and genes not in done:  # TP53: a loss or an LOH, not both
            segments.append(_gene_event(layout, rng, genes, kind, cns))
            done.append(genes)
    if rng.uniform() < 0.1:
        segments.append(_partial(layout, rng, "DMD", "Loss", 1.0))
    segments += [_background_segment(layout, rng) for _ in range(_randint(rng, 12, 25))]
    return segments


def random_cases(n: int, rng: np.random.Generator) -> list[MolecularCase]:
    """``n`` cases in the twin's proportions, with occasional mutations and fusions."""
    ids = _sample_ids(rng, n, (2012, 2025))
    # Profiles in the published proportions (4 complex, 3 simple, 4 flat, 3 failed out of 14).
    choices = ("complex", "simple", "flat", None)
    weights = np.array([4, 3, 4, 3], dtype=float) / 14
    cases = []
    for i in range(n):
        profile = choices[int(rng.choice(4, p=weights))]
        if profile is None:
            cases.append(MolecularCase(i + 1, ids[i], "not_contributory", None, (), (), ()))
            continue
        segments = _random_profile_segments(profile, rng)
        mutations = []
        if rng.uniform() < (0.25 if profile == "complex" else 0.1):
            chrom, pos, alt = _pick(rng, _RANDOM_SOMATIC)
            mutations.append(_mutation(chrom, pos, alt, round(float(rng.uniform(0.05, 0.6)), 2), _depth(rng)))
        if rng.uniform() < 0.03:
            chrom, pos, alt = _pick(rng, _RARE_SOMATIC)
            mutations.append(_mutation(chrom, pos, alt, round(float(rng.uniform(0.05, 0.4)), 2), _depth(rng)))
        fusions = (_pick(rng, tuple(_FUSION_BREAKPOINTS)),) if rng.uniform() < 0.04 else ()
        cases.append(
            MolecularCase(i + 1, ids[i], "ok", profile, _sorted(segments), tuple(mutations), fusions)
        )
    return cases


# --------------------------------------------------------------------------------------------
# Writing the delivery
# --------------------------------------------------------------------------------------------

MANIFEST_COLUMNS = ("case_no", "centre", "local_id", "sample_id", "status")
CHAS_COLUMNS = (
    "File", "CN State", "Type", "Chromosome", "Cytoband Start", "Size (kbp)", "Marker Count",
    "Gene Count", "Genes", "OMIM \u00ae Genes Count", "OMIM \u00ae Genes", "CytoRegions", "Call",
    "Segment Interpretation", "Curation By", "Materially Modified Segment",
    "Microarray Nomenclature", "Full Location",
)  # fmt: skip
ARCHER_COLUMNS = (
    "Genes", "Breakpoints", "Reads", "Unique Start Sites", "Percent of GSP2 reads", "Strong Evidence",
)  # fmt: skip
TVC_FORMAT = "GT:GQ:DP:FDP:RO:FRO:AO:FAO:AF:SAR:SAF:SRF:SRR:FSAR:FSAF:FSRF:FSRR"
_BOM = "\ufeff"


def _delivery_date(delivery_dir: Path) -> dt.date:
    try:
        return dt.date.fromisoformat(delivery_dir.name)
    except ValueError:
        raise ValueError(f"delivery folder must be named <YYYY-MM-DD>, got {delivery_dir.name!r}") from None


def _balanced(rng: np.random.Generator, n: int, share: float) -> list[bool]:
    """n flags, about ``share`` of them True but never all alike once n >= 2 (tests rely on a mix)."""
    k = round(n * share)
    if n >= 2:
        k = min(max(k, 1), n - 1)
    flags = [i < k for i in range(n)]
    return [flags[int(i)] for i in rng.permutation(n)]


def write_lab_delivery(
    delivery_dir: Path,
    cases: list[MolecularCase],
    links: dict[int, tuple[str, str]],
    rng: np.random.Generator,
) -> list[Path]:
    """Write manifest.csv, chas/, ngs/ and fusions/ under ``<out>/molecular/<YYYY-MM-DD>/``.

    ``links`` maps each case number to the centre and local id of its patient (the lab never sees
    names). A not-contributory case appears in the manifest only. Returns the files written.
    """
    delivery_dir = Path(delivery_dir)
    date = _delivery_date(delivery_dir)
    missing = [c.case_no for c in cases if c.case_no not in links]
    if missing:
        raise ValueError(f"no (centre, local_id) link for case(s) {missing}")
    samples = [c.sample_id for c in cases]
    if len(set(samples)) != len(samples):  # one file per accession: a duplicate would overwrite
        raise ValueError("sample_id must be unique within a delivery")
    for sub in ("chas", "ngs", "fusions"):
        (delivery_dir / sub).mkdir(parents=True, exist_ok=True)

    written = [_write_manifest(delivery_dir / "manifest.csv", cases, links)]
    done = [c for c in cases if c.status == "ok"]
    # File-level habits of the lab's workstations, spread so that every delivery shows both
    # kinds; spellings of segment rows are spread over the files that have rows to show them.
    bom = _balanced(rng, len(done), 0.5)
    with_rows = [c.case_no for c in done if c.segments]
    chr_prefix = dict(zip(with_rows, _balanced(rng, len(with_rows), 0.5), strict=True))
    separators = dict(zip(with_rows, _balanced(rng, len(with_rows), 0.3), strict=True))
    for i, case in enumerate(done):
        style = _ChasStyle(
            bom=bom[i],
            preamble=bool(rng.uniform() < 0.3),
            chr_prefix=chr_prefix.get(case.case_no, False),
            separators=separators.get(case.case_no, False),
            cn_decimal=bool(rng.uniform() < 0.3),
            cytoregions=_pick(rng, ("Cytoregions Not Set", "CytoRegions Not Set")),
            by_position=bool(rng.uniform() < 0.5),
        )
        path = delivery_dir / "chas" / f"{case.sample_id}.segments.txt"
        path.write_bytes(_chas_text(case, style, date, rng).encode("utf-8"))
        written.append(path)
        path = delivery_dir / "ngs" / f"{case.sample_id}.vcf"
        path.write_bytes(_vcf_text(case, date, rng).encode("utf-8"))
        written.append(path)
        path = delivery_dir / "fusions" / f"{case.sample_id}.fusions.tsv"
        path.write_bytes(_archer_text(case, rng).encode("utf-8"))
        written.append(path)
    return written


def _write_manifest(path: Path, cases: list[MolecularCase], links: dict[int, tuple[str, str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for case in cases:
        centre, local_id = links[case.case_no]
        writer.writerow((case.case_no, centre, local_id, case.sample_id, case.status))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return path


# ---- ChAS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChasStyle:
    bom: bool
    preamble: bool  # "#" lines before the header (oncoscanR skips them)
    chr_prefix: bool  # Chromosome "chr7" instead of "7"
    separators: bool  # Full Location "chr7:129,199,300-129,813,700"
    cn_decimal: bool  # integral CN states written "3.0" instead of "3"
    cytoregions: str  # both spellings occur in real exports
    by_position: bool  # rows in genome order, else in the order the user left the table


def _cn_text(cn: float | None, decimal: bool) -> str:
    if cn is None:
        return ""
    if cn == int(cn) and not decimal:
        return str(int(cn))
    return repr(round(cn, 2))


def _iscn_copies(cn: float | None) -> str:
    if cn is None:
        return " hmz"
    if cn == int(cn):
        return f"x{int(cn)}"
    return f"x{math.floor(cn)}-{math.ceil(cn)}"  # fractional states: "x2-3", as ChAS writes them


def _segment_genes(seg: Segment, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """(Genes, OMIM genes) of a segment: pinned genes it overlaps plus unannotated fillers.

    Fillers are LOC/LINC names (no OMIM entry), so the column looks like the real one without
    ever naming a gene of the pinned table by accident.
    """
    placed = [
        (max(g.start, seg.start), g.gene) for g in _genes()
        if g.chrom == seg.chrom and g.start <= seg.end and g.end >= seg.start
    ]  # fmt: skip
    count = min(int(rng.poisson((seg.end - seg.start) / 1e6 * 4)), 250)
    is_loc = rng.uniform(size=count) < 0.6
    loc_ids = rng.integers(100126000, 105380000, size=count)
    linc_ids = rng.integers(1, 2701, size=count)
    positions = rng.integers(seg.start, seg.end + 1, size=count)
    for i in range(count):
        name = f"LOC{loc_ids[i]}" if is_loc[i] else f"LINC{linc_ids[i]:05d}"
        placed.append((int(positions[i]), name))
    names = [name for _, name in sorted(placed)]
    omim = [f"{name} ({_OMIM[name]})" for name in names if name in _OMIM]
    return names, omim


def _chas_row(seg: Segment, sample_id: str, style: _ChasStyle, rng: np.random.Generator) -> list[str]:
    band_start, band_end = _band_at(seg.chrom, seg.start), _band_at(seg.chrom, seg.end)
    bands = band_start if band_start == band_end else band_start + band_end
    size_kb = (seg.end - seg.start) / 1000  # ChAS's Size is end - start
    # OncoScan has ~220k markers, denser in cancer genes: about one per 10-15 kb.
    markers = max(20, int(size_kb / rng.uniform(9.0, 15.0)))
    genes, omim = _segment_genes(seg, rng)
    if style.separators:
        location = f"chr{seg.chrom}:{seg.start:,}-{seg.end:,}"
    else:
        location = f"chr{seg.chrom}:{seg.start}-{seg.end}"
    return [
        f"{sample_id}.OSCHP",
        _cn_text(seg.cn_state, style.cn_decimal),
        seg.kind,
        f"chr{seg.chrom}" if style.chr_prefix else seg.chrom,
        band_start,
        repr(round(size_kb, 3)),
        str(markers),
        str(len(genes)),
        ", ".join(genes),
        str(len(omim)),
        ", ".join(omim),
        style.cytoregions,
        "",
        "",
        "",
        "false",
        f"arr[hg19] {seg.chrom}{bands}({seg.start:,}-{seg.end:,}){_iscn_copies(seg.cn_state)}",
        location,
    ]


def _chas_text(case: MolecularCase, style: _ChasStyle, date: dt.date, rng: np.random.Generator) -> str:
    lines = []
    if style.preamble:
        lines += [
            "#Chromosome Analysis Suite 3.3.0.139 (r10838)",
            "#Annotation: OncoScan.na33.r2 (hg19)",
            f"#Exported: {date.isoformat()}",
        ]
    lines.append("\t".join(CHAS_COLUMNS))
    segments = list(case.segments)
    if not style.by_position:
        segments = [segments[int(i)] for i in rng.permutation(len(segments))]
    lines += ["\t".join(_chas_row(s, case.sample_id, style, rng)) for s in segments]
    return (_BOM if style.bom else "") + "\n".join(lines) + "\n"


# ---- TVC / Ion Reporter VCF -----------------------------------------------------------------

_VCF_INFO = (
    ("AF", "A", "Float", "Allele frequency based on Flow Evaluator observation counts"),
    ("AO", "A", "Integer", "Alternate allele observations"),
    ("DP", "1", "Integer", "Total read depth at the locus"),
    ("FAO", "A", "Integer", "Flow Evaluator Alternate allele observations"),
    ("FDP", "1", "Integer", "Flow Evaluator read depth at the locus"),
    ("FR", ".", "String", "Reason why the variant was filtered."),
    ("FRO", "1", "Integer", "Flow Evaluator Reference allele observations"),
    ("FSAF", "A", "Integer", "Flow Evaluator Alternate allele observations on the forward strand"),
    ("FSAR", "A", "Integer", "Flow Evaluator Alternate allele observations on the reverse strand"),
    ("FSRF", "1", "Integer", "Flow Evaluator Reference observations on the forward strand"),
    ("FSRR", "1", "Integer", "Flow Evaluator Reference observations on the reverse strand"),
    ("FUNC", ".", "String", "Functional Annotations"),
    ("GMAF", "A", "Float", "Global Minor Allele Frequency"),
    ("HRUN", "A", "Integer", "Run length: the number of consecutive repeats of the alternate allele in the reference genome"),
    ("HS", "0", "Flag", "Indicate it is at a hot spot"),
    ("LEN", "A", "Integer", "allele length"),
    ("OALT", ".", "String", "List of original variant bases"),
    ("OID", ".", "String", "List of original Hotspot IDs"),
    ("OMAPALT", ".", "String", "Maps OID,OPOS,OREF,OALT entries to specific ALT alleles"),
    ("OPOS", ".", "Integer", "List of original allele positions"),
    ("OREF", ".", "String", "List of original reference bases"),
    ("QD", "1", "Float", "QualityByDepth as 4*QUAL/FDP (analogous to GATK)"),
    ("RO", "1", "Integer", "Reference allele observations"),
    ("SAF", "A", "Integer", "Alternate allele observations on the forward strand"),
    ("SAR", "A", "Integer", "Alternate allele observations on the reverse strand"),
    ("SRF", "1", "Integer", "Number of reference observations on the forward strand"),
    ("SRR", "1", "Integer", "Number of reference observations on the reverse strand"),
    ("TYPE", "A", "String", "The type of allele, either snp, mnp, ins, del, or complex."),
)  # fmt: skip
_VCF_FORMAT = (
    ("GT", "1", "String", "Genotype"),
    ("GQ", "1", "Integer", "Genotype Quality, the Phred-scaled marginal (or unconditional) probability of the called genotype"),
    ("DP", "1", "Integer", "Read Depth"),
    ("FDP", "1", "Integer", "Flow Evaluator Read Depth"),
    ("RO", "1", "Integer", "Reference allele observation count"),
    ("FRO", "1", "Integer", "Flow Evaluator Reference allele observation count"),
    ("AO", "A", "Integer", "Alternate allele observation count"),
    ("FAO", "A", "Integer", "Flow Evaluator Alternate allele observation count"),
    ("AF", "A", "Float", "Allele frequency based on Flow Evaluator observation counts"),
    ("SAR", "A", "Integer", "Alternate allele observations on the reverse strand"),
    ("SAF", "A", "Integer", "Alternate allele observations on the forward strand"),
    ("SRF", "1", "Integer", "Number of reference observations on the forward strand"),
    ("SRR", "1", "Integer", "Number of reference observations on the reverse strand"),
    ("FSAR", "A", "Integer", "Flow Evaluator Alternate allele observations on the reverse strand"),
    ("FSAF", "A", "Integer", "Flow Evaluator Alternate allele observations on the forward strand"),
    ("FSRF", "1", "Integer", "Flow Evaluator reference observations on the forward strand"),
    ("FSRR", "1", "Integer", "Flow Evaluator reference observations on the reverse strand"),
)  # fmt: skip


def _g(x: float) -> str:
    """TVC prints floats with 6 significant digits (0.684466, 0.38, 0)."""
    return f"{x:.6g}"


def _func(alleles: list[_Allele]) -> str:
    """Ion Reporter's FUNC: a Python-literal list, one dict per ALT allele.

    origPos/origRef/origAlt tie each entry to its allele, which is what a reader needs to split a
    multi-allelic record.
    """
    entries = []
    for a in alleles:
        fields = {
            "gene": a.gene, "transcript": a.transcript, "exon": a.exon, "coding": a.hgvs_c,
            "protein": a.hgvs_p, "function": a.function, "location": "exonic",
            "origPos": str(a.pos), "origRef": a.ref, "origAlt": a.alt,
        }  # fmt: skip
        entries.append("{" + ",".join(f"'{k}':'{v}'" for k, v in fields.items()) + "}")
    return "[" + ",".join(entries) + "]"


@dataclass(frozen=True)
class _Record:
    chrom: str
    pos: int
    line: str


def _split(rng: np.random.Generator, n: int) -> tuple[int, int]:
    forward = int(rng.binomial(n, rng.uniform(0.4, 0.6))) if n > 0 else 0
    return forward, n - forward


def _call(
    rng: np.random.Generator,
    alleles: list[_Allele],
    fao: list[int],
    fdp: int,
    gt: str,
    filter_: str = "PASS",
    fr: str = ".",
    hotspot: bool = False,
) -> _Record:
    """One TVC record with internally consistent raw and flow-evaluator counts.

    AF = FAO / FDP exactly (per allele). Raw counts (DP, RO, AO) wander a little from the flow
    counts, as they do in real files.
    """
    first = alleles[0]
    fro = fdp - sum(fao)
    dp = fdp + _randint(rng, 0, max(1, fdp // 25))
    ao = [f + _randint(rng, 0, 2) if f > 0 else _randint(rng, 0, 1) for f in fao]
    ro = max(dp - sum(ao), 0)
    srf, srr = _split(rng, ro)
    fsrf, fsrr = _split(rng, fro)
    saf, sar, fsaf, fsar = [], [], [], []
    for raw, flow in zip(ao, fao, strict=True):
        forward, reverse = _split(rng, raw)
        saf.append(forward)
        sar.append(reverse)
        forward, reverse = _split(rng, flow)
        fsaf.append(forward)
        fsar.append(reverse)
    af = [_g(f / fdp) for f in fao]
    alt_reads = sum(fao)
    qual = alt_reads * rng.uniform(6.0, 9.0) if gt not in ("0/0", "./.") else rng.uniform(5.0, 60.0)
    gq = min(int(qual), 99999)

    def join(values) -> str:
        return ",".join(str(v) for v in values)

    info: list[str] = [
        f"AF={join(af)}", f"AO={join(ao)}", f"DP={dp}", f"FAO={join(fao)}", f"FDP={fdp}", f"FR={fr}",
        f"FRO={fro}", f"FSAF={join(fsaf)}", f"FSAR={join(fsar)}", f"FSRF={fsrf}", f"FSRR={fsrr}",
        f"HRUN={join(_randint(rng, 1, 3) for _ in alleles)}", f"LEN={join(1 for _ in alleles)}",
    ]  # fmt: skip
    if hotspot:
        info += [
            f"OALT={join(a.alt for a in alleles)}", f"OID={join(a.ident for a in alleles)}",
            f"OMAPALT={join(a.alt for a in alleles)}", f"OPOS={join(a.pos for a in alleles)}",
            f"OREF={join(a.ref for a in alleles)}",
        ]  # fmt: skip
    info += [
        f"QD={_g(4 * qual / fdp)}", f"RO={ro}", f"SAF={join(saf)}", f"SAR={join(sar)}", f"SRF={srf}",
        f"SRR={srr}", f"TYPE={join('snp' for _ in alleles)}",
    ]  # fmt: skip
    if hotspot:
        info.append("HS")
    info.append(f"FUNC={_func(alleles)}")
    if any(a.gmaf is not None for a in alleles):
        info.append("GMAF=" + ",".join("." if a.gmaf is None else _g(a.gmaf) for a in alleles))
    sample = [gt, str(gq), str(dp), str(fdp), str(ro), str(fro), join(ao), join(fao), join(af),
              join(sar), join(saf), str(srf), str(srr), join(fsar), join(fsaf), str(fsrf), str(fsrr)]  # fmt: skip
    ident = ";".join(dict.fromkeys(a.ident for a in alleles if a.ident != ".")) or "."
    line = "\t".join(
        [f"chr{first.chrom}", str(first.pos), ident, first.ref, ",".join(a.alt for a in alleles),
         _g(qual), filter_, ";".join(info), TVC_FORMAT, ":".join(sample)]
    )  # fmt: skip
    return _Record(first.chrom, first.pos, line)


def _in_imbalance(case: MolecularCase, chrom: str, pos: int) -> bool:
    # Every segment ChAS reports is a departure from two balanced copies.
    return any(s.chrom == chrom and s.start <= pos <= s.end for s in case.segments)


def _germline_fao(
    rng: np.random.Generator, case: MolecularCase, allele: _Allele, fdp: int
) -> tuple[int, str]:
    """Flow alt count and genotype of a germline polymorphism in tumour DNA.

    Heterozygous sites sit near 50 %, or drift away from it where the tumour has lost or
    gained the region (allelic imbalance), which is what a tumour-only panel shows.
    """
    if rng.uniform() < 0.2:
        return fdp - _randint(rng, 0, max(1, fdp // 200)), "1/1"
    if _in_imbalance(case, allele.chrom, allele.pos):
        af = rng.uniform(0.7, 0.92) if rng.uniform() < 0.5 else rng.uniform(0.08, 0.3)
    else:
        af = rng.normal(0.5, 0.035)
    return int(round(min(max(af, 0.05), 0.95) * fdp)), "0/1"


def _nocall_reason(rng: np.random.Generator) -> str:
    kind = _randint(rng, 0, 2)
    if kind == 0:
        return f".,PREDICTIONSHIFTx{_g(rng.uniform(0.25, 0.6))}"
    if kind == 1:
        return f"STDBIAS{rng.uniform(0.951, 0.999):.4f}>0.95"
    return "QualityScore<12"


def _vcf_records(case: MolecularCase, rng: np.random.Generator) -> list[_Record]:
    records = []
    used = {(m.chrom, m.pos) for m in case.mutations}
    for m in case.mutations:
        allele = _allele(m.chrom, m.pos, m.alt) or _Allele(
            m.gene, m.chrom, m.pos, m.ref, m.alt, m.transcript, "", m.hgvs_c, m.hgvs_p, m.function
        )
        fao = int(round(m.vaf * m.depth))
        hotspot = allele.ident.startswith("COSM")
        records.append(_call(rng, [allele], [fao], m.depth, "0/1", hotspot=hotspot))

    # 2-4 common polymorphisms; one of them may carry a second, artefactual allele.
    polys = [_POLYMORPHISM_SITES[int(i)] for i in rng.permutation(len(_POLYMORPHISM_SITES))]
    polys = [s for s in polys if s not in used][: _randint(rng, 2, 4)]
    noisy_poly = rng.uniform() < 0.5
    for k, (chrom, pos) in enumerate(polys):
        used.add((chrom, pos))
        germline, noise = _site(chrom, pos)
        fdp = _randint(rng, 250, 2500)
        fao, gt = _germline_fao(rng, case, germline, fdp)
        if noisy_poly and k == 0:
            noise_fao = _randint(rng, 1, max(2, fdp // 300))
            fao = min(fao, fdp - noise_fao)
            records.append(_call(rng, [germline, noise], [fao, noise_fao], fdp, gt))
        else:
            records.append(_call(rng, [germline], [fao], fdp, gt))

    hotspots = [s for s in _HOTSPOT_SITES if s not in used]
    hotspots = [hotspots[int(i)] for i in rng.permutation(len(hotspots))]
    if not noisy_poly:  # the multi-allelic record is then low-level noise at a hotspot
        chrom, pos = hotspots.pop()
        pair = list(_site(chrom, pos)[:2])
        fdp = _randint(rng, 800, 3000)
        noise_fao = [_randint(rng, 1, 6), _randint(rng, 0, 3)]
        records.append(_call(rng, pair, noise_fao, fdp, "0/0", hotspot=True))
    for _ in range(_randint(rng, 1, 2)):  # filtered low-level candidates
        chrom, pos = hotspots.pop()
        allele = _site(chrom, pos)[0]
        fdp = _randint(rng, 300, 2000)
        fao = _randint(rng, 3, max(4, fdp // 40))
        records.append(_call(rng, [allele], [fao], fdp, "./.", "NOCALL", _nocall_reason(rng), hotspot=True))
    for _ in range(_randint(rng, 1, 2)):  # hotspot positions are emitted even when reference
        chrom, pos = hotspots.pop()
        allele = _site(chrom, pos)[0]
        records.append(_call(rng, [allele], [0], _randint(rng, 500, 3000), "0/0", hotspot=True))
    return sorted(records, key=lambda r: (_CHROM_RANK[r.chrom], r.pos))


def _vcf_text(case: MolecularCase, date: dt.date, rng: np.random.Generator) -> str:
    records = _vcf_records(case, rng)
    # The export ran in the early hours of the delivery date (only the date means anything).
    hour, minute, second = _randint(rng, 0, 5), _randint(rng, 0, 59), _randint(rng, 0, 59)
    utc_time = f"{date.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}"
    header = [
        "##fileformat=VCFv4.1",
        f"##fileDate={date:%Y%m%d}",
        f"##fileUTCtime={utc_time}",
        '##source="tvc 5.0-9 (e1d5f9d) - Torrent Variant Caller"',
        "##reference=/results/referenceLibrary/tmap-f3/hg19/hg19.fasta",
        "##phasing=none",
        "##IonReporterExportVersion=5.0",
        "##IonReporterSoftwareVersion=5.0.3.0",
        "##IonReporterWorkflowName=AmpliSeq CHPv2 single sample",
        f"##IonReporterAnalysisName={case.sample_id}_CHPv2_{date:%Y%m%d}",
    ]
    chroms = sorted({r.chrom for r in records}, key=_CHROM_RANK.__getitem__)
    header += [f"##contig=<ID=chr{c},length={_HG19_LENGTH[c]},assembly=hg19>" for c in chroms]
    header += [f'##INFO=<ID={i},Number={n},Type={t},Description="{d}">' for i, n, t, d in _VCF_INFO]
    header.append(
        '##FILTER=<ID=NOCALL,Description="Generic filter. Filtering details stored in FR info tag.">'
    )
    header += [f'##FORMAT=<ID={i},Number={n},Type={t},Description="{d}">' for i, n, t, d in _VCF_FORMAT]
    columns = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", case.sample_id]
    header.append("\t".join(columns))
    return "\n".join(header + [r.line for r in records]) + "\n"


# ---- Archer ---------------------------------------------------------------------------------


def _archer_text(case: MolecularCase, rng: np.random.Generator) -> str:
    """Archer Analysis 6.0 fusion table; header only = tested, no fusion."""
    lines = ["\t".join(ARCHER_COLUMNS)]
    for fusion in case.fusions:
        reads = _randint(rng, 40, 4000)
        uss = max(3, int(reads * rng.uniform(0.02, 0.12)))
        percent = rng.uniform(5.0, 85.0)
        strong = "True" if uss >= 5 and percent >= 10 else "False"
        breakpoints = _FUSION_BREAKPOINTS.get(fusion, "")
        lines.append("\t".join([fusion, breakpoints, str(reads), str(uss), f"{percent:.2f}", strong]))
    return "\n".join(lines) + "\n"
