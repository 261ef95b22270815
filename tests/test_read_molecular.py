"""The laboratory reader recovers the lab's meaning from the files and survives hostile files.

The twin delivery is written by the project's writer (``write_molecular``, what ``generate`` does
for the laboratory) and its expectations come from two independent places: the generator's own
cases (``twin_cases`` with the same seed) and the files read back with the csv module and vcfpy.
"""

from __future__ import annotations

import ast
import csv
import datetime as dt
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import vcfpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clms_etl.readers import molecular
from clms_etl.keys import pseudonym
from clms_etl.readers.base import ImportFailure, ReadContext
from clms_etl.synth.generate import centre_rng, write_molecular
from clms_etl.synth.molecular import CHAS_COLUMNS, random_cases, twin_cases, write_lab_delivery
from clms_etl.synth.twin import build_twin
from clms_etl.vocabulary import LABORATORY

DATE = dt.date(2026, 11, 23)
SEED = 0
KEY = b"molecular-reader-test-key-000000"
VAF_FLOOR = 0.02  # the test's own statement of the noise floor (formats_and_rules.md §3)

# --- helpers ---------------------------------------------------------------------------------


def read(delivery: Path):
    return molecular.read(ReadContext(LABORATORY, delivery, DATE, KEY))


def errors(result) -> pl.DataFrame:
    return result.queries_frame().filter(pl.col("severity") == "error")


def rules(result, file: str | None = None) -> set[str]:
    q = result.queries_frame()
    if file is not None:
        q = q.filter(pl.col("file") == file)
    return set(q["rule"].to_list())


