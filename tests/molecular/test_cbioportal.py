"""The cBioPortal study folder against the rules of cBioPortal's "File Formats" page and validateData.py.

cBioPortal's validator itself (``validateData.py``, in cbioportal-core) is not on PyPI and the
machine has no network: the rules it applies to these file types are checked here one by one.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from clms_etl import model
from clms_etl.molecular.cbioportal import (
    MAF_COLUMNS,
    SEG_COLUMNS,
    STUDY_ID,
    hgvsp_short,
    maf_alleles,
    write_study,
)
from clms_etl.molecular.summary import summarise
from clms_etl.synth.twin import build_twin

ID = re.compile(r"^[A-Za-z0-9._\-]+$")  # validateData.py accepts a little more; we stay strict
CLINICAL_DATATYPES = {"STRING", "NUMBER", "BOOLEAN"}
HG19_LENGTH = {"1": 249250621, "13": 115169878, "17": 81195210, "X": 155270560}
# meta_study.txt fields validateData.py recognises (cbioportal_common.META_FIELD_MAP); any other
# (e.g. short_name) draws an "Unrecognized field" warning and the importer ignores it
META_STUDY_FIELDS = {"cancer_study_identifier", "type_of_cancer", "name", "description", "citation", "pmid",
                     "groups", "add_global_case_list", "tags_file", "reference_genome"}


def _meta(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(": ")
        assert sep, f"{path.name}: not a 'key: value' line: {line!r}"
        out[key] = value
    return out


def _table(path: Path) -> tuple[list[str], list[str], list[list[str]]]:
    """(# lines, header, rows) of a tab-separated data file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    comments = [line for line in lines if line.startswith("#")]
    body = [line.split("\t") for line in lines if not line.startswith("#")]
    return comments, body[0], body[1:]


@pytest.fixture(scope="module")
def study(twin_read, tmp_path_factory) -> Path:
    summary, patients = twin_read
    out = tmp_path_factory.mktemp("cbioportal") / "clms"
    write_study(summary, patients, out)
    return out


@pytest.fixture(scope="module")
def clinical_samples(study) -> dict[str, str]:
    _, header, rows = _table(study / "data_clinical_sample.txt")
    return {r[header.index("SAMPLE_ID")]: r[header.index("PATIENT_ID")] for r in rows}


def test_meta_study_names_hg19_and_the_lms_cancer_type(study):
    meta = _meta(study / "meta_study.txt")
    assert meta["type_of_cancer"] == "lms" and meta["reference_genome"] == "hg19"
    assert meta["cancer_study_identifier"] == STUDY_ID and re.fullmatch(r"[a-z0-9_]+", STUDY_ID)
    assert {"name", "description"} <= set(meta) and set(meta) <= META_STUDY_FIELDS


def test_every_meta_file_names_the_study_and_an_existing_data_file(study):
    metas = sorted(study.glob("meta_*.txt"))
    assert {m.name for m in metas} >= {"meta_study.txt", "meta_clinical_patient.txt", "meta_clinical_sample.txt",
                                       "meta_mutations.txt", "meta_cna.txt", "meta_cna_hg19_seg.txt", "meta_sv.txt"}
    for path in metas:
        meta = _meta(path)
        assert meta["cancer_study_identifier"] == STUDY_ID, path.name
        if path.name != "meta_study.txt":
            assert (study / meta["data_filename"]).is_file(), path.name
            assert meta["genetic_alteration_type"] and meta["datatype"], path.name
        if meta.get("genetic_alteration_type") in ("MUTATION_EXTENDED", "STRUCTURAL_VARIANT") or \
                meta.get("datatype") == "DISCRETE":
            assert {"stable_id", "profile_name", "profile_description", "show_profile_in_analysis_tab"} <= set(meta)
    seg = _meta(study / "meta_cna_hg19_seg.txt")
    assert (seg["datatype"], seg["reference_genome_id"]) == ("SEG", "hg19")


@pytest.mark.parametrize(("name", "required"), [("data_clinical_patient.txt", ["PATIENT_ID"]),
                                                 ("data_clinical_sample.txt", ["SAMPLE_ID", "PATIENT_ID"])])
def test_clinical_files_have_the_four_line_attribute_header(study, name, required):
    comments, header, rows = _table(study / name)
    assert len(comments) == 4 and all(len(c[1:].split("\t")) == len(header) for c in comments)
    names, descriptions, datatypes, priorities = (c[1:].split("\t") for c in comments)
    assert all(n.strip() for n in names) and all(d.strip() for d in descriptions)
    assert set(datatypes) <= CLINICAL_DATATYPES and all(int(p) >= -1 for p in priorities)
    assert all(h.isupper() for h in header) and set(required) <= set(header)
    assert not {"MUTATION_COUNT", "FRACTION_GENOME_ALTERED"} & set(header)  # computed by cBioPortal
    for row in rows:
        assert len(row) == len(header)
        for value, datatype in zip(row, datatypes, strict=True):
            if datatype == "NUMBER" and value != "NA":
                float(value)


def test_survival_attributes_use_the_status_codes_cbioportal_expects(study):
    _, header, rows = _table(study / "data_clinical_patient.txt")
    col = {h: i for i, h in enumerate(header)}
    assert {"OS_STATUS", "OS_MONTHS", "DFS_STATUS", "DFS_MONTHS"} <= set(col)
    os_status = {r[col["OS_STATUS"]] for r in rows}
    dfs_status = {r[col["DFS_STATUS"]] for r in rows}
    assert os_status <= {"0:LIVING", "1:DECEASED"} and dfs_status <= {"0:DiseaseFree", "1:Recurred/Progressed"}
    assert os_status == {"0:LIVING", "1:DECEASED"}  # the twin has both
    for r in rows:
        assert float(r[col["OS_MONTHS"]]) >= float(r[col["DFS_MONTHS"]]) >= 0
        if r[col["OS_STATUS"]] == "1:DECEASED":
            assert r[col["OS_MONTHS"]] != "NA"


def test_samples_of_every_data_file_and_case_list_are_defined_in_the_clinical_sample_file(study, clinical_samples):
    _, header, rows = _table(study / "data_mutations.txt")
    used = {r[header.index("Tumor_Sample_Barcode")] for r in rows}
    _, header, _ = _table(study / "data_cna.txt")
    used |= set(header[2:])
    _, header, rows = _table(study / "data_cna_hg19.seg")
    used |= {r[0] for r in rows}
    _, header, rows = _table(study / "data_sv.txt")
    used |= {r[header.index("Sample_Id")] for r in rows}
    lists = {p.name: _meta(p) for p in (study / "case_lists").glob("*.txt")}
    for meta in lists.values():
        used |= set(meta["case_list_ids"].split("\t"))
    assert used and used <= set(clinical_samples)
    _, header, rows = _table(study / "data_clinical_patient.txt")
    assert set(clinical_samples.values()) == {r[0] for r in rows}  # every patient has a sample and vice versa


def test_case_lists_have_the_study_prefix_and_the_profiled_samples(study, clinical_samples, twin_read):
    summary, _ = twin_read
    lists = {p.name: _meta(p) for p in (study / "case_lists").glob("*.txt")}
    assert set(lists) == {"cases_all.txt", "cases_sequenced.txt", "cases_cna.txt", "cases_cnaseq.txt", "cases_sv.txt"}
    for meta in lists.values():
        assert meta["stable_id"].startswith(f"{STUDY_ID}_") and meta["cancer_study_identifier"] == STUDY_ID
        assert meta["case_list_name"] and meta["case_list_description"]
        ids = meta["case_list_ids"].split("\t")
        assert len(ids) == len(set(ids))
    assert len(lists["cases_all.txt"]["case_list_ids"].split("\t")) == summary.cases.height == len(clinical_samples)
    contributory = summary.cases.filter(pl.col("status") == "ok").height
    for name in ("cases_sequenced.txt", "cases_cna.txt", "cases_cnaseq.txt", "cases_sv.txt"):
        assert len(lists[name]["case_list_ids"].split("\t")) == contributory, name
    _, header, _ = _table(study / "data_cna.txt")
    assert header[2:] == lists["cases_cna.txt"]["case_list_ids"].split("\t")


def test_mutations_maf_carries_the_published_mutations_with_entrez_ids(study, paper):
    _, header, rows = _table(study / "data_mutations.txt")
    assert header == list(MAF_COLUMNS)
    col = {h: i for i, h in enumerate(header)}
    assert len(rows) == len(paper["ngs_tp53_mutations"])
    for r in rows:
        assert (r[col["Hugo_Symbol"]], r[col["Entrez_Gene_Id"]], r[col["NCBI_Build"]]) == ("TP53", "7157", "GRCh37")
        assert r[col["Variant_Classification"]] == "Missense_Mutation" and r[col["Variant_Type"]] == "SNP"
        for allele in ("Reference_Allele", "Tumor_Seq_Allele1", "Tumor_Seq_Allele2"):
            assert re.fullmatch(r"[ACGT-]+", r[col[allele]])
        assert int(r[col["Start_Position"]]) <= int(r[col["End_Position"]])
        assert "," not in r[col["HGVSp_Short"]] and ";" not in r[col["HGVSp_Short"]]
        depth = int(r[col["t_ref_count"]]) + int(r[col["t_alt_count"]])
        vaf = int(r[col["t_alt_count"]]) / depth
        assert any(abs(vaf - m["vaf"]) < 0.005 and r[col["HGVSc"]] == m["hgvs_c"] for m in paper["ngs_tp53_mutations"])
    assert {r[col["HGVSp_Short"]] for r in rows} == {"p.M246V", "p.S241F"}


def test_unknown_read_counts_are_left_empty_not_na(tmp_path):
    """validateData.py accepts an integer, '' or '.' in t_ref_count / t_alt_count; 'NA' is an error."""
    samples = model.conform("molecular_sample", pl.DataFrame([{"sample_id": "OS-2020-0001", "patient_id": "Pabc",
                                                               "case_no": 1, "status": "ok", "cn_assay": "tested",
                                                               "ngs_assay": "tested", "fusion_assay": "tested"}]))
    call = {"sample_id": "OS-2020-0001", "chrom": "7", "ref": "A", "gene": "EGFR", "transcript": "NM_005228.5",
            "function": "missense", "vaf": 0.3, "filter": "PASS", "genotype": "0/1", "reportable": True}
    variant = model.conform("variant", pl.DataFrame([
        {**call, "pos": 55259515, "alt": "G", "depth": None, "row_id": "v1"},
        {**call, "pos": 55259516, "alt": "C", "depth": 400, "row_id": "v2"},
    ]))
    s = summarise(samples, model.empty("cn_segment"), variant, model.empty("fusion"))
    write_study(s, pl.DataFrame({"patient_id": ["Pabc"]}), tmp_path, k_threshold=1)  # one patient: never 5-anonymous
    _, header, rows = _table(tmp_path / "data_mutations.txt")
    counts = sorted((r[header.index("t_ref_count")], r[header.index("t_alt_count")]) for r in rows)
    assert counts == [("", ""), ("280", "120")]


def test_discrete_cna_uses_the_five_levels_and_matches_case_2(study, twin_read):
    summary, _ = twin_read
    _, header, rows = _table(study / "data_cna.txt")
    assert header[:2] == ["Hugo_Symbol", "Entrez_Gene_Id"]
    values = {v for r in rows for v in r[2:]}
    assert values <= {"-2", "-1", "0", "1", "2"} and {"-2", "-1", "2"} <= values
    case2 = summary.cases.filter(pl.col("case_no") == 2)["patient_id"][0] + "-M2"
    by_gene = {r[0]: r[header.index(case2)] for r in rows}
    assert (by_gene["RB1"], by_gene["TP53"], by_gene["MYOCD"]) == ("-2", "-1", "2")
    assert all(r[1].isdigit() and int(r[1]) > 0 for r in rows)


def test_segments_file_has_the_seg_columns_in_order_and_valid_coordinates(study, twin_read):
    summary, _ = twin_read
    _, header, rows = _table(study / "data_cna_hg19.seg")
    assert header == list(SEG_COLUMNS)
    assert len(rows) == summary.segments.height
    for sample, chrom, start, end, marks, mean in rows:
        assert chrom in {*map(str, range(1, 23)), "X", "Y"}
        assert 0 <= int(start) < int(end) and int(marks) >= 0
        float(mean)
        if chrom in HG19_LENGTH:
            assert int(end) <= HG19_LENGTH[chrom]


def test_no_fusion_gives_a_header_only_sv_file(study):
    _, header, rows = _table(study / "data_sv.txt")
    assert rows == [] and {"Sample_Id", "SV_Status", "Site1_Hugo_Symbol", "Site2_Hugo_Symbol"} <= set(header)


def test_a_fusion_becomes_a_structural_variant_row(tmp_path):
    samples = model.conform("molecular_sample", pl.DataFrame([{"sample_id": "OS-2020-0001", "patient_id": "Pabc",
                                                               "case_no": 1, "status": "ok", "cn_assay": "tested",
                                                               "ngs_assay": "tested", "fusion_assay": "tested"}]))
    fusion = model.conform("fusion", pl.DataFrame([{"sample_id": "OS-2020-0001", "gene_5p": "COL1A1",
                                                    "gene_3p": "PDGFB", "breakpoint_5p": "chr17:48,265,495",
                                                    "breakpoint_3p": "chr22:39639691", "reads": 310,
                                                    "strong_evidence": True, "row_id": "f1"}]))
    s = summarise(samples, model.empty("cn_segment"), model.empty("variant"), fusion)
    write_study(s, pl.DataFrame({"patient_id": ["Pabc"]}), tmp_path, k_threshold=1)  # one patient: never 5-anonymous
    _, header, rows = _table(tmp_path / "data_sv.txt")
    row = dict(zip(header, rows[0], strict=True))
    assert (row["Sample_Id"], row["SV_Status"], row["Site1_Hugo_Symbol"], row["Site2_Hugo_Symbol"]) == (
        "Pabc-M1", "SOMATIC", "COL1A1", "PDGFB")
    assert (row["Site1_Chromosome"], row["Site1_Position"], row["Site2_Chromosome"]) == ("17", "48265495", "22")
    assert "OS-2020-0001" not in "".join(p.read_text() for p in tmp_path.rglob("*.txt"))


def test_no_identifier_nor_laboratory_accession_leaves_in_the_export(study, twin_read):
    summary, _ = twin_read
    text = "\n".join(p.read_text(encoding="utf-8") for p in study.rglob("*") if p.is_file())
    truth = build_twin(0).patient
    forbidden = set(truth["local_id"]) | set(truth["last_name"]) | set(truth["first_name"])
    forbidden |= {d.isoformat() for d in truth["birth_date"].drop_nulls()}
    forbidden |= {d.isoformat() for d in truth["diagnosis_date"].drop_nulls()}
    forbidden |= set(summary.cases["sample_id"])
    assert not [f for f in forbidden if re.search(rf"(?<![A-Za-z0-9]){re.escape(f)}(?![A-Za-z0-9])", text)]
    _, header, rows = _table(study / "data_clinical_sample.txt")
    for r in rows:
        assert ID.match(r[0]) and ID.match(r[1]) and len(r[0]) <= 63


def test_vcf_alleles_become_maf_alleles():
    assert maf_alleles(100, "A", "G") == (100, 100, "A", "G", "SNP")
    assert maf_alleles(100, "CAG", "C") == (101, 102, "AG", "-", "DEL")
    assert maf_alleles(100, "C", "CTT") == (100, 101, "-", "TT", "INS")
    assert maf_alleles(100, "AC", "GT") == (100, 101, "AC", "GT", "DNP")
    assert hgvsp_short("p.Arg248Gln") == "p.R248Q" and hgvsp_short("p.Gln787=") == "p.Q787="


def test_a_case_list_with_no_sample_is_not_written(twin_warehouse_url, tmp_path):
    from clms_etl.warehouse.load import Warehouse

    with Warehouse(twin_warehouse_url) as wh:
        samples = wh.table("molecular_sample").with_columns(pl.lit("not_done").alias("fusion_assay"))
        summary = summarise(samples, wh.table("cn_segment"), wh.table("variant"), wh.table("fusion"),
                            wh.table("gene_status"))
        patients = wh.read_sql("SELECT * FROM analytics.patient_summary")
    (tmp_path / "clms" / "case_lists").mkdir(parents=True)
    (tmp_path / "clms" / "case_lists" / "cases_sv.txt").write_text("from a previous export\n")
    write_study(summary, patients, tmp_path / "clms")
    lists = {p.name for p in (tmp_path / "clms" / "case_lists").glob("*.txt")}
    assert "cases_sv.txt" not in lists and "cases_all.txt" in lists
    for path in (tmp_path / "clms" / "case_lists").glob("*.txt"):
        assert _meta(path)["case_list_ids"].strip(), path.name


# validateData.py (cbioportal-core, StructuralVariantValidator): with more than one of these columns
# missing it warns "Missing genomic information"
SV_GENOMIC_COLUMNS = {
    "Sample_Id", "Site1_Hugo_Symbol", "Site1_Entrez_Gene_Id", "Site1_Chromosome", "Site1_Position",
    "Site1_Region_Number", "Site1_Ensembl_Transcript_Id", "Site2_Hugo_Symbol", "Site2_Entrez_Gene_Id",
    "Site2_Chromosome", "Site2_Position", "Site2_Region_Number", "Site2_Ensembl_Transcript_Id", "Event_Info",
    "Site1_Region", "Site2_Region", "Site1_Contig", "Site2_Contig"}
SWISSPROT_NAME = re.compile(r"^[A-Z0-9]{1,5}_[A-Z0-9]{1,5}$")  # validateData.py checkSwissProt, identifier "name"


def test_the_maf_names_each_mutated_gene_swissprot_entry(study):
    _, header, rows = _table(study / "data_mutations.txt")
    assert "SWISSPROT" in header and _meta(study / "meta_mutations.txt")["swissprot_identifier"] == "name"
    entries = {r[header.index("Hugo_Symbol")]: r[header.index("SWISSPROT")] for r in rows}
    assert entries and all(SWISSPROT_NAME.match(v) for v in entries.values()), entries
    assert entries["TP53"] == "P53_HUMAN"


def test_the_sv_file_has_every_genomic_column_of_the_format(study):
    _, header, _ = _table(study / "data_sv.txt")
    assert SV_GENOMIC_COLUMNS <= set(header), SV_GENOMIC_COLUMNS - set(header)


def test_gene_panels_say_which_genes_each_profiled_sample_was_tested_for(study, clinical_samples):
    from clms_etl.molecular.cbioportal import gene_panels
    from clms_etl.warehouse.genes import entrez_ids

    ngs, cn = sorted(gene_panels(), key=lambda p: p.profile != "mutations")
    assert ngs.profile == "mutations" and cn.profile == "cna"
    # the laboratory's declared 50-gene hotspot panel, not the genes the twin happens to carry
    assert len(ngs.genes) == 50 and {"TP53", "RB1", "PTEN", "CDKN2A", "KIT"} <= set(ngs.genes)
    assert not {"MYOCD", "MDM2", "CDK4", "DMD", "ATRX"} & set(ngs.genes)
    assert set(cn.genes) == set(entrez_ids())
    for panel in (ngs, cn):
        meta = _meta(study / "gene_panels" / f"data_gene_panel_{panel.stable_id}.txt")
        assert meta["stable_id"] == panel.stable_id and meta["gene_list"].split("\t") == list(panel.genes)
    _, mutated_header, mutations = _table(study / "data_mutations.txt")
    assert {r[mutated_header.index("Hugo_Symbol")] for r in mutations} <= set(ngs.genes)
    _, _, cna_rows = _table(study / "data_cna.txt")
    assert {r[0] for r in cna_rows} <= set(cn.genes)
    meta = _meta(study / "meta_gene_panel_matrix.txt")
    assert (meta["genetic_alteration_type"], meta["datatype"]) == ("GENE_PANEL_MATRIX", "GENE_PANEL_MATRIX")
    _, header, rows = _table(study / meta["data_filename"])
    assert header == ["SAMPLE_ID", "mutations", "cna"]  # the profiles' stable ids
    matrix = {r[0]: dict(zip(header[1:], r[1:], strict=True)) for r in rows}
    assert set(matrix) == set(clinical_samples)
    for profile, case_list, panel in (("mutations", "cases_sequenced.txt", ngs), ("cna", "cases_cna.txt", cn)):
        listed = set(_meta(study / "case_lists" / case_list)["case_list_ids"].split("\t"))
        assert {s for s, m in matrix.items() if m[profile] == panel.stable_id} == listed
        assert all(m[profile] == "NA" for s, m in matrix.items() if s not in listed)


def test_a_patient_dead_without_a_death_date_is_deceased_with_months_missing(twin_read, tmp_path):
    summary, patients = twin_read
    study_patients = set(summary.cases["patient_id"].drop_nulls())
    dead = patients.filter(pl.col("patient_id").is_in(study_patients) & pl.col("death_date").is_not_null())
    victim = dead["patient_id"][0]
    # the death event was quarantined: the chart still says dead, the warehouse has no death date
    quarantined = patients.with_columns(pl.when(pl.col("patient_id") == victim).then(None)
                                        .otherwise(pl.col("death_date")).alias("death_date"))
    assert quarantined.filter(pl.col("patient_id") == victim)["vital_status"].item() == "dead"
    write_study(summary, quarantined, tmp_path)
    _, header, rows = _table(tmp_path / "data_clinical_patient.txt")
    row = next(dict(zip(header, r, strict=True)) for r in rows if r[0] == victim)
    assert (row["OS_STATUS"], row["OS_MONTHS"], row["VITAL_STATUS"]) == ("1:DECEASED", "NA", "Dead")
