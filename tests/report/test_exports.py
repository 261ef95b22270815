"""Exports for statisticians: every dataset read back from each format equals the warehouse's."""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import polars as pl
import pyreadstat
import pytest
from typer.testing import CliRunner

from clms_etl.report.exports import (
    DTA_LABEL_LENGTH, FORMATS, RELATIVE_DATES, XPT_LABEL_LENGTH, Dataset, analysis_datasets, coded_columns, cut_label,
    dataset_label, export_analysis, protect, short_names)
from clms_etl.vocabulary import code_labels, codes
from clms_etl.warehouse.analytics import VIEWS_BY_NAME
from clms_etl.warehouse.schema import RESULT_TABLES
from tests.report.helpers import identifiers, scan_values


@pytest.fixture(scope="module")
def exported(report_warehouse, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("outputs") / "exports"
    return export_analysis(report_warehouse, outdir), protect(analysis_datasets(report_warehouse))[0]


def _source(datasets, name) -> pl.DataFrame:
    return next(d.frame for d in datasets if d.name == name)


def test_the_views_and_every_result_table_are_exported_in_every_format(exported, report_warehouse):
    result, datasets = exported
    names = ["patient_summary", "survival", *sorted(RESULT_TABLES)]
    assert [d.name for d in datasets] == names
    assert {fmt: sorted(files) for fmt, files in result.files.items()} == {fmt: sorted(names) for fmt in FORMATS}
    assert result.rows["patient_summary"] == 79
    assert result.rows["survival"] == 79 * 5
    for fmt, files in result.files.items():
        assert all(p.parent == result.outdir / fmt and p.stat().st_size > 0 for p in files.values())


def test_every_dataset_is_written_in_the_order_of_its_columns_so_two_nights_diff_cleanly(exported):
    # a view's rows come back from the database in any order; a statistician diffing two nights'
    # files must see only what changed
    _, datasets = exported
    for d in datasets:
        assert d.frame.equals(d.frame.sort(d.frame.columns, nulls_last=True)), d.name


def test_parquet_round_trips_exactly(exported):
    result, datasets = exported
    for name, path in result.files["parquet"].items():
        assert pl.read_parquet(path).equals(_source(datasets, name)), name


def test_csv_round_trips_with_the_source_types(exported):
    result, datasets = exported
    for name, path in result.files["csv"].items():
        source = _source(datasets, name)
        back = pl.read_csv(path, schema=source.schema)
        assert back.equals(source), name


def _expected_stats_values(series: pl.Series, fmt: str) -> list:
    """What SAS / Stata hold for a column (the documented conversions)."""
    if series.dtype == pl.Boolean or series.dtype.is_numeric():
        return [math.nan if v is None else float(v) for v in series.to_list()]
    if series.dtype == pl.Date:
        return [None if v is None else v for v in series.to_list()]
    return ["" if v is None else v for v in series.to_list()]


def _same(a: list, b: list) -> bool:
    def norm(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, dt.datetime):
            return v.date()
        return v
    return [norm(v) for v in a] == [norm(v) for v in b]


@pytest.mark.parametrize("fmt", ["xpt", "dta"])
def test_sas_and_stata_files_round_trip_with_names_and_labels_from_the_codebook(exported, fmt):
    result, datasets = exported
    codebook = result.codebook
    for name, path in result.files[fmt].items():
        source = _source(datasets, name)
        frame, meta = (pyreadstat.read_xport(str(path)) if fmt == "xpt" else pyreadstat.read_dta(str(path)))
        book = codebook.filter(pl.col("dataset") == name).sort("position")
        names = book["xpt_name" if fmt == "xpt" else "stata_name"].to_list()
        assert list(frame.columns) == names
        labels = dict(zip(book["column"], book["label"], strict=True))
        limit = XPT_LABEL_LENGTH if fmt == "xpt" else DTA_LABEL_LENGTH
        assert meta.column_labels == [cut_label(labels[c], limit) for c in source.columns]
        assert frame.shape[0] == source.height
        coded = coded_columns(source) if fmt == "dta" else {}
        for column, short in zip(source.columns, names, strict=True):
            series = source[column]
            if column in coded and series.dtype == pl.String:  # Stata: a text code as its position in the list
                series = series.replace_strict({c: i for i, c in enumerate(codes(coded[column]), 1)}, default=None,
                                               return_dtype=pl.Int32)
            expected = _expected_stats_values(series, fmt)
            got = frame[short].tolist()
            if fmt == "xpt" and source[column].dtype == pl.String:
                got = ["" if v is None else v for v in got]
            assert _same(got, expected), (name, column)
        if fmt == "xpt":
            assert meta.table_name == book["xpt_dataset"][0]
            assert all(len(n) <= 8 for n in names)
        else:
            booleans = [s for c, s in zip(source.columns, names, strict=True) if source[c].dtype == pl.Boolean]
            assert all(meta.variable_value_labels[b] == {0: "no", 1: "yes"} for b in booleans)


def test_stata_files_label_every_coded_variable_with_one_shared_label_set_per_code_list(exported):
    result, datasets = exported
    summary = _source(datasets, "patient_summary")
    frame, meta = pyreadstat.read_dta(str(result.files["dta"]["patient_summary"]))
    names = dict(zip(summary.columns, frame.columns, strict=True))
    expected_lists = {"sex": "sex", "site": "site", "presentation": "presentation", "invasion": "invasion",
                      "resection_status": "resection_status", "final_resection_status": "resection_status",
                      "vital_status": "vital_status", "death_cause": "death_cause", "fnclcc_grade": "fnclcc_grade",
                      "differentiation_score": "differentiation_score", "necrosis_score": "necrosis_score"}
    for column, code_list in expected_lists.items():
        stata = names[column]
        assert meta.variable_to_label[stata] == code_list, column  # the set is named after the code list
        labels = code_labels(code_list)
        numbered = {c if isinstance(c, int) else i: label for i, (c, label) in enumerate(labels.items(), 1)}
        assert meta.value_labels[code_list] == numbered, column
        # every value read back is the code's number: its label is the code list's label of the warehouse value
        shown = [None if v != v else numbered[int(v)] for v in frame[stata]]
        assert shown == [None if c is None else labels[c] for c in summary[column].to_list()], column
    # one set per code list, shared: resection_status and final_resection_status, every boolean
    assert set(meta.value_labels) == {*expected_lists.values(), "yes_no"}
    assert meta.variable_to_label[names["death"]] == meta.variable_to_label[names["pain"]] == "yes_no"


def test_the_stata_dataset_label_is_a_complete_short_sentence(exported):
    result, datasets = exported
    for dataset in datasets:
        _, meta = pyreadstat.read_dta(str(result.files["dta"][dataset.name]), metadataonly=True)
        assert 0 < len(meta.file_label) <= DTA_LABEL_LENGTH
        assert dataset.description.startswith(meta.file_label)
        rest = dataset.description[len(meta.file_label):]
        assert rest == "" or rest[0] in ".:;( ", (meta.file_label, rest[:20])  # ends at a sentence, clause or word
    assert dataset_label("One row per patient with the analysis variables of the study (Table 1, outcomes, "
                         "follow-up). Built from patient, tumour and the events.") == (
        "One row per patient with the analysis variables of the study")


def test_the_sas_format_program_defines_each_code_list_once_and_attaches_it(exported):
    result, datasets = exported
    program = (result.outdir / "xpt" / "formats.sas").read_text(encoding="utf-8")
    values = dict(re.findall(r"^  value (\$?\w+) (.*);$", program, re.M))
    assert values["$site"] == " ".join(f"'{c}'='{label}'" for c, label in code_labels("site").items())
    assert values["fnclcc_grade"] == "1='Grade I' 2='Grade II' 3='Grade III'"
    assert values["yes_no"] == "0='no' 1='yes'"
    assert len(re.findall(r"^  value \$resection_status ", program, re.M)) == 1  # shared by two variables
    summary = result.codebook.filter(pl.col("dataset") == "patient_summary")
    xpt = dict(zip(summary["column"], summary["xpt_name"], strict=True))
    _, meta = pyreadstat.read_xport(str(result.files["xpt"]["patient_summary"]), metadataonly=True)
    assert {xpt["site"], xpt["final_resection_status"], xpt["resection_status"]} <= set(meta.column_names)
    attach = re.search(r"set xptlib\.patisumm;\n  format (.*);", program).group(1)
    assert f"{xpt['site']} $site." in attach and f"{xpt['final_resection_status']} $resection_status." in attach
    assert f"{xpt['resection_status']} $resection_status." in attach and f"{xpt['death']} yes_no." in attach


def test_parquet_fields_carry_their_description_and_code_list(exported):
    import pyarrow.parquet as pq

    result, datasets = exported
    for dataset in datasets:
        schema = pq.read_schema(result.files["parquet"][dataset.name])
        assert schema.metadata[b"description"].decode() == dataset.description
        for f in schema:
            assert f.metadata[b"description"].decode() == dataset.labels[f.name], (dataset.name, f.name)
    site = pq.read_schema(result.files["parquet"]["patient_summary"]).field("site").metadata
    assert site[b"code_list"] == b"site"
    assert json.loads(site[b"value_labels"]) == code_labels("site")


def test_csv_files_with_non_ascii_text_open_in_excel(exported, tmp_path):
    result, datasets = exported
    non_ascii = []
    for path in [*result.files["csv"].values(), result.outdir / "codebook.csv"]:
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") == (not raw.isascii()), path.name
        non_ascii += [path.name] if not raw.isascii() else []
    # a dataset with "±" (Table 1's result table once computed) gets its BOM
    summary = next(d for d in datasets if d.name == "patient_summary")
    table = Dataset("table1", "Table 1.", pl.DataFrame({"display": ["65.8 ± 18.2"]}), {"display": "As printed."})
    written = export_analysis(None, tmp_path, ["csv"], [summary, table])
    assert written.files["csv"]["table1"].read_bytes().startswith("\ufeffdisplay\n65.8 ± 18.2".encode())


def test_stata_files_are_format_118(exported):
    result, _ = exported
    assert b"<release>118</release>" in result.files["dta"]["patient_summary"].read_bytes()[:64]  # Stata 14+


def test_the_codebook_documents_every_column_with_its_warehouse_comment(exported):
    result, datasets = exported
    for dataset in datasets:
        rows = result.codebook.filter(pl.col("dataset") == dataset.name)
        assert rows["column"].to_list() == dataset.frame.columns
        assert all(rows["label"].str.len_chars() > 0)
    summary = result.codebook.filter(pl.col("dataset") == "patient_summary")
    view = dict(VIEWS_BY_NAME["patient_summary"].columns)
    relative = dict(v for v in RELATIVE_DATES.values() if v)
    assert dict(zip(summary["column"], summary["label"], strict=True)) == {
        c: view.get(c) or relative[c] for c in summary["column"]}
    readme = result.readme.read_text()
    assert "SAS transport" in readme and "`age_at_diagnosis_years`" in readme
    name_map = pl.read_csv(result.outdir / "xpt" / "name_map.csv")
    assert name_map.height == result.codebook.height
    assert name_map.filter(pl.col("column") == "age_at_diagnosis_years")["xpt_name"].to_list() != []


def test_short_names_are_unique_readable_and_within_the_limit():
    names = ["patient_id", "age_at_diagnosis_years", "differentiation_moderate_poor", "differentiation_score",
             "differentiation", "first_local_recurrence_date", "first_local_recurrence_days", "ab", "9lives_long_name"]
    short = short_names(names, 8)
    assert list(short) == names
    assert all(len(s) <= 8 and (s[0].isalpha() or s[0] == "_") for s in short.values())
    assert len({s.lower() for s in short.values()}) == len(names)
    assert short["ab"] == "ab" and short["age_at_diagnosis_years"] == "agatdiye"
    assert short_names(names, 8) == short  # deterministic


def test_no_identifier_in_any_exported_file(exported):
    result, _ = exported
    ids = identifiers()
    values = []
    for fmt, files in result.files.items():
        for path in files.values():
            if fmt in ("xpt", "dta"):
                frame, _ = pyreadstat.read_xport(str(path)) if fmt == "xpt" else pyreadstat.read_dta(str(path))
                values += [str(v) for col in frame.columns for v in frame[col].tolist()]
            else:
                frame = pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path, infer_schema=False)
                values += [str(v) for col in frame.columns for v in frame[col].drop_nulls().to_list()]
            raw = path.read_bytes()
            for kind in ("local_id", "birth_date"):
                assert not {i for i in ids[kind] if i.encode() in raw}, (path, kind)
    assert len(values) > 5000
    assert scan_values(values, ids) == {}


