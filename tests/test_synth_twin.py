"""The twin's files carry the published cohort (read back with standard readers only)."""

from __future__ import annotations

import datetime as dt
import hashlib
import statistics
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter

from clms_etl.synth.generate import generate
from clms_etl.synth.twin import build_twin
from tests import oracle
from tests.conftest import TWIN_DATE
from tests.paper import PAPER

TABLE1 = PAPER["table1"]
DATE = TWIN_DATE


@pytest.fixture(scope="module")
def twin_dir(twin_drop) -> Path:
    """The twin written once for the session (tests/conftest.py: seed 0, delivered on DATE)."""
    return twin_drop


@pytest.fixture(scope="module")
def patients(twin_dir) -> list[dict]:
    rows = oracle.read_all(twin_dir, DATE.isoformat())
    return [p for centre in rows.values() for p in centre]


def counts(patients, field, mapping=None) -> dict:
    c = Counter(p[field] for p in patients)
    return {(mapping or {}).get(k, k): v for k, v in c.items()}


def test_twin_has_79_patients_over_four_centres(twin_dir):
    rows = oracle.read_all(twin_dir, DATE.isoformat())
    assert sum(len(v) for v in rows.values()) == PAPER["cohort"]["included"] == 79
    assert all(len(v) > 0 for v in rows.values())


@pytest.mark.parametrize(
    ("field", "published", "mapping"),
    [
        ("sex", TABLE1["sex"], None),
        ("immunosuppression", TABLE1["immunosuppression"], {True: "yes", False: "no"}),
        ("site", TABLE1["primary_site"], {"upper_limb": "upper_limb_shoulder", "lower_limb": "lower_limb_hip", None: "ns"}),
        ("presentation", TABLE1["clinical_presentation"], {None: "ns"}),
        ("pain", TABLE1["pain"], {True: "present", False: "absent"}),
        ("on_scar", TABLE1["occurred_on_scar"], {True: "present", False: "absent"}),
        ("grade", TABLE1["fnclcc_grade"], {1: "I", 2: "II", 3: "III", None: "ns"}),
        ("ulceration", TABLE1["histological_ulceration"], {True: "yes", False: "no"}),
        ("invasion", TABLE1["invasion"], {None: "ns"}),
        ("differentiation", TABLE1["differentiation"], {1: "well", 2: "moderate", 3: "poor", None: "ns"}),
    ],
)
def test_table1_categories_are_exactly_the_published_counts(patients, field, published, mapping):
    expected = {k: v for k, v in published.items() if not k.startswith("_")}
    assert counts(patients, field, mapping) == expected


def test_table1_binned_variables_are_exactly_the_published_counts(patients):
    def size_class(v):
        return "ns" if v is None else "lt_1" if v < 1 else "1_to_2_9" if v < 3 else "ge_3"

    def mitotic_class(v):
        return "ns" if v is None else "le_9" if v <= 9 else "10_to_19" if v <= 19 else "gt_19"

    def necrosis(v):
        return "ns" if v is None else "absent" if v == 0 else "present"

    def ki67(v):
        return "ns" if v is None else "le_10" if v <= 10 else "gt_10"

    def resection(v):
        return "ns" if v is None else "R0" if v == "R0" else "R1_R2"

    for field, fn, key, keys in [
        ("size_cm", size_class, "tumour_size_cm", ("lt_1", "1_to_2_9", "ge_3", "ns")),
        ("mitoses", mitotic_class, "mitotic_index_per_10hpf", ("le_9", "10_to_19", "gt_19", "ns")),
        ("necrosis", necrosis, "necrosis", ("present", "absent", "ns")),
        ("ki67", ki67, "ki67_percent", ("le_10", "gt_10", "ns")),
        ("resection", resection, "resection_status", ("R0", "R1_R2", "ns")),
    ]:
        got = Counter(fn(p[field]) for p in patients)
        assert dict(got) == {k: TABLE1[key][k] for k in keys}, field