def manifest(delivery: Path) -> list[dict[str, str]]:
    with open(delivery / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def chas_rows(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text(encoding="utf-8-sig").splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def sample_of(result, sample_id: str) -> dict:
    (row,) = result.frames["molecular_sample"].filter(pl.col("sample_id") == sample_id).to_dicts()
    return row


def ok_samples(delivery: Path) -> list[str]:
    return [m["sample_id"] for m in manifest(delivery) if m["status"] == "ok"]


def chas_text(rows: list[list[str]], *, header=CHAS_COLUMNS, bom=False, preamble=(), end="\n") -> bytes:
    lines = [*preamble, "\t".join(header), *("\t".join(r) for r in rows)]
    return (("\ufeff" if bom else "") + end.join(lines) + end).encode("utf-8")


def chas_row(cn="1", kind="Loss", chrom="13", location="chr13:41203774-70512336",
             iscn="arr[hg19] 13q14.11q22.1(41,203,774-70,512,336)x1", file="") -> list[str]:
    """One ChAS row (``File`` left empty unless given: the reader then has nothing to compare)."""
    values = {"File": file, "CN State": cn, "Type": kind, "Chromosome": chrom,
              "Microarray Nomenclature": iscn, "Full Location": location}
    return [values.get(c, "") for c in CHAS_COLUMNS]


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twin_delivery(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("twin")
    write_molecular(out, SEED, DATE, build_twin(SEED).extras["molecular_links"])
    return out / LABORATORY / DATE.isoformat()


@pytest.fixture(scope="module")
def twin_truth():
    """The cases the writer drew (same seed and generator as ``write_molecular``)."""
    return {c.sample_id: c for c in twin_cases(centre_rng(SEED, LABORATORY))}


@pytest.fixture(scope="module")
def twin(twin_delivery):
    return read(twin_delivery)


@pytest.fixture
def lab(tmp_path, twin_delivery) -> Path:
    """A private copy of the twin delivery, to damage."""
    target = tmp_path / LABORATORY / DATE.isoformat()
    shutil.copytree(twin_delivery, target)
    return target


# --- the twin --------------------------------------------------------------------------------


def test_twin_gives_14_samples_11_tested_and_3_not_contributory(twin, twin_delivery):
    samples = twin.frames["molecular_sample"].sort("case_no")
    assert samples.height == 14
    assert samples["case_no"].to_list() == list(range(1, 15))
    assert samples["status"].value_counts().sort("status").rows() == [("not_contributory", 3), ("ok", 11)]
    for row in samples.to_dicts():
        expected = "tested" if row["status"] == "ok" else "failed"
        assert (row["cn_assay"], row["ngs_assay"], row["fusion_assay"]) == (expected,) * 3


def test_patient_id_is_the_pseudonym_of_the_manifest_centre_and_local_id(twin, twin_delivery):
    by_sample = {r["sample_id"]: r["patient_id"] for r in twin.frames["molecular_sample"].to_dicts()}
    for m in manifest(twin_delivery):
        assert by_sample[m["sample_id"]] == pseudonym(KEY, m["centre"], m["local_id"])


def test_clean_twin_raises_no_query_at_all(twin):
    assert errors(twin).height == 0
    assert twin.queries == []


def test_segment_counts_per_case_equal_the_chas_rows(twin, twin_delivery):
    counts = dict(twin.frames["cn_segment"].group_by("sample_id").len().rows())
    for sample in ok_samples(twin_delivery):
        assert counts.get(sample, 0) == len(chas_rows(twin_delivery / "chas" / f"{sample}.segments.txt"))


def test_segments_are_the_generators_segments_field_by_field(twin, twin_truth):
    got = {
        (r["sample_id"], r["chrom"], r["start_bp"], r["end_bp"], r["cn_state"], r["segment_type"])
        for r in twin.frames["cn_segment"].to_dicts()
    }
    want = {
        (sample, s.chrom, s.start, s.end, s.cn_state, s.kind)
        for sample, case in twin_truth.items() for s in case.segments
    }
    assert got == want
    assert twin.frames["cn_segment"].height == len(want)


def test_the_two_tp53_mutations_are_reportable_with_hgvs_and_vaf(twin, twin_truth):
    reportable = twin.frames["variant"].filter(pl.col("reportable"))
    case_of = {r["sample_id"]: r["case_no"] for r in twin.frames["molecular_sample"].to_dicts()}
    got = {
        (case_of[r["sample_id"]], r["gene"], r["transcript"], r["hgvs_c"], r["hgvs_p"], r["function"], r["vaf"],
         r["chrom"], r["pos"], r["ref"], r["alt"], r["depth"], r["exclusion_reason"])
        for r in reportable.to_dicts()
    }
    want = {
        (c.case_no, m.gene, m.transcript, m.hgvs_c, m.hgvs_p, m.function, m.vaf, m.chrom, m.pos, m.ref, m.alt,
         m.depth, None)
        for c in twin_truth.values() for m in c.mutations
    }
    assert got == want
    assert {(g[0], g[3], g[6]) for g in got} == {(1, "c.736A>G", 0.38), (9, "c.722C>T", 0.06)}


def _expected_reason(rec: vcfpy.Record, i: int) -> str | None:
    """The exclusion rule, restated from formats_and_rules.md §3 and the writer's docstring."""
    gt = rec.calls[0].data["GT"]
    af = rec.INFO["AF"][i]
    gmaf = rec.INFO.get("GMAF", [None] * len(rec.ALT))[i]
    if rec.FILTER != ["PASS"]:
        return "filtered"
    if "." in gt:
        return "no_call"
    if set(re.split("[/|]", gt)) == {"0"} or af == 0:
        return "reference_call"
    if gmaf is not None and gmaf >= 0.01:
        return "polymorphism"
    if af < VAF_FLOOR:
        return "low_vaf"
    return None


def test_every_vcf_allele_is_kept_with_its_exclusion_reason(twin, twin_delivery):
    variants = twin.frames["variant"]
    seen_reasons = set()
    for sample in ok_samples(twin_delivery):
        path = twin_delivery / "ngs" / f"{sample}.vcf"
        rows = variants.filter(pl.col("sample_id") == sample).sort("source_row", "row_id")
        expected = []
        for rec in vcfpy.Reader.from_path(path):
            func = ast.literal_eval(",".join(rec.INFO["FUNC"]))
            for i, alt in enumerate(rec.ALT):
                (annotation,) = [f for f in func if f["origAlt"] == alt.value]
                reason = _expected_reason(rec, i)
                expected.append((rec.CHROM.removeprefix("chr"), rec.POS, alt.value, rec.INFO["AF"][i],
                                 annotation["coding"], reason, reason is None, rec.FILTER[0]))
        got = [(r["chrom"], r["pos"], r["alt"], r["vaf"], r["hgvs_c"], r["exclusion_reason"], r["reportable"],
                r["filter"].split(" ")[0]) for r in rows.to_dicts()]
        assert sorted(got) == sorted(expected)
        seen_reasons |= {e[5] for e in expected}
    # The twin shows every kind of non-somatic record the panel writes.
    assert seen_reasons == {None, "filtered", "reference_call", "polymorphism", "low_vaf"}


def test_nocall_rows_keep_the_filter_reason(twin):
    nocalls = twin.frames["variant"].filter(pl.col("exclusion_reason") == "filtered")
    assert nocalls.height > 0
    assert all(re.fullmatch(r"NOCALL \(FR=.+\)", f) for f in nocalls["filter"].to_list())
    assert (nocalls["genotype"] == "./.").all()


def test_multiallelic_noise_is_split_and_excluded(twin):
    variants = twin.frames["variant"]
    multi = variants.filter(pl.col("row_id").str.ends_with(":2"))
    assert multi.height > 0  # one multi-allelic record per VCF
    assert set(multi["exclusion_reason"].to_list()) <= {"low_vaf", "reference_call"}
    assert (multi["vaf"] <= 0.004).all()
    firsts = variants.join(multi.select("source_file", "source_row"), on=["source_file", "source_row"])
    assert firsts.height == 2 * multi.height
    assert firsts.group_by("source_file", "source_row").agg(pl.col("depth").n_unique())["depth"].max() == 1


def test_every_twin_fusion_assay_is_tested_with_no_fusion(twin):
    samples = twin.frames["molecular_sample"]
    assert samples.filter(pl.col("fusion_assay") == "tested").height == 11
    assert twin.frames["fusion"].height == 0


def test_source_rows_account_for_every_file(twin, twin_delivery):
    expected = {"manifest.csv": len(manifest(twin_delivery))}
    for sample in ok_samples(twin_delivery):
        expected[f"chas/{sample}.segments.txt"] = len(chas_rows(twin_delivery / "chas" / f"{sample}.segments.txt"))
        expected[f"ngs/{sample}.vcf"] = len(list(vcfpy.Reader.from_path(twin_delivery / "ngs" / f"{sample}.vcf")))
        expected[f"fusions/{sample}.fusions.tsv"] = 0
    assert twin.source_rows == expected
    assert len(twin.files) == 1 + 3 * 11


def test_row_ids_are_unique_and_point_at_their_source(twin):
    for name, frame in twin.frames.items():
        assert frame["row_id"].n_unique() == frame.height, name
        for r in frame.to_dicts():
            assert r["row_id"].startswith(f"{name}:{r['source_file']}:{r['source_row']}")


def test_no_identifier_reaches_the_frames_or_the_queries(lab):
    # Damage the manifest so that queries are raised about identifier cells too.
    rows = manifest(lab)
    rows[1]["case_no"] = "two"
    rows.append(dict(rows[0]))  # a duplicated case: queries on rows carrying a local id
    with open(lab / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = read(lab)
    assert errors(result).height > 0
    local_ids = {m["local_id"] for m in rows}
    texts = [str(v) for frame in result.frames.values() for col in frame.columns for v in frame[col].to_list()]
    texts += [str(v) for row in result.queries_frame().rows() for v in row]
    for local_id in local_ids:
        assert not any(local_id in t for t in texts), local_id


# --- ChAS spellings --------------------------------------------------------------------------


def test_twin_chas_files_mix_bom_chr_prefix_separators_and_preambles(twin_delivery):
    raws = [p.read_bytes() for p in sorted((twin_delivery / "chas").glob("*.txt"))]
    texts = [r.decode("utf-8-sig") for r in raws]
    assert any(r.startswith(b"\xef\xbb\xbf") for r in raws) and not all(r.startswith(b"\xef\xbb\xbf") for r in raws)
    assert any("\tchr" in t for t in texts) and any(re.search(r"chr\d+:\d{1,3},\d{3}", t) for t in texts)
    assert any(t.startswith("#") for t in texts)


@pytest.mark.parametrize(
    "spelling",
    [
        dict(),
        dict(bom=True),
        dict(preamble=("#Chromosome Analysis Suite 3.3.0.139", "#Annotation: OncoScan.na33.r2 (hg19)")),
        dict(bom=True, preamble=("#ChAS",)),
        dict(end="\r\n"),
        dict(chrom="chr13"),
        dict(location="chr13:41,203,774-70,512,336"),
        dict(location="chr13:41 203 774-70 512 336"),
        dict(header_iscn="Microarray Nomenclature (ISCN 2016)"),
        dict(cn="1.0"),
    ],
)
def test_every_chas_spelling_is_read(lab, spelling):
    sample = ok_samples(lab)[0]
    header = list(CHAS_COLUMNS)
    if "header_iscn" in spelling:
        header[header.index("Microarray Nomenclature")] = spelling.pop("header_iscn")
    file_options = {k: spelling.pop(k) for k in ("bom", "preamble", "end") if k in spelling}
    rows = [chas_row(file=f"{sample}.OSCHP", **spelling),
            chas_row(cn="", kind="LOH", chrom=spelling.get("chrom", "17"), location="chr17:400959-11187310",
                     iscn="arr[hg19] 17p13.3p13.1(400,959-11,187,310) hmz", file=f"{sample}.OSCHP"),
            chas_row(cn="2.67", kind="Gain", chrom="7", location="chr7:61545024-159118443", file=f"{sample}.OSCHP")]
    if "chrom" in spelling:
        rows[1][CHAS_COLUMNS.index("Chromosome")] = "chr17"
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(chas_text(rows, header=header, **file_options))
    result = read(lab)
    assert result.queries == []
    got = result.frames["cn_segment"].filter(pl.col("sample_id") == sample).sort("source_row")
    assert got.select("chrom", "start_bp", "end_bp", "cn_state", "segment_type").rows() == [
        ("13", 41203774, 70512336, 1.0, "Loss"),
        ("17", 400959, 11187310, None, "LOH"),
        ("7", 61545024, 159118443, 2.67, "Gain"),
    ]
    first_data_line = 2 + len(file_options.get("preamble", ()))
    assert got["source_row"].to_list() == [first_data_line, first_data_line + 1, first_data_line + 2]


def test_header_only_chas_is_a_flat_profile(lab):
    sample = ok_samples(lab)[0]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(chas_text([], bom=True))
    result = read(lab)
    assert sample_of(result, sample)["cn_assay"] == "tested"
    assert result.frames["cn_segment"].filter(pl.col("sample_id") == sample).height == 0
    assert errors(result).height == 0


# --- hostile inputs: sample files --------------------------------------------------------------


def _failed(result, sample: str, assay: str, label: str, rule: str) -> None:
    assert sample_of(result, sample)[assay] == "failed"
    q = errors(result).filter((pl.col("file") == label) & (pl.col("rule") == rule))
    assert q.height == 1, result.queries_frame()
    assert label in q["message"][0]


def test_empty_chas_file_fails_the_cn_assay_with_a_query(lab):
    sample = ok_samples(lab)[0]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(b"")
    result = read(lab)
    _failed(result, sample, "cn_assay", f"chas/{sample}.segments.txt", "empty_file")
    assert sample_of(result, sample)["ngs_assay"] == "tested"  # the other assays are still read


def test_chas_without_a_required_column_names_file_and_column(lab):
    sample = ok_samples(lab)[0]
    header = [c for c in CHAS_COLUMNS if c != "Full Location"]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(chas_text([], header=header))
    result = read(lab)
    label = f"chas/{sample}.segments.txt"
    _failed(result, sample, "cn_assay", label, "missing_column")
    assert errors(result).filter(pl.col("file") == label)["field"][0] == "Full Location"


def test_chas_with_a_duplicated_required_column_fails_that_file(lab):
    sample = ok_samples(lab)[0]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(chas_text([], header=[*CHAS_COLUMNS, "CN State"]))
    _failed(read(lab), sample, "cn_assay", f"chas/{sample}.segments.txt", "duplicate_column")


def test_segment_of_unknown_type_is_kept_with_an_error_query(lab):
    sample = ok_samples(lab)[0]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(
        chas_text([chas_row(kind="Amp", cn="8"), chas_row()]))
    result = read(lab)
    segments = result.frames["cn_segment"].filter(pl.col("sample_id") == sample).sort("source_row")
    assert segments["segment_type"].to_list() == [None, "Loss"]
    assert segments["cn_state"].to_list() == [8.0, 1.0]
    q = errors(result).filter(pl.col("file") == f"chas/{sample}.segments.txt")
    assert q.select("row", "field", "value", "rule").rows() == [(2, "Type", "Amp", "unknown_code")]
    assert q["row_id"][0] == segments["row_id"][0]


@pytest.mark.parametrize("kind,cn,chrom", [("Loss", "3", "13"), ("Gain", "2", "13"), ("Gain", "1.5", "13"),
                                           ("LOH", "1", "13")])
def test_cn_state_inconsistent_with_type_is_an_error(lab, kind, cn, chrom):
    sample = ok_samples(lab)[0]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(chas_text([chas_row(kind=kind, cn=cn, chrom=chrom)]))
    result = read(lab)
    assert rules(result, f"chas/{sample}.segments.txt") == {"cn_type_mismatch"}
    assert result.frames["cn_segment"].filter(pl.col("sample_id") == sample)["cn_state"].to_list() == [float(cn)]


def test_gain_to_two_copies_on_x_is_consistent(lab):
    sample = ok_samples(lab)[0]
    row = chas_row(kind="Gain", cn="2", chrom="X", location="chrX:31642118-32205904",
                   iscn="arr[hg19] Xp21.1(31,642,118-32,205,904)x2")
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(chas_text([row]))
    assert read(lab).queries == []


def test_segments_in_another_build_are_kept_with_genome_build_errors(lab):
    sample = ok_samples(lab)[0]
    rows = [chas_row(iscn="arr[GRCh38] 13q14.11q22.1(40,629,637-69,938,203)x1"), chas_row(iscn="")]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(
        chas_text(rows, preamble=("#Annotation: OncoScan.na36.r1 (hg38)",)))
    result = read(lab)
    q = errors(result).filter(pl.col("file") == f"chas/{sample}.segments.txt")
    assert q["rule"].to_list() == ["genome_build", "genome_build"]
    assert result.frames["cn_segment"].filter(pl.col("sample_id") == sample).height == 2


def test_unreadable_location_and_chromosome_disagreement_are_errors(lab):
    sample = ok_samples(lab)[0]
    rows = [chas_row(location="13q14"), chas_row(chrom="12"), chas_row(location="chr13:70512336-41203774")]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(chas_text(rows))
    result = read(lab)
    q = errors(result).filter(pl.col("file") == f"chas/{sample}.segments.txt").sort("row")
    assert q.select("row", "rule").rows() == [(2, "invalid_location"), (3, "chromosome_mismatch"),
                                              (4, "invalid_location")]
    segments = result.frames["cn_segment"].filter(pl.col("sample_id") == sample).sort("source_row")
    assert segments["chrom"].to_list() == ["13", "13", "13"]  # the Chromosome column still says where
    assert segments["start_bp"].to_list() == [None, 41203774, None]


def test_chas_saved_in_cp1252_is_read_with_a_warning(lab):
    sample = ok_samples(lab)[0]
    text = chas_text([chas_row()]).decode("utf-8")
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(text.encode("cp1252"))
    result = read(lab)
    assert rules(result, f"chas/{sample}.segments.txt") == {"wrong_encoding"}
    assert errors(result).height == 0
    assert result.frames["cn_segment"].filter(pl.col("sample_id") == sample).height == 1


def test_unknown_chas_column_is_a_warning(lab):
    sample = ok_samples(lab)[0]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(
        chas_text([[*chas_row(), "0.12"]], header=[*CHAS_COLUMNS, "Mean LogRatio"]))
    result = read(lab)
    q = result.queries_frame().filter(pl.col("file") == f"chas/{sample}.segments.txt")
    assert q.select("rule", "severity", "field").rows() == [("unknown_column", "warning", "Mean LogRatio")]


def test_fifty_megabyte_single_line_chas_fails_only_that_file(lab):
    sample = ok_samples(lab)[0]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(b"A" * (50 * 1024 * 1024))
    result = read(lab)
    _failed(result, sample, "cn_assay", f"chas/{sample}.segments.txt", "missing_column")
    assert all(len(q.message) < 1000 for q in result.queries)


def test_truncated_vcf_keeps_the_records_before_the_cut(lab):
    sample = ok_samples(lab)[0]
    path = lab / "ngs" / f"{sample}.vcf"
    text = path.read_text(encoding="utf-8")
    records = [ln for ln in text.splitlines() if not ln.startswith("#")]
    path.write_text(text[: text.rindex("\t", 0, len(text) - 200)], encoding="utf-8")
    result = read(lab)
    label = f"ngs/{sample}.vcf"
    q = errors(result).filter(pl.col("file") == label)
    assert q["rule"].to_list() == ["truncated_file"]
    assert sample_of(result, sample)["ngs_assay"] == "tested"
    rows = result.frames["variant"].filter(pl.col("sample_id") == sample)
    assert rows["source_row"].n_unique() == len(records)  # the cut record is a row too
    assert rows.filter(pl.col("row_id") == q["row_id"][0])["reportable"].to_list() == [None]


def test_an_allele_frequency_that_is_not_a_number_keeps_the_record_with_a_query_on_af(lab):
    sample = ok_samples(lab)[0]
    path = lab / "ngs" / f"{sample}.vcf"
    lines = path.read_text(encoding="utf-8").split("\n")
    i = next(i for i, ln in enumerate(lines) if ln and not ln.startswith("#") and "," not in ln.split("\t")[4])
    fields = lines[i].split("\t")
    fields[7] = re.sub(r"(^|;)AF=[^;]*", r"\1AF=abc", fields[7], count=1)
    lines[i] = "\t".join(fields)
    path.write_text("\n".join(lines), encoding="utf-8")
    result = read(lab)
    q = result.queries_frame().filter(pl.col("file") == f"ngs/{sample}.vcf")
    assert q.select("row", "field", "value", "rule").rows() == [(i + 1, "AF", "abc", "unparseable_number")]
    (row,) = result.frames["variant"].filter(pl.col("row_id") == q["row_id"][0]).to_dicts()
    assert row["pos"] == int(fields[1]) and row["vaf"] is None


def test_binary_garbage_under_a_vcf_name_fails_the_ngs_assay(lab):
    sample = ok_samples(lab)[0]
    (lab / "ngs" / f"{sample}.vcf").write_bytes(bytes(range(256)) * 64)
    _failed(read(lab), sample, "ngs_assay", f"ngs/{sample}.vcf", "binary_file")


def test_text_that_is_not_a_vcf_fails_the_ngs_assay(lab):
    sample = ok_samples(lab)[0]
    (lab / "ngs" / f"{sample}.vcf").write_text("chr1\t12\tA\n", encoding="utf-8")
    _failed(read(lab), sample, "ngs_assay", f"ngs/{sample}.vcf", "invalid_vcf")


def test_vcf_on_another_reference_flags_every_row(lab):
    sample = ok_samples(lab)[0]
    path = lab / "ngs" / f"{sample}.vcf"
    path.write_text(path.read_text(encoding="utf-8").replace("hg19/hg19.fasta", "hg38/hg38.fasta"), encoding="utf-8")
    result = read(lab)
    rows = result.frames["variant"].filter(pl.col("sample_id") == sample)
    q = errors(result).filter(pl.col("file") == f"ngs/{sample}.vcf")
    assert set(q["rule"].to_list()) == {"genome_build"}
    assert set(q["row_id"].to_list()) == set(rows["row_id"].to_list())


def test_unreadable_func_annotation_keeps_the_variant(lab):
    sample = ok_samples(lab)[0]
    path = lab / "ngs" / f"{sample}.vcf"
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"FUNC=\[\{'gene'", "FUNC=[{'gene'::", text, count=1), encoding="utf-8")
    result = read(lab)
    assert rules(result, f"ngs/{sample}.vcf") == {"unparseable_annotation"}
    rows = result.frames["variant"].filter(pl.col("sample_id") == sample)
    assert rows["gene"].null_count() >= 1


def test_missing_file_for_an_ok_case_is_not_done_with_an_error(lab):
    sample = ok_samples(lab)[0]
    (lab / "fusions" / f"{sample}.fusions.tsv").unlink()
    result = read(lab)
    row = sample_of(result, sample)
    assert (row["cn_assay"], row["fusion_assay"]) == ("tested", "not_done")
    q = errors(result)
    assert q.select("file", "rule", "row_id").rows() == [("manifest.csv", "missing_file", row["row_id"])]


def test_file_for_no_manifest_case_is_an_orphan_but_still_read(lab):
    sample = ok_samples(lab)[0]
    shutil.copy(lab / "chas" / f"{sample}.segments.txt", lab / "chas" / "OS-1999-0001.segments.txt")
    result = read(lab)
    q = errors(result)
    assert q.select("file", "rule").rows() == [("chas/OS-1999-0001.segments.txt", "orphan_file")]
    orphan = result.frames["cn_segment"].filter(pl.col("sample_id") == "OS-1999-0001")
    assert orphan.height == result.frames["cn_segment"].filter(pl.col("sample_id") == sample).height


def test_file_for_a_not_contributory_case_is_read_and_flagged(lab):
    failed = [m["sample_id"] for m in manifest(lab) if m["status"] == "not_contributory"][0]
    (lab / "fusions" / f"{failed}.fusions.tsv").write_text(
        "Genes\tBreakpoints\tReads\tUnique Start Sites\tPercent of GSP2 reads\tStrong Evidence\n")
    result = read(lab)
    row = sample_of(result, failed)
    assert (row["cn_assay"], row["fusion_assay"]) == ("failed", "tested")
    assert rules(result) == {"file_for_not_contributory_case"}


def test_unknown_files_are_warnings(lab):
    (lab / "notes.txt").write_text("hello")
    (lab / "chas" / "readme.md").write_text("hello")
    (lab / ".DS_Store").write_bytes(b"\x00\x01")
    result = read(lab)
    q = result.queries_frame()
    assert q.select("file", "rule", "severity").sort("file").rows() == [
        ("chas/readme.md", "unknown_file", "warning"), ("notes.txt", "unknown_file", "warning")]


# --- Archer ------------------------------------------------------------------------------------


def test_archer_fusions_are_parsed(lab):
    sample = ok_samples(lab)[0]
    (lab / "fusions" / f"{sample}.fusions.tsv").write_text(
        "Genes\tBreakpoints\tReads\tUnique Start Sites\tPercent of GSP2 reads\tStrong Evidence\n"
        "EWSR1:FLI1\tchr22:29683123;chr11:128675261\t1520\t87\t42.50\tTrue\n"
        "COL1A1::PDGFB\tchr17:48,265,495;chr22:39639691\t40\t3\t6.1%\tFALSE\n"
        "EWSR1\tchr22\tmany\t-3\t140\tperhaps\n", encoding="utf-8")
    result = read(lab)
    fusions = result.frames["fusion"].filter(pl.col("sample_id") == sample).sort("source_row")
    assert fusions.drop("sample_id", "row_id", "source_file", "source_sheet").rows() == [
        ("EWSR1", "FLI1", "chr22:29683123", "chr11:128675261", 1520, 87, 42.5, True, 2),
        ("COL1A1", "PDGFB", "chr17:48265495", "chr22:39639691", 40, 3, 6.1, False, 3),
        (None, None, None, None, None, None, None, None, 4),
    ]
    q = errors(result).filter(pl.col("file") == f"fusions/{sample}.fusions.tsv")
    assert q.filter(pl.col("row") == 4)["rule"].sort().to_list() == sorted(
        ["invalid_fusion_genes", "invalid_breakpoint", "unparseable_number", "number_out_of_range",
         "number_out_of_range", "unknown_code"])
    assert q.filter(pl.col("row") < 4).height == 0


def test_unreadable_archer_file_is_failed_not_tested(lab):
    sample = ok_samples(lab)[0]
    (lab / "fusions" / f"{sample}.fusions.tsv").write_bytes(b"\x00\xff" * 100)
    _failed(read(lab), sample, "fusion_assay", f"fusions/{sample}.fusions.tsv", "binary_file")


def test_random_cases_recover_segments_mutations_and_fusions(tmp_path):
    rng = np.random.default_rng(3)
    cases = random_cases(120, rng)
    links = {c.case_no: ("nice", f"N{c.case_no:05d}") for c in cases}
    delivery = tmp_path / LABORATORY / DATE.isoformat()
    write_lab_delivery(delivery, cases, links, rng)
    result = read(delivery)
    assert result.queries == []
    segments = dict(result.frames["cn_segment"].group_by("sample_id").len().rows())
    somatic = result.frames["variant"].filter(pl.col("reportable"))
    fusions = result.frames["fusion"]
    assert fusions.height > 0 and somatic.height > 0
    for c in cases:
        assert segments.get(c.sample_id, 0) == len(c.segments)
        mine = somatic.filter(pl.col("sample_id") == c.sample_id)
        found = sorted((g, h, round(v, 2)) for g, h, v in mine.select("gene", "hgvs_c", "vaf").rows())
        assert found == sorted((m.gene, m.hgvs_c, m.vaf) for m in c.mutations)  # the writer rounds FAO
        got = fusions.filter(pl.col("sample_id") == c.sample_id)
        assert [f"{a}:{b}" for a, b in got.select("gene_5p", "gene_3p").rows()] == list(c.fusions)
        assert got["breakpoint_5p"].null_count() == 0 and got["strong_evidence"].null_count() == 0


# --- hostile inputs: the manifest -------------------------------------------------------------


def _manifest_failure(lab: Path, content: bytes, *needles: str) -> ImportFailure:
    (lab / "manifest.csv").write_bytes(content)
    with pytest.raises(ImportFailure) as info:
        read(lab)
    assert "manifest.csv" in str(info.value)
    for needle in needles:
        assert needle in str(info.value)
    return info.value


def test_manifest_missing_a_column_stops_the_import_naming_it(lab):
    text = (lab / "manifest.csv").read_text(encoding="utf-8")
    rows = [ln.split(",") for ln in text.splitlines()]
    content = "\n".join(",".join(r[:4]) for r in rows) + "\n"
    failure = _manifest_failure(lab, content.encode(), "status")
    assert failure.column == "status"


@pytest.mark.parametrize("content", [
    b"",
    b"case_no,centre,local_id,sample_id,status\n",
    bytes(range(256)) * 10,
    b"case_no,centre,local_id,sample_id,status,sample_id\n1,nice,X1,OS-1,ok,OS-1\n",
    b"x" * (50 * 1024 * 1024),
    b"case_no,centre,local_id,sample_id,status\n1,nice,X1,OS-1,ok\n2,nice,X2,OS",
])
def test_broken_manifest_stops_the_import(lab, content):
    _manifest_failure(lab, content)


def test_missing_manifest_stops_the_import(lab):
    (lab / "manifest.csv").unlink()
    with pytest.raises(ImportFailure, match="manifest.csv"):
        read(lab)


def test_manifest_row_problems_are_queries_on_the_row(lab):
    rows = manifest(lab)
    rows[0]["local_id"] = ""
    rows[1]["sample_id"] = "../../etc/passwd"
    rows[2]["status"] = "maybe"
    rows[4]["status"] = "NA"
    rows[3]["case_no"] = "1"  # case 1 again, with other content: both rows are flagged
    rows.append(dict(rows[5]))  # an exact duplicate: only the copy is flagged
    with open(lab / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = read(lab)
    q = errors(result).filter(pl.col("file") == "manifest.csv")
    found = sorted(q.select("row", "rule").rows())
    assert (2, "missing_patient_id") in found
    assert (3, "invalid_sample_id") in found
    assert (4, "unknown_code") in found
    assert (6, "missing_status") in found
    assert (2, "duplicate_case") in found and (5, "duplicate_case") in found
    assert (16, "duplicate_sample") in found and (7, "duplicate_sample") not in found
    assert (16, "duplicate_case") in found and (7, "duplicate_case") not in found
    samples = result.frames["molecular_sample"].sort("source_row")
    assert samples.height == 15  # every manifest row is kept
    first = samples.row(0, named=True)
    assert first["patient_id"] is None
    second = samples.row(1, named=True)
    assert second["sample_id"] is None and second["cn_assay"] is None
    # the files of the unusable accession are now orphans
    assert "orphan_file" in rules(result)


# --- properties --------------------------------------------------------------------------------

CELL = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cn=CELL, kind=CELL, chrom=CELL, location=CELL, iscn=CELL)
def test_any_chas_cell_value_gives_a_row_and_queries_never_an_exception(lab, cn, kind, chrom, location, iscn):
    sample = ok_samples(lab)[0]
    rows = [chas_row(cn=cn, kind=kind, chrom=chrom, location=location, iscn=iscn, file=f"{sample}.OSCHP")]
    (lab / "chas" / f"{sample}.segments.txt").write_bytes(chas_text(rows))
    result = read(lab)
    assert sample_of(result, sample)["cn_assay"] == "tested"
    (segment,) = result.frames["cn_segment"].filter(pl.col("sample_id") == sample).to_dicts()
    flagged = {q.field for q in result.queries if q.row_id == segment["row_id"] and q.severity == "error"}
    if segment["segment_type"] is None and kind.strip():
        assert "Type" in flagged
    if segment["start_bp"] is None and location.strip():
        assert "Full Location" in flagged
    if segment["cn_state"] is None and cn.strip() and kind.strip() != "LOH":
        assert flagged  # an unreadable CN state, or a type it cannot be judged against
    assert segment["segment_type"] in (None, "Gain", "Loss", "LOH")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_under_a_vcf_name_give_a_state_and_queries_never_an_exception(lab, data):
    sample = ok_samples(lab)[0]
    (lab / "ngs" / f"{sample}.vcf").write_bytes(data)
    result = read(lab)
    state = sample_of(result, sample)["ngs_assay"]
    assert state in ("tested", "failed")
    if state == "failed":
        assert any(q.file == f"ngs/{sample}.vcf" and q.severity == "error" for q in result.queries)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80), max_size=4))