def test_the_cli_exports_the_chosen_formats(report_warehouse, tmp_path):
    from clms_etl.cli import app

    runner = CliRunner()
    outcome = runner.invoke(app, ["export", "analysis", str(tmp_path / "out"), "--format", "csv", "--format", "dta",
                                  "--url", report_warehouse.url])
    assert outcome.exit_code == 0, outcome.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "codebook.csv", "csv", "dta"]
    assert (tmp_path / "out" / "csv" / "survival.csv").is_file()
    bad = runner.invoke(app, ["export", "analysis", str(tmp_path / "bad"), "--format", "sav", "--url",
                              report_warehouse.url])
    assert bad.exit_code != 0 and "unknown format sav" in bad.output


def test_numbers_stata_cannot_hold_are_written_as_extended_missing_values_not_a_failed_export(tmp_path):
    """A 100,000-patient night stopped in the Stata export: an infinite statistic made readstat refuse
    the file ("numeric value outside the range"). +inf / -inf and doubles beyond Stata's range are
    now the extended missing values .i / .j; NaN stays the plain missing value; the rest round-trips."""
    from clms_etl.report.exports import DTA_INFINITY, DTA_MAX_DOUBLE
    from clms_etl.warehouse import Warehouse
    from tests.warehouse.helpers import one_result_row

    spec = RESULT_TABLES["univariate_cox"]
    row = one_result_row(spec)
    frame = pl.concat([row] * 4).with_columns(
        level=pl.Series(["a", "b", "c", "d"]), firth_lr_chi2=pl.Series([math.inf, 1.5, float("nan"), 1e308]),
        firth_ci_lower=pl.Series([-math.inf, 0.25, -1e308, 2.0]))
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        wh.replace_results({"univariate_cox": frame}, run_id="test")
        result = export_analysis(wh, tmp_path / "out", formats=("dta", "parquet"))
    stata_name = dict(zip(*pl.read_csv(result.outdir / "codebook.csv").filter(pl.col("dataset") == "univariate_cox")
                          .select("column", "stata_name").to_dict(as_series=False).values(), strict=True))
    data, meta = pyreadstat.read_dta(str(result.files["dta"]["univariate_cox"]), user_missing=True)
    assert data[stata_name["firth_lr_chi2"]].tolist()[:2] == [DTA_INFINITY[1], 1.5]
    assert math.isnan(data[stata_name["firth_lr_chi2"]][2]) and data[stata_name["firth_lr_chi2"]][3] == "i"
    assert data[stata_name["firth_ci_lower"]].tolist() == [DTA_INFINITY[-1], 0.25, "j", 2.0]
    assert 1e308 > DTA_MAX_DOUBLE
    # Parquet keeps the warehouse's values as they are
    assert pl.read_parquet(result.files["parquet"]["univariate_cox"])["firth_lr_chi2"][0] == math.inf
    assert "extended missing value `.i`" in result.readme.read_text()
