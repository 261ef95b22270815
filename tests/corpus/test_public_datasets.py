"""The whole nightly on data the product did not write: R's ``lung`` delivered by Montpellier, then
GBSG2 delivered by Lyon, every clinical field they do not have left empty.

Each stage runs through Dagster as the platform runs it: one instance on disk (a DAGSTER_HOME with
the project's ``deploy/dagster.local.yaml``: SQLite storage, the ``warehouse`` pool), the code
location's local resources read from the ``CLMS_*`` variables pointed at the test's drop folder,
DuckDB file and outputs; the centre's import job (its partition), then the nightly refresh. What
is held against the product comes from elsewhere:
the rows are counted in the files by :func:`tests.corpus.count_rows`, the survival figures are
R's published ones for ``lung`` and lifelines' own fits on the datasets as shipped.
"""

from __future__ import annotations

import re

import dagster as dg
import duckdb
import numpy as np
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test

from assets.resources import SurvivalSettings, local_resources
from tests import corpus
from tests.r_oracle import run_r
from tests.test_dagster_platform import dagster_home, platform_defs

DAYS_PER_MONTH = 30.4375
pytestmark = pytest.mark.slow


def _run(instance, *centres: str, **survival) -> list[dg.ExecuteInProcessResult]:
    """Each centre's import job (its partition), then the nightly refresh: the runs, in that order."""
    defs = platform_defs({**local_resources(), "survival": SurvivalSettings(**survival)})
    runs = [defs.resolve_job_def("import_centre").execute_in_process(
        partition_key=centre, instance=instance, raise_on_error=False) for centre in centres]
    return [*runs, defs.resolve_job_def("nightly_refresh").execute_in_process(instance=instance, raise_on_error=False)]


def _sql(tmp, query: str) -> list[tuple]:
    con = duckdb.connect(str(tmp / "warehouse.duckdb"), read_only=True)
    try:
        return con.sql(query).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def lung_stage(tmp_path_factory):
    """Montpellier delivers ``lung`` (228 patients); survival population: every patient (no minimum
    follow-up), so that the figures are R's on the whole dataset."""
    tmp = tmp_path_factory.mktemp("public")
    drop = tmp / "drop"
    corpus.write_montpellier(drop, corpus.lung_cases())
    with pytest.MonkeyPatch.context() as env:
        for name, value in {"CLMS_INCOMING": drop, "CLMS_OUTPUTS": tmp / "outputs",
                            "CLMS_WAREHOUSE_URL": f"duckdb:///{tmp / 'warehouse.duckdb'}",
                            "DAGSTER_HOME": dagster_home(tmp)}.items():
            env.setenv(name, str(value))
        for name in ("CLMS_DEPLOYMENT", "CLMS_PSEUDONYM_KEY_FILE"):  # the key: the suite's test key
            env.delenv(name, raising=False)
        with dg.DagsterInstance.get() as instance:
            imported, nightly = _run(instance, "montpellier", min_follow_up_months=0.0)
            yield tmp, drop, instance, imported, nightly


@pytest.fixture(scope="module")
def gbsg2_stage(lung_stage):
    """Then Lyon delivers GBSG2 (686 patients with tumour size and grade) and the nightly runs with
    the study's rule (3 months of follow-up)."""
    tmp, drop, instance, _, _ = lung_stage
    corpus.write_lyon(drop, corpus.gbsg2_cases())
    imported, nightly = _run(instance, "lyon")
    return tmp, drop, instance, imported, nightly


@pytest.fixture(scope="module")
def four_centres_stage(gbsg2_stage):
    """Then Nice delivers Rossi's data (an xlsx that records pain for most charts) and Nîmes ``larynx``
    (Mac Roman text, no sex): four centres, four formats, one nightly."""
    tmp, drop, instance, _, _ = gbsg2_stage
    corpus.write_nice(drop, corpus.rossi_cases())
    corpus.write_nimes(drop, corpus.larynx_cases())
    *imports, nightly = _run(instance, "nice", "nimes")
    return tmp, drop, imports, nightly


def _all_checks_pass(result: dg.ExecuteInProcessResult) -> None:
    assert result.success, [str(e.event_specific_data.error) for e in result.all_events
                            if e.event_type_value == "STEP_FAILURE"]
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [(c.asset_key.to_user_string(), c.check_name, c.metadata)
                                                       for c in checks if not c.passed]


