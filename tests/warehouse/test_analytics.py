"""The analytics views: one row per patient / per patient and endpoint, right flags, on both backends."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.analytics import DAYS_PER_MONTH, ENDPOINTS, VIEWS
from tests.warehouse.synthetic import SyntheticDelivery
from tests.warehouse.helpers import DAY1, delivery_files, frame, load_twin, pid

DIAGNOSIS = dt.date(2015, 1, 1)
# Kaplan-Meier estimates published by the study (clms_paper.json, "survival"), months -> survival.
PUBLISHED_KM = {
    "OS": {24: 0.92, 60: 0.86}, "DSS": {24: 0.93, 60: 0.91}, "PFS": {24: 0.77, 96: 0.61}, "RFS": {24: 0.89, 60: 0.89},
}


def _d(days: int) -> dt.date:
    return DIAGNOSIS + dt.timedelta(days=days)


def tiny_cohort() -> SyntheticDelivery:
    p = {k: pid("nice", k) for k in "ABCDEFG"}
    patients = [
        {"patient_id": p[k], "centre": "nice", "sex": sex, "age_at_diagnosis_years": 60, "diagnosis_date": DIAGNOSIS,
         "diagnosis_date_precision": "day", "vital_status": vital, "record_complete": True}
        for k, sex, vital in [("A", "male", "alive"), ("B", "female", "dead"), ("C", "male", "dead"),
                              ("D", "male", "alive"), ("E", "female", None), ("F", "male", "dead"), ("G", "male", "alive")]
    ]
    tumours = [
        {"patient_id": p["A"], "fnclcc_grade": 1, "differentiation_score": 1, "mitoses_per_10hpf": 3, "necrosis_score": 0,
         "size_cm": 0.8, "site": "trunk"},
        {"patient_id": p["B"], "fnclcc_grade": 3, "differentiation_score": 3, "mitoses_per_10hpf": 12, "necrosis_score": 1,
         "size_cm": 3.0},
        {"patient_id": p["C"], "fnclcc_grade_computed": 2, "differentiation_score": 2, "mitosis_class": ">=20", "size_cm": 1.0},
        {"patient_id": p["D"], "fnclcc_grade": 2, "mitoses_per_10hpf": 5, "mitoses_is_upper_bound": True},
        {"patient_id": p["F"], "mitoses_per_10hpf": 15, "mitoses_is_upper_bound": True},
        {"patient_id": p["G"], "mitosis_class": "10-19"},
    ]
    surgeries = [
        {"patient_id": p["A"], "surgery_no": 1, "surgery_date": _d(10), "surgery_kind": "primary_excision",
         "resection_status": "R1", "clinical_margin_cm": 1.0},
        {"patient_id": p["A"], "surgery_no": 2, "surgery_date": _d(40), "surgery_kind": "re_excision", "resection_status": "R0"},
        {"patient_id": p["B"], "surgery_no": 1, "surgery_date": _d(5), "surgery_kind": "primary_excision", "resection_status": "R0"},
    ]
    events = [
        (p["A"], 1, "last_news", 400, None, None),
        (p["B"], 1, "local_recurrence", 100, None, None), (p["B"], 2, "metastasis", 200, "lung", None),
        (p["B"], 3, "metastasis", 200, "bone", None), (p["B"], 4, "death", 300, None, "clms"),
        (p["C"], 1, "death", 250, None, "other"),
        (p["D"], 1, "last_news", 60, None, None),
        (p["F"], 1, "metastasis", 150, "skin", None), (p["F"], 2, "last_news", 500, None, None),
        (p["F"], 3, "death", 600, None, "unknown"),
        (p["G"], 1, "last_news", 100, None, None),
    ]
    event_rows = [{"patient_id": a, "event_no": n, "event_kind": k, "event_date": _d(t), "metastasis_site": s,
                   "death_cause": c} for a, n, k, t, s, c in events]
    return SyntheticDelivery("nice", DAY1, {
        "patient": frame("patient", patients), "tumour": frame("tumour", tumours),
        "surgery": frame("surgery", surgeries), "event": frame("event", event_rows)})


# patient -> endpoint -> (event, days)
EXPECTED = {
    "A": {"OS": (0, 400), "DSS": (0, 400), "PFS": (0, 400), "RFS": (0, 400), "LRFS": (0, 400)},
    "B": {"OS": (1, 300), "DSS": (1, 300), "PFS": (1, 100), "RFS": (1, 200), "LRFS": (1, 100)},
    "C": {"OS": (1, 250), "DSS": (0, 250), "PFS": (1, 250), "RFS": (0, 250), "LRFS": (0, 250)},
    "D": {e: (0, 60) for e in ENDPOINTS},
    "E": {e: (0, None) for e in ENDPOINTS},
    "F": {"OS": (1, 600), "DSS": (0, 600), "PFS": (1, 150), "RFS": (1, 150), "LRFS": (0, 600)},
    "G": {e: (0, 100) for e in ENDPOINTS},
}


@pytest.fixture
def tiny(warehouse_url, tmp_path):
    with Warehouse(warehouse_url) as wh:
        wh.create()
        wh.load_delivery("nice", DAY1, delivery_files(tmp_path, "nice", DAY1), tiny_cohort(), "t", expectations=False)
        yield wh


def test_survival_one_row_per_patient_and_endpoint_with_the_right_flags(tiny):
    names = {pid("nice", k): k for k in EXPECTED}
    rows = tiny.read_sql("SELECT patient_id, endpoint, event, time_days, time_months, in_survival_population, end_date "
                      "FROM analytics.survival")
    assert rows.height == len(EXPECTED) * len(ENDPOINTS)
    assert rows.select("patient_id", "endpoint").is_unique().all()
    for patient_id, endpoint, event, days, months, in_pop, end in rows.iter_rows():
        k = names[patient_id]
        assert (event, days) == EXPECTED[k][endpoint], (k, endpoint)
        if days is None:
            assert months is None and end is None
        else:
            assert months == pytest.approx(days / DAYS_PER_MONTH)
            assert end == _d(days)
        assert in_pop == (k in "ABCFG"), k  # D: 60 days < 3 months; E: no follow-up


def test_patient_summary_one_row_per_patient_with_the_study_variables(tiny):
    s = {r["patient_id"]: r for r in tiny.read_sql("SELECT * FROM analytics.patient_summary").iter_rows(named=True)}
    assert len(s) == 7
    a, b, c, d, e, f, g = (s[pid("nice", k)] for k in "ABCDEFG")
    assert (a["grade_label"], a["grade_ii_iii"], a["differentiation"], a["mitoses_gt_10"]) == ("I", False, "well", False)
    assert (a["size_class"], a["resection_status"], a["r0"], a["final_resection_status"]) == ("<1", "R1", False, "R0")
    assert a["clinical_margin_cm"] == 1.0 and a["primary_surgery_date"] == _d(10)
    assert a["follow_up_days"] == 400 and a["follow_up_months"] == pytest.approx(400 / DAYS_PER_MONTH)
    assert (b["grade_ii_iii"], b["mitoses_gt_10"], b["necrosis_present"], b["size_class"]) == (True, True, True, ">=3")
    assert (b["local_recurrence"], b["metastasis"], b["relapse"], b["death"], b["death_cause"]) == (True, True, True, True, "clms")
    assert b["metastasis_sites"] == "bone,lung" and b["first_metastasis_date"] == _d(200)
    assert (c["fnclcc_grade"], c["fnclcc_grade_source"], c["mitoses_gt_10"], c["size_class"]) == (2, "computed", True, "1-2.9")
    assert (c["relapse"], c["death_cause"], c["last_contact_date"]) == (False, "other", _d(250))
    assert d["mitoses_gt_10"] is False and d["in_survival_population"] is False  # "< 5" is below 10
    assert e["site"] is None and e["follow_up_days"] is None and e["in_survival_population"] is False
    assert e["relapse"] is False and e["grade_ii_iii"] is None
    assert f["mitoses_gt_10"] is None  # "< 15": cannot tell
    assert f["last_contact_date"] == _d(600) and f["death_cause"] == "unknown"
    assert g["mitoses_gt_10"] is None and g["in_survival_population"] is True  # class 10-19; 100 days >= 3 months


def test_every_view_exposes_its_documented_columns(tiny):
    for view in VIEWS:
        assert tiny.read_sql(f"SELECT * FROM {view.qualified}").columns == [c for c, _ in view.columns]


@pytest.fixture(scope="module")
def twin_duckdb(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    with Warehouse(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        wh.create()
        load_twin(wh, root)
        yield wh


def test_twin_cohort_reproduces_the_published_counts(twin_duckdb):
    s = twin_duckdb.read_sql("SELECT * FROM analytics.patient_summary")
    assert s.height == 79 and s["in_survival_population"].sum() == 68
    assert s.filter(s["sex"] == "male").height == 57
    assert s["grade_label"].value_counts().sort("grade_label").rows() == [(None, 7), ("I", 49), ("II", 16), ("III", 7)]
    assert s["size_class"].value_counts().sort("size_class").rows() == [(None, 18), ("1-2.9", 33), ("<1", 18), (">=3", 10)]
    assert s["local_recurrence"].sum() == 12 and s["metastasis"].sum() == 7 and s["death"].sum() == 8
    assert s.filter(s["death_cause"] == "clms").height == 6
    survival = twin_duckdb.read_sql("SELECT endpoint, SUM(event) AS events, COUNT(*) AS n FROM analytics.survival "
                                 "WHERE in_survival_population GROUP BY endpoint")
    assert dict(survival.select("endpoint", "events").rows()) == {"OS": 8, "DSS": 6, "PFS": 18, "RFS": 7, "LRFS": 12}


def test_kaplan_meier_on_the_views_lands_on_the_published_estimates(twin_duckdb):
    """The twin is tuned to the paper: the endpoint definitions of the views must give its curves back."""
    from lifelines import KaplanMeierFitter

    for endpoint, points in PUBLISHED_KM.items():
        data = twin_duckdb.read_sql("SELECT time_months, event FROM analytics.survival "
                                 f"WHERE endpoint = '{endpoint}' AND in_survival_population")
        km = KaplanMeierFitter().fit(data["time_months"].to_numpy(), data["event"].to_numpy())
        for months, value in points.items():
            assert float(km.predict(float(months))) == pytest.approx(value, abs=0.03), (endpoint, months)


def test_gene_profile_reproduces_the_published_molecular_series(twin_duckdb):
    g = twin_duckdb.read_sql("SELECT case_no, gene, cn_event, cn_coverage, mutated, biallelic_inactivation, centre "
                          "FROM analytics.gene_profile")
    cases = lambda f: set(g.filter(f)["case_no"].to_list())  # noqa: E731
    rb1 = g["gene"] == "RB1"
    tp53 = g["gene"] == "TP53"
    assert len(cases(rb1 & g["cn_event"].is_in(["homozygous_deletion", "heterozygous_deletion"]))) == 5
    assert len(cases(tp53 & g["cn_event"].is_in(["heterozygous_deletion", "cn_loh"]))) == 4
    assert len(cases((g["gene"] == "MYOCD") & (g["cn_event"] == "amplification"))) == 2
    assert len(cases(tp53 & g["mutated"])) == 2
    assert len(cases(g["biallelic_inactivation"])) == 4
    dmd = g.filter((g["gene"] == "DMD") & (g["cn_event"] != "neutral"))
    assert dmd.select("cn_event", "cn_coverage").rows() == [("heterozygous_deletion", "partial")]
    assert g["case_no"].n_unique() == 11  # 14 cases, 3 not contributory
    assert g["centre"].null_count() == 0  # every sample's patient is in the warehouse


@pytest.mark.parametrize("min_follow_up_months", [3.0, 10.0])
def test_the_views_survival_population_is_the_analysis_one_for_every_rule(tiny, min_follow_up_months):
    # one definition: the analysis stores its rule, the views read it; B and C died at 300 and 250 days
    from clms_etl.survival.endpoints import survival_population
    from clms_etl.survival.study import load_inputs
    from clms_etl.warehouse.analytics import POPULATIONS

    names = {pid("nice", k): k for k in "ABCDEFG"}
    kept = {}
    for name, rule in POPULATIONS.items():
        tiny.replace_results({"survival_population_rule": rule.frame(min_follow_up_months)}, run_id="test")
        patient_summary, _ = load_inputs(tiny)
        view = patient_summary.filter(pl.col("in_survival_population"))["patient_id"]
        analysis = survival_population(patient_summary, min_follow_up_months, name)["patient_id"]
        assert sorted(view) == sorted(analysis), (name, min_follow_up_months)
        kept[name] = "".join(sorted(names[p] for p in view))
    if min_follow_up_months == 10.0:  # 10 months: the early deaths B and C are the difference
        assert kept == {"paper": "AF", "censored_before_minimum": "ABCF"}
    else:
        assert kept == {"paper": "ABCFG", "censored_before_minimum": "ABCFG"}


def test_a_view_computed_from_a_copy_of_the_view_it_is_built_on_is_the_view(warehouse_url, tmp_path):
    """view_select: survival read from a copy of patient_summary (what a step that copies both views does,
    so that patient_summary is computed once) gives the view's rows and types; a view built on no copy is
    read as it is."""
    from clms_etl.warehouse.analytics import view_select

    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        assert view_select("survival", {}) == "SELECT * FROM analytics.survival"
        derived = view_select("survival", {"patient_summary": "summary_copy"})
        assert "analytics.patient_summary" not in derived and "summary_copy" in derived
        with wh.engine.connect() as conn:
            conn.exec_driver_sql("CREATE TEMPORARY TABLE summary_copy AS SELECT * FROM analytics.patient_summary")
            reads = []
            for sql in ("SELECT * FROM analytics.survival", derived):  # each read before the next runs
                result = conn.exec_driver_sql(sql)
                reads.append((list(result.keys()), sorted(result.fetchall(), key=repr)))
            conn.rollback()
        view, copy = reads
        assert len(view[1]) == 5 * 79 and copy == view