def test_any_vcf_body_lines_give_rows_or_queries_never_an_exception(lab, twin_delivery, lines):
    sample = ok_samples(lab)[0]
    path = lab / "ngs" / f"{sample}.vcf"
    header = [ln for ln in (twin_delivery / "ngs" / f"{sample}.vcf").read_text(encoding="utf-8").splitlines()
              if ln.startswith("#")]
    path.write_text("\n".join(header + [ln.replace("\x00", "") for ln in lines]) + "\n", encoding="utf-8")
    result = read(lab)
    assert sample_of(result, sample)["ngs_assay"] in ("tested", "failed")


def test_a_case_from_a_centre_the_registry_does_not_know_is_kept_unlinked_with_a_warning(lab):
    rows = manifest(lab)
    rows[0]["centre"] = "Marseille"
    rows[1]["centre"] = " NICE "  # known, whatever the case and spaces
    with open(lab / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = read(lab)
    q = result.queries_frame().filter(pl.col("rule") == "unknown_centre")
    assert q.select("row", "severity", "value").rows() == [(2, "warning", "Marseille")]
    assert "Marseille" in q["message"][0] and "nice" in q["message"][0]
    samples = result.frames["molecular_sample"].sort("source_row")
    assert samples.height == len(rows)
    assert samples["patient_id"][0] is None
    assert samples["patient_id"][1] == pseudonym(KEY, "nice", rows[1]["local_id"])
    assert errors(result).filter(pl.col("file") == "manifest.csv").is_empty()


def test_manifest_without_a_final_line_break_is_read_with_a_warning(lab):
    path = lab / "manifest.csv"
    path.write_bytes(path.read_bytes().rstrip(b"\r\n"))
    result = read(lab)
    asked = result.queries_frame().filter(pl.col("file") == "manifest.csv")
    assert asked.select("rule", "severity").rows() == [("missing_final_line_end", "warning")]
    assert result.frames["molecular_sample"].height == len(manifest(lab))


def test_a_manifest_saved_with_its_name_in_capitals_is_read_as_a_centres_file_is(lab):
    cases = len(manifest(lab))
    (lab / "manifest.csv").rename(lab / "MANIFEST.CSV")  # a Windows export changes the case
    result = read(lab)
    assert result.frames["molecular_sample"].height == cases
    assert "unknown_file" not in rules(result) and not errors(result).filter(pl.col("file") == "manifest.csv").height