def _accounting_matches_the_files(tmp, drop, centre: str) -> None:
    delivery = drop / centre / corpus.DELIVERY_DATE.isoformat()
    in_files = corpus.count_rows(delivery)
    counted = {t: (read, accepted, quarantined) for t, read, accepted, quarantined in _sql(
        tmp, "SELECT c.table_name, c.rows_read, c.rows_accepted, c.rows_quarantined FROM delivery_count c "
             f"JOIN delivery d ON d.delivery_id = c.delivery_id WHERE d.centre = '{centre}'")}
    for table, n in in_files.items():
        read, accepted, quarantined = counted.get(table, (0, 0, 0))
        assert read == n, (table, read, n)
        assert accepted + quarantined == n, (table, accepted, quarantined, n)
        owned = f"centre = '{centre}'" if table == "patient" else \
            f"patient_id IN (SELECT patient_id FROM patient WHERE centre = '{centre}')"
        [(in_warehouse,)] = _sql(tmp, f"SELECT COUNT(*) FROM {table} WHERE {owned}")
        assert in_warehouse == accepted, (table, in_warehouse, accepted)


def test_lung_delivered_by_montpellier_imports_and_the_nightly_refresh_passes_every_check(lung_stage):
    _, _, instance, imported, nightly = lung_stage
    _all_checks_pass(imported)
    _all_checks_pass(nightly)
    # the runs are the instance's, as the UI shows them
    assert {instance.get_run_by_id(r.run_id).status for r in (imported, nightly)} == {dg.DagsterRunStatus.SUCCESS}
    assert instance.get_materialized_partitions(dg.AssetKey("centre_warehouse")) == {"montpellier"}


def test_lung_rows_read_are_the_files_rows_accepted_plus_quarantined(lung_stage):
    tmp, drop, *_ = lung_stage
    _accounting_matches_the_files(tmp, drop, "montpellier")


def test_lung_overall_survival_equals_r_survfit_on_lung(lung_stage):
    tmp, *_ = lung_stage
    rows = {(e, t): (s, lo, hi, n, ev) for e, t, s, lo, hi, n, ev in _sql(
        tmp, "SELECT estimate, time_months, survival, ci_lower, ci_upper, n, events FROM analytics.survival_estimate "
             "WHERE endpoint = 'OS' AND group_variable = 'all' AND ci_transform = 'log'")}
    median = next(v for (e, _), v in rows.items() if e == "median")
    [(median_months,)] = [(t,) for (e, t) in rows if e == "median"]
    # R: survfit(Surv(time, status) ~ 1, lung): n 228, events 165, median 310 [285, 363] days
    assert median[3:] == (228, 165)
    assert median_months * DAYS_PER_MONTH == pytest.approx(310)
    assert (median[1] * DAYS_PER_MONTH, median[2] * DAYS_PER_MONTH) == (pytest.approx(285), pytest.approx(363))
    # R: summary(fit, times = 365): 0.409 [0.345, 0.486] (no death between day 365 and 365.25)
    survival, lower, upper, *_ = rows[("survival_12m", 12.0)]
    assert (survival, lower, upper) == (pytest.approx(0.409, abs=5e-4), pytest.approx(0.345, abs=5e-4),
                                        pytest.approx(0.486, abs=5e-4))
    # and the whole curve is lifelines' on the dataset as shipped
    time, status = corpus.lung_frame()
    expected = KaplanMeierFitter().fit(time / DAYS_PER_MONTH, status).survival_function_.iloc[:, 0]
    curve = dict(_sql(tmp, "SELECT time_months, survival FROM analytics.survival_curve "
                           "WHERE endpoint = 'OS' AND group_variable = 'all' AND ci_transform = 'log'"))
    assert len(curve) == len(expected)
    assert np.allclose([curve[t] for t in sorted(curve)], expected.to_numpy())


def test_lung_sex_in_table2_equals_r_survdiff_and_coxph(lung_stage):
    tmp, *_ = lung_stage
    [(hr, lower, upper, p, n_level, n_ref)] = _sql(
        tmp, "SELECT hr, hr_ci_lower, hr_ci_upper, logrank_p, n_level, n_reference FROM analytics.univariate_analysis "
             "WHERE endpoint = 'OS' AND predictor = 'sex'")
    # R: survdiff(Surv(time, status) ~ sex, lung): chisq 10.3, p 0.00131; coxph: female vs male 0.588 [0.424, 0.816]
    assert (n_level, n_ref) == (138, 90)
    assert p == pytest.approx(0.00131, abs=1e-5)
    assert (hr, lower, upper) == (pytest.approx(1 / 0.588, rel=2e-3), pytest.approx(1 / 0.816, rel=2e-3),
                                  pytest.approx(1 / 0.424, rel=2e-3))


