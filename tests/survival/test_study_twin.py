"""The study's results recomputed on the twin warehouse land on the published ones (clms_paper.json)."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl.report.sections import Section
from clms_etl.survival import study
from clms_etl.survival.endpoints import EXCLUSION_REASONS
from clms_etl.survival.study import UNIVARIATE_ENDPOINTS, analyse, load_inputs, report_sections
from clms_etl.survival.table1 import NOT_RECORDED
from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.schema import RESULT_TABLES
from tests.survival.conftest import PAPER

STATISTICS = {"median", "q1", "q3", "mean", "sd", "min", "max", "n_known"}
# clms_paper.json: "the mean [mitotic index] equals the Ki67 mean; treat the mean as doubtful"
DOUBTFUL = {("mitotic_index_per_10hpf", "mean"), ("mitotic_index_per_10hpf", "sd")}


def _published_table1():
    for variable, content in PAPER["table1"].items():
        if variable == "n":
            yield "patients", "n", content
            continue
        for item, value in content.items():
            if not item.startswith("_"):
                yield variable, item, value


# The paper counts an unmentioned sign as absent. The registry does so only in a centre that records
# the sign: Nîmes' charts have no immunosuppression field, so its 15 patients are "not recorded",
# and the paper's "no" is the registry's "no" + "not recorded".
NOT_RECORDED_AS_PUBLISHED = {("immunosuppression", "no"): 15}


def test_table1_equals_the_published_table_count_for_count(twin_results):
    t1 = {(r["variable"], r["item"]): r for r in twin_results.table1.iter_rows(named=True)}
    for variable, item, published in _published_table1():
        row = t1[(variable, item)]
        if item in STATISTICS:
            if (variable, item) in DOUBTFUL:
                continue
            # statistics as printed (1-2 decimals); the twin's Ki67 SD is 15.5 for a printed 15.4
            assert row["value"] == pytest.approx(published, rel=0.01, abs=0.01), (variable, item)
        else:
            not_recorded = NOT_RECORDED_AS_PUBLISHED.get((variable, item), 0)
            assert row["n"] + not_recorded == published, (variable, item)
            if not_recorded:
                assert t1[(variable, NOT_RECORDED)]["n"] == not_recorded, variable
    # every count row of a variable is in the paper (or is the not-recorded row above): nothing invented or lost
    published_items = {(v, i) for v, i, _ in _published_table1()} | {(v, NOT_RECORDED) for v, _ in NOT_RECORDED_AS_PUBLISHED}
    counts = twin_results.table1.filter(pl.col("kind") == "count")
    assert {(v, i) for v, i in counts.select("variable", "item").iter_rows()} <= published_items


def test_table1_percentages_use_all_patients_except_size_classes(twin_results):
    t1 = twin_results.table1
    male = t1.filter((pl.col("variable") == "sex") & (pl.col("item") == "male")).row(0, named=True)
    assert (male["denominator"], male["display"]) == (79, "57 (72.2 %)")
    small = t1.filter((pl.col("variable") == "tumour_size_cm") & (pl.col("item") == "lt_1")).row(0, named=True)
    assert small["denominator"] == 61  # the paper's footnote: % of the 61 patients with a known size
    display = twin_results.table1_display()
    assert display.columns == ["Characteristic", "Value", "Level"]
    assert ("Median [IQR]", "70.0 [57.0-79.0]", 1) in display.rows()  # an item, indented by the layout
    assert ("Primary site", "", 0) in display.rows()


def test_kaplan_meier_estimates_lie_within_three_points_of_the_published_ones(twin_results):
    est = twin_results.survival_estimate.filter((pl.col("group_variable") == "all") & (pl.col("ci_transform") == "log"))
    compared = 0
    for endpoint, points in PAPER["survival"].items():
        if endpoint.startswith("_") or endpoint == "printed_medians_months":
            continue
        for key, published in points.items():
            if key.startswith("_"):
                continue
            months = int(key.removeprefix("at_"))
            row = est.filter((pl.col("endpoint") == endpoint) & (pl.col("estimate") == f"survival_{months}m"))
            assert row.height == 1 and row["n"].item() == PAPER["cohort"]["survival_analysis_n"]
            assert row["survival"].item() == pytest.approx(published, abs=0.03), (endpoint, months)
            assert row["ci_lower"].item() <= row["survival"].item() <= row["ci_upper"].item()
            compared += 1
    assert compared == 8


def test_every_estimate_exists_in_both_ci_transforms_and_names_its_transform(twin_results):
    est = twin_results.survival_estimate
    assert set(est["ci_transform"]) == {"log", "log-log"}
    per = est.group_by("ci_transform").len().sort("ci_transform")["len"].to_list()
    assert per[0] == per[1]
    both = est.filter((pl.col("estimate") == "survival_60m") & (pl.col("group_variable") == "all")
                      & (pl.col("endpoint") == "PFS"))
    log, loglog = (both.filter(pl.col("ci_transform") == t).row(0, named=True) for t in ("log", "log-log"))
    assert log["survival"] == loglog["survival"] and log["ci_lower"] != loglog["ci_lower"]
    medians = est.filter((pl.col("estimate") == "median") & (pl.col("group_variable") == "all"))
    assert medians.height == 12  # 6 endpoints x 2 transforms; the paper: medians not reached
    assert medians.filter(pl.col("endpoint") == "OS")["time_months"].null_count() == 2


def test_twin_exclusions_are_the_eleven_patients_with_short_or_no_follow_up(twin_results):
    ex = twin_results.survival_exclusion
    assert ex.height == PAPER["cohort"]["excluded_from_survival_short_follow_up"]
    assert set(ex["reason"]) <= {"no_follow_up_date", "short_follow_up"}
    assert ex["patient_id"].str.starts_with("P").all()  # pseudonyms


def test_table2_has_every_predictor_for_both_endpoints_and_finds_the_published_associations(twin_results):
    u = twin_results.univariate_analysis
    assert set(u["endpoint"]) == set(UNIVARIATE_ENDPOINTS)
    predictors = {"age", "sex", "site", "size", "grade_ii_iii", "differentiation_moderate_poor", "mitoses_gt_10",
                  "necrosis", "invasion", "ulceration", "ki67", "resection", "clinical_margin"}
    for endpoint in UNIVARIATE_ENDPOINTS:
        assert set(u.filter(pl.col("endpoint") == endpoint)["predictor"]) == predictors
    rm = u.filter(pl.col("endpoint") == "RMFS")
    published = PAPER["table2_univariate_recurrence_or_metastasis"]
    for predictor, key in (("grade_ii_iii", "fnclcc_grade_II_III_vs_I"),
                           ("differentiation_moderate_poor", "differentiation_moderate_poor_vs_well"),
                           ("mitoses_gt_10", "mitotic_index_gt_10_vs_le_10")):
        row = rm.filter(pl.col("predictor") == predictor).row(0, named=True)
        assert row["estimable"] and row["logrank_p"] < 0.05, predictor
        assert row["hr_ci_lower"] <= published[key]["hr"] <= row["hr_ci_upper"], predictor
    for predictor in ("age", "sex"):  # "age, sex ... had no association"
        assert rm.filter(pl.col("predictor") == predictor)["logrank_p"].item() > 0.05
    # no event among the ulcerated tumours: reported, not an absurd HR
    ulcer = rm.filter(pl.col("predictor") == "ulceration").row(0, named=True)
    assert ulcer["events_level"] == 0 and not ulcer["estimable"] and ulcer["hr"] is None and ulcer["reason"]
    t2 = twin_results.table2_display()
    assert t2.height == rm.height and "Local recurrence or metastasis: HR (95 % CI)" in t2.columns
    assert t2.filter(pl.col("Predictor") == "Histological ulceration")[
        "Local recurrence or metastasis: HR (95 % CI)"].item().startswith("not estimable")
    # levels read as labels, never as codes ("upper_limb vs head_neck")
    sites = t2.filter(pl.col("Predictor") == "Primary site")
    assert "Upper limb vs Head and neck" in sites["Comparison"].to_list()
    assert not any("_" in v for v in t2.select(pl.exclude("Predictor")).to_numpy().ravel() if isinstance(v, str))


def test_clinical_margin_is_smaller_with_relapse_as_published(twin_results):
    m = twin_results.group_comparison.row(0, named=True)
    published = PAPER["treatment"]["mean_clinical_margin_cm_by_relapse"]
    assert m["mean_without"] == pytest.approx(published["no_relapse"], abs=0.01)
    assert m["mean_with"] == pytest.approx(published["relapse_or_metastasis"], abs=0.01)
    assert m["test"].startswith("Welch") and m["p"] < 0.05


def test_median_follow_up_by_reverse_kaplan_meier_with_its_quartiles(twin_results):
    f = {r["method"]: r for r in twin_results.follow_up.iter_rows(named=True)}
    rkm = f["reverse_kaplan_meier"]
    assert rkm["n"] == 68 and rkm["q1_months"] < rkm["median_months"] < rkm["q3_months"]
    assert rkm["median_ci_lower"] <= rkm["median_months"] <= rkm["median_ci_upper"]
    assert f["observed"]["n"] == 68


def test_result_tables_go_through_the_warehouse_unchanged(twin_results, twin_warehouse_url, tmp_path):
    import shutil

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(twin_warehouse_url.removeprefix("duckdb:///"), copy)
    frames = twin_results.result_tables()
    assert set(frames) == {t.name for t in RESULT_TABLES.values() if t.name in frames}
    with Warehouse(f"duckdb:///{copy}") as wh:
        written = wh.replace_results(frames, run_id="test")
        for name, frame in frames.items():
            assert written[name] == frame.height
            back = wh.results(name)
            key = list(RESULT_TABLES[name].primary_key)
            expected = RESULT_TABLES[name].conform(frame, "test").sort(key)
            assert back.sort(key).select(expected.columns).equals(expected.cast(back.select(expected.columns).schema)), name


def test_figure2_is_written_as_png_and_svg_byte_for_byte_reproducibly(twin_results, tmp_path):
    first = twin_results.write_figures(tmp_path / "a")
    second = twin_results.write_figures(tmp_path / "b")
    assert first["figure2_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert first["figure2_png"].read_bytes() == second["figure2_png"].read_bytes()
    svg = first["figure2_svg"].read_text()
    assert svg == second["figure2_svg"].read_text() and "<dc:date>" not in svg
    assert svg.count("At risk") == 4  # one numbers-at-risk row under each panel


def test_report_sections_carry_table1_table2_figure2_and_the_competing_risks(twin_results, tmp_path):
    figures = twin_results.write_figures(tmp_path)
    sections = report_sections(twin_results, figures)
    assert all(isinstance(s, Section) for s in sections)
    tables = {t.key: t for s in sections for t in s.tables}
    assert {"table1", "table2", "survival", "cumulative_incidence", "fine_gray"} <= set(tables)
    assert "log transform" in tables["survival"].note
    assert {"ph_tests", "continuous", "multivariable"} <= set(tables)
    figures_shown = {f.key: f for s in sections for f in s.figures}
    assert set(figures_shown) == {"figure2", "ph_rmfs", "ph_os", "figure_competing"}
    assert all(f.png.is_file() and f.svg.is_file() for f in figures_shown.values())
    # the survival population rule is named in the report
    assert "paper: the study's rule" in sections[0].text
    assert "Survival population: paper" in tables["cumulative_incidence"].note


def test_the_report_counts_the_excluded_patients_per_centre_and_reason_and_lists_a_few(twin_results, tmp_path):
    sections = report_sections(twin_results, twin_results.write_figures(tmp_path))
    tables = {t.key: t for s in sections for t in s.tables}
    excluded = twin_results.survival_exclusion
    counted = {(r["Centre"], r["Reason"]): r["Patients"] for r in tables["exclusion_reasons"].frame.iter_rows(named=True)}
    expected: dict = {}
    for row in excluded.iter_rows(named=True):  # counted here row by row, not by the report's group_by
        key = (row["centre"], EXCLUSION_REASONS[row["reason"]])
        expected[key] = expected.get(key, 0) + 1
    assert counted == expected and sum(counted.values()) == excluded.height == 11
    assert tables["exclusions"].frame["patient_id"].to_list() == excluded["patient_id"].to_list()


def test_a_registry_excluding_more_patients_than_a_report_can_list_gets_the_counts_not_the_list(twin_results,
                                                                                                 monkeypatch):
    # a national registry: 146,535 patients outside the population of the 1,000,000-patient night, listed in
    # the report one by one (32 MB of HTML); the list stays in the result table and the exports
    monkeypatch.setattr(study, "EXCLUSION_LIST_MAX_ROWS", twin_results.survival_exclusion.height - 1)
    sections = report_sections(twin_results)
    tables = {t.key: t for s in sections for t in s.tables}
    assert "exclusions" not in tables
    assert tables["exclusion_reasons"].frame["Patients"].sum() == twin_results.survival_exclusion.height
    assert "analytics.survival_exclusion" in tables["exclusion_reasons"].note
    shown = " ".join(str(v) for s in sections for t in s.tables for row in t.frame.iter_rows() for v in row)
    assert not any(p in shown for p in twin_results.survival_exclusion["patient_id"])


def test_report_adapter_shows_the_stored_results_exactly_as_computed(twin_warehouse_url, twin_results, tmp_path):
    import shutil

    from clms_etl.survival.report_sections import sections
    from clms_etl.survival.run import write_outputs

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(twin_warehouse_url.removeprefix("duckdb:///"), copy)
    with Warehouse(f"duckdb:///{copy}") as wh:
        write_outputs(wh, tmp_path / "analysis", "test", population="paper")
        built = sections(wh, tmp_path / "report")
    assert [s.key for s in built] == ["cohort", "survival", "univariate", "cox_checks", "competing_risks"]
    # every table and text read back from the result tables is the one the analysis computed
    computed = report_sections(twin_results)
    assert [s.text for s in built] == [s.text for s in computed]
    for shown, expected in zip([t for s in built for t in s.tables], [t for s in computed for t in s.tables],
                               strict=True):
        assert shown.key == expected.key and shown.frame.equals(expected.frame), shown.key
    # Figure 2 redrawn from the stored curves is the analysis's own drawing, byte for byte
    for name in ("figure2_kaplan_meier.svg", "figure_competing_risks.svg", "ph_schoenfeld_rmfs.svg",
                 "ph_schoenfeld_os.svg"):
        assert (tmp_path / "report" / "figures" / name).read_bytes() == (
            tmp_path / "analysis" / "figures" / name).read_bytes(), name


def test_the_analysis_is_a_function_of_the_patients_not_of_the_order_the_warehouse_returns_them(
        twin_warehouse_url, twin_results):
    # a database returns a view's rows in any order (DuckDB's parallel hash joins do, night to night):
    # every result table must be the same to the last bit whatever that order
    with Warehouse(twin_warehouse_url) as wh:
        patient_summary, survival = load_inputs(wh)
    shuffled = analyse(patient_summary.sample(fraction=1.0, shuffle=True, seed=11),
                       survival.sample(fraction=1.0, shuffle=True, seed=12), population="paper")
    for name, expected in twin_results.result_tables().items():
        assert shuffled.result_tables()[name].equals(expected), name