def test_table1_continuous_summaries_match_the_paper(patients):
    ages = [p["age"] for p in patients]
    q1, med, q3 = np.percentile(ages, [25, 50, 75])
    assert (med, q1, q3) == (TABLE1["age_years"]["median"], TABLE1["age_years"]["q1"], TABLE1["age_years"]["q3"])
    assert statistics.mean(ages) == pytest.approx(TABLE1["age_years"]["mean"], abs=0.1)
    assert statistics.stdev(ages) == pytest.approx(TABLE1["age_years"]["sd"], abs=0.2)
    sizes = [p["size_cm"] for p in patients if p["size_cm"] is not None]
    assert statistics.mean(sizes) == pytest.approx(TABLE1["tumour_size_cm"]["mean"], abs=0.01)
    assert (min(sizes), max(sizes)) == (TABLE1["tumour_size_cm"]["min"], TABLE1["tumour_size_cm"]["max"])
    ki = [p["ki67"] for p in patients if p["ki67"] is not None]
    assert np.percentile(ki, [25, 50, 75]).tolist() == [10, 25, 30]
    assert statistics.mean(ki) == pytest.approx(TABLE1["ki67_percent"]["mean"], abs=0.1)
    delays = [p["delay"] for p in patients if p["delay"] is not None]
    assert len(delays) == TABLE1["consultation_delay_months"]["n_known"]
    assert statistics.mean(delays) == pytest.approx(TABLE1["consultation_delay_months"]["mean"], abs=0.05)
    assert (min(delays), max(delays)) == (0.5, 180)


def test_margins_match_the_published_means_and_ranges(patients):
    treatment = PAPER["treatment"]
    for field, key in [("proposed", "margin_cm_proposed_at_board"), ("clinical", "margin_cm_clinical_surgeon"),
                       ("histological", "margin_cm_histological")]:
        values = [p[field] for p in patients if p[field] is not None]
        assert statistics.mean(values) == pytest.approx(treatment[key]["mean"], abs=0.01), field
        assert (min(values), max(values)) == pytest.approx((treatment[key]["min"], treatment[key]["max"])), field
    for p in patients:
        if p["clinical"] is not None and p["histological"] is not None:
            assert p["histological"] <= p["clinical"] + 1e-9


# --- outcomes (on the truth frames: the warehouse tests re-derive them from the files) ---------

def _endpoint_frame(seed: int, kinds: list[str], cause: str | None = None) -> pl.DataFrame:
    t = build_twin(seed)
    e = t.event
    last = e.group_by("patient_key").agg(pl.col("event_date").max().alias("last"))
    hit = e.filter(pl.col("event_kind").is_in(kinds))
    if cause:
        hit = hit.filter(pl.col("death_cause") == cause)
    hit = hit.group_by("patient_key").agg(pl.col("event_date").min().alias("hit"))
    months = 365.25 / 12
    return (
        t.patient.select("patient_key", "diagnosis_date")
        .join(last, on="patient_key", how="left")
        .join(hit, on="patient_key", how="left")
        .join(t.tumour, on="patient_key")
        .with_columns(
            follow_up=(pl.col("last") - pl.col("diagnosis_date")).dt.total_days() / months,
            time=(pl.coalesce("hit", "last") - pl.col("diagnosis_date")).dt.total_days() / months,
            event=pl.col("hit").is_not_null(),
        )
        .filter(pl.col("follow_up") >= 3)
    )


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize(
    ("endpoint", "kinds", "cause"),
    [("OS", ["death"], None), ("DSS", ["death"], "clms"),
     ("PFS", ["death", "local_recurrence", "metastasis"], None), ("RFS", ["metastasis"], None)],
)
def test_kaplan_meier_lands_within_003_of_the_published_estimates(seed, endpoint, kinds, cause):
    frame = _endpoint_frame(seed, kinds, cause)
    assert frame.height == PAPER["cohort"]["survival_analysis_n"]
    km = KaplanMeierFitter().fit(frame["time"].to_numpy(), frame["event"].to_numpy())
    for key, value in PAPER["survival"][endpoint].items():
        if key.startswith("at_"):
            estimate = float(km.survival_function_at_times(int(key[3:])).iloc[0])
            assert estimate == pytest.approx(value, abs=0.03), (endpoint, key)