def test_lung_sex_cox_checks_stored_by_the_pipeline_equal_r_on_lung(lung_stage):
    """The LR test, the PH test and the Firth row the nightly refresh stored for sex, against R's own lung."""
    tmp, *_ = lung_stage
    [(lr, global_lr, ph, ph_p, firth_hr, lower, upper)] = _sql(
        tmp, "SELECT lr_chi2, global_lr_chi2, ph_chisq, ph_p, firth_hr, firth_ci_lower, firth_ci_upper "
             "FROM analytics.univariate_cox WHERE endpoint = 'OS' AND predictor = 'sex'")
    r = run_r("""
fit <- coxph(Surv(time, status) ~ I(sex == 1), data = lung)
z <- cox.zph(fit)
emit(list(lr = unname(summary(fit)$logtest[1]), zph = unname(z$table[1, "chisq"]), zph_p = unname(z$table[1, "p"])))
""")
    assert lr == global_lr == pytest.approx(r["lr"], rel=1e-5)
    assert (ph, ph_p) == pytest.approx((r["zph"], r["zph_p"]), rel=1e-4)
    assert lower < firth_hr < upper and firth_hr == pytest.approx(1 / 0.588, rel=0.02)  # Firth ~ ML with 165 deaths


def test_lung_predictors_the_centre_does_not_record_are_left_out_with_the_reason(lung_stage):
    tmp, *_ = lung_stage
    rows = _sql(tmp, "SELECT predictor, estimable, reason, n FROM analytics.univariate_analysis WHERE endpoint = 'OS'")
    unknown = {p: (estimable, reason, n) for p, estimable, reason, n in rows if p not in ("age", "sex")}
    assert unknown and all(not e and n == 0 and "no known value" in r for e, r, n in unknown.values()), unknown
    groups = {g for (g,) in _sql(tmp, "SELECT DISTINCT group_variable FROM analytics.survival_estimate")}
    assert groups == {"all", "age", "sex"}  # no Kaplan-Meier rows for nobody


def test_lung_table1_says_not_recorded_instead_of_absent_and_the_report_names_the_centre(lung_stage):
    tmp, *_ = lung_stage
    pain = dict(_sql(tmp, "SELECT item, n FROM analytics.table1 WHERE variable = 'pain'"))
    assert pain == {"present": 0, "absent": 0, "not_recorded": 228}
    stats = _sql(tmp, "SELECT item, value, display FROM analytics.table1 WHERE variable = 'tumour_size_cm' "
                      "AND kind = 'statistic'")
    assert stats and all(v is None and d == "not recorded" for _, v, d in stats)
    html = (tmp / "outputs" / "report" / "clms_report.html").read_text(encoding="utf-8")
    assert "Absent</td><td>228" not in html.replace("\n", "").replace(" ", "")
    assert "Items a centre does not record" in html
    section = html.split("Items a centre does not record", 1)[1]
    assert "montpellier" in section.lower() and "Pain" in section


def test_gbsg2_delivered_by_lyon_imports_and_the_nightly_refresh_passes_every_check(gbsg2_stage):
    _, _, _, imported, nightly = gbsg2_stage
    _all_checks_pass(imported)
    _all_checks_pass(nightly)


def test_gbsg2_rows_read_are_the_files_rows_accepted_plus_quarantined(gbsg2_stage):
    tmp, drop, *_ = gbsg2_stage
    _accounting_matches_the_files(tmp, drop, "lyon")
    _accounting_matches_the_files(tmp, drop, "montpellier")  # the other centre's rows untouched


def test_gbsg2_grade_hazard_ratio_equals_lifelines_on_the_lyon_patients(gbsg2_stage):
    tmp, *_ = gbsg2_stage
    # the default survival population: only patients censored before 3 months are left out
    cases = [c for c in corpus.gbsg2_cases() if c.time_days / DAYS_PER_MONTH >= 3 or c.died]
    lung = [(t, s) for t, s in zip(*corpus.lung_frame()) if t / DAYS_PER_MONTH >= 3 or s]
    # the survival population pools both centres: grade is known in Lyon only, so its comparison is Lyon's
    import pandas as pd

    frame = pd.DataFrame({"time": [c.time_days / DAYS_PER_MONTH for c in cases], "event": [int(c.died) for c in cases],
                          "high": [int(c.grade >= 2) for c in cases]})
    expected = CoxPHFitter().fit(frame, "time", "event").summary.loc["high"]
    [(hr, n_level, n_ref, p)] = _sql(tmp, "SELECT hr, n_level, n_reference, logrank_p FROM analytics.univariate_analysis "
                                          "WHERE endpoint = 'OS' AND predictor = 'grade_ii_iii'")
    assert (n_level, n_ref) == (int(frame["high"].sum()), len(cases) - int(frame["high"].sum()))
    assert hr == pytest.approx(expected["exp(coef)"], rel=1e-6)
    hi, lo = frame[frame.high == 1], frame[frame.high == 0]
    assert p == pytest.approx(logrank_test(hi.time, lo.time, hi.event, lo.event).p_value, rel=1e-6)
    [(n,)] = _sql(tmp, "SELECT n FROM analytics.survival_estimate WHERE endpoint = 'OS' AND group_variable = 'all' "
                       "AND estimate = 'median' AND ci_transform = 'log'")
    assert n == len(cases) + len(lung)


def test_table1_size_classes_come_from_the_centre_that_records_size(gbsg2_stage):
    tmp, *_ = gbsg2_stage
    sizes = dict(_sql(tmp, "SELECT item, n FROM analytics.table1 WHERE variable = 'tumour_size_cm' AND kind = 'count'"))
    lyon = [c.size_mm / 10 for c in corpus.gbsg2_cases()]
    assert sizes["ge_3"] == sum(s >= 3 for s in lyon) and sizes["lt_1"] == sum(s < 1 for s in lyon)
    assert sizes["ns"] == 228  # lung's patients: Montpellier delivered no size
    unrecorded = set(_sql(tmp, "SELECT variable, n FROM analytics.table1 WHERE item = 'not_recorded'"))
    assert ("pain", 228 + 686) in unrecorded  # neither centre records pain: nobody is said free of pain


def test_four_centres_in_four_formats_import_and_the_nightly_refresh_passes_every_check(four_centres_stage):
    _, _, imports, nightly = four_centres_stage
    for imported in imports:
        _all_checks_pass(imported)
    _all_checks_pass(nightly)


def test_four_centres_rows_read_are_the_files_rows_accepted_plus_quarantined(four_centres_stage):
    tmp, drop, *_ = four_centres_stage
    for centre in ("nice", "nimes", "lyon", "montpellier"):
        _accounting_matches_the_files(tmp, drop, centre)


def test_four_centres_overall_survival_is_lifelines_on_the_pooled_datasets(four_centres_stage):
    tmp, *_ = four_centres_stage
    times, events = [], []
    for cases in (corpus.lung_cases(), corpus.gbsg2_cases(), corpus.rossi_cases(), corpus.larynx_cases()):
        for t, e in zip(*corpus.dataset_frame(cases)):
            # the default survival population: only patients censored before 3 months are left out
            if t / DAYS_PER_MONTH >= 3 or e:
                times.append(t / DAYS_PER_MONTH)
                events.append(e)
    expected = KaplanMeierFitter().fit(times, events).survival_function_.iloc[:, 0]
    curve = dict(_sql(tmp, "SELECT time_months, survival FROM analytics.survival_curve "
                           "WHERE endpoint = 'OS' AND group_variable = 'all' AND ci_transform = 'log'"))
    assert np.allclose([curve[t] for t in sorted(curve)], expected.to_numpy())
    [(n, deaths)] = _sql(tmp, "SELECT n, events FROM analytics.survival_estimate WHERE endpoint = 'OS' "
                              "AND group_variable = 'all' AND estimate = 'median' AND ci_transform = 'log'")
    assert (n, deaths) == (len(times), sum(events))


def test_table1_counts_a_blank_chart_as_absent_only_in_the_centre_that_records_the_sign(four_centres_stage):
    tmp, *_ = four_centres_stage
    rossi = corpus.rossi_cases()
    pain = dict(_sql(tmp, "SELECT item, n FROM analytics.table1 WHERE variable = 'pain'"))
    assert pain == {"present": sum(c.pain is True for c in rossi),
                    "absent": sum(c.pain is not True for c in rossi),  # Nice's blank charts: the paper's convention
                    "not_recorded": 228 + 686 + 90}  # the three centres that record no pain
    sex = dict(_sql(tmp, "SELECT item, n FROM analytics.table1 WHERE variable = 'sex'"))
    assert sex["ns"] == 90  # larynx gives no sex: not specified, never guessed
    html = (tmp / "outputs" / "report" / "clms_report.html").read_text(encoding="utf-8")
    section = html.split("Items a centre does not record", 1)[1].split("</table>", 1)[0]
    rows = dict(re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td>", section))
    assert {c for c, items in rows.items() if "Pain" in items.split("; ")} == {"lyon", "montpellier", "nimes"}
    assert "Sex" in rows["nimes"].split("; ") and "FNCLCC grade" not in rows["lyon"].split("; ")