def test_outcome_counts_are_the_published_ones():
    t = build_twin(0)
    e, s = t.event, t.surgery.filter(pl.col("surgery_no") == 1)
    r = dict(zip(s["patient_key"], s["resection_status"]))
    lr = e.filter(pl.col("event_kind") == "local_recurrence")["patient_key"].unique().to_list()
    mets = e.filter(pl.col("event_kind") == "metastasis")
    deaths = e.filter(pl.col("event_kind") == "death")
    outcomes = PAPER["outcomes"]
    assert len(lr) == outcomes["local_recurrence"]["n"]
    assert sum(r[k] == "R0" for k in lr) == outcomes["local_recurrence"]["after_R0"]
    metastatic = mets["patient_key"].unique().to_list()
    assert len(metastatic) == outcomes["metastasis"]["n"]
    assert sum(r[k] == "R0" for k in metastatic) == outcomes["metastasis"]["after_R0"]
    assert dict(Counter(mets["metastasis_site"])) == outcomes["metastasis"]["sites"]
    assert deaths.height == outcomes["deaths"]
    assert (deaths["death_cause"] == "clms").sum() == outcomes["deaths_from_clms"]
    assert t.patient["vital_status"].is_in(["alive", "dead"]).sum() == outcomes["vital_status_known"]
    alive_metastatic = t.patient.filter(pl.col("patient_key").is_in(metastatic) & (pl.col("vital_status") == "alive"))
    assert alive_metastatic.height == outcomes["metastatic_patients_alive_at_study_end"]


@pytest.mark.parametrize("seed", [0, 3])
def test_hazard_ratios_for_relapse_point_in_the_published_direction(seed):
    frame = _endpoint_frame(seed, ["local_recurrence", "metastasis"])
    for name, predictor in [
        ("grade II/III", pl.col("fnclcc_grade") >= 2),
        ("moderate/poor differentiation", pl.col("differentiation_score") >= 2),
        ("mitoses > 10", pl.col("mitoses_per_10hpf") > 10),
    ]:
        data = frame.select(pl.col("time"), pl.col("event").cast(pl.Int8), predictor.cast(pl.Int8).alias("x")).drop_nulls()
        cox = CoxPHFitter().fit(data.to_pandas(), "time", "event")
        assert cox.hazard_ratios_["x"] > 2, name


def test_mean_clinical_margin_is_larger_without_relapse():
    t = build_twin(0)
    relapsed = t.event.filter(pl.col("event_kind").is_in(["local_recurrence", "metastasis"]))["patient_key"].unique()
    s = t.surgery.filter(pl.col("surgery_no") == 1).with_columns(relapse=pl.col("patient_key").is_in(relapsed.implode()))
    means = dict(s.group_by("relapse").agg(pl.col("clinical_margin_cm").mean()).iter_rows())
    published = PAPER["treatment"]["mean_clinical_margin_cm_by_relapse"]
    assert means[False] == pytest.approx(published["no_relapse"], abs=0.05)
    assert means[True] == pytest.approx(published["relapse_or_metastasis"], abs=0.05)


def test_fnclcc_grade_agrees_with_its_components_wherever_all_are_known(patients):
    from clms_etl.grading import fnclcc_grade

    checked = 0
    for p in patients:
        if None not in (p["grade"], p["differentiation"], p["mitoses"], p["necrosis"]):
            assert fnclcc_grade(p["differentiation"], p["mitoses"], p["necrosis"]) == p["grade"]
            checked += 1
    assert checked > 40


# --- determinism -------------------------------------------------------------------------------

def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path, twin_dir):
    generate(tmp_path / "again", seed=0, delivery_date=DATE)
    assert _tree_digest(tmp_path / "again") == _tree_digest(twin_dir)


def test_another_seed_gives_other_files_but_the_same_marginals(tmp_path, twin_dir):
    generate(tmp_path / "other", seed=1, delivery_date=DATE)
    a, b = _tree_digest(tmp_path / "other"), _tree_digest(twin_dir)
    charts = [k for k in b if not k.startswith("molecular/") and "DataDictionary" not in k]
    assert len(charts) == 4 and set(charts) <= a.keys()
    assert all(a[k] != b[k] for k in charts)
    other = [p for c in oracle.read_all(tmp_path / "other", DATE.isoformat()).values() for p in c]
    assert Counter(p["grade"] for p in other) == Counter({1: 49, 2: 16, 3: 7, None: 7})


def test_grade_expression_is_null_when_a_component_is_unknown():
    from clms_etl.grading import fnclcc_grade_expr

    frame = pl.DataFrame({"differentiation_score": [1, 1, None, 2], "mitoses_per_10hpf": [None, 3, 3, 25],
                          "necrosis_score": [0, 0, 0, 1]})
    assert frame.select(fnclcc_grade_expr().alias("g"))["g"].to_list() == [None, 1, None, 3]
