"""Endpoints and the survival population: the rule is a parameter, every excluded patient has a reason."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clms_etl.survival.endpoints import ENDPOINTS, endpoint_frame, exclusions, survival_population
from clms_etl.survival.study import load_inputs
from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.analytics import DAYS_PER_MONTH

D0 = dt.date(2015, 1, 1)


def _summary(rows: list[tuple[str, dt.date | None, int | None]], died: tuple[str, ...] = ()) -> pl.DataFrame:
    """patient_summary-like rows: (patient, diagnosis date, days to last contact); ``died``: dead at last contact."""
    return pl.DataFrame(
        [{"patient_id": p, "centre": "nice", "diagnosis_date": d,
          "last_contact_date": None if days is None or d is None else d + dt.timedelta(days=days)}
         for p, d, days in rows],
        schema={"patient_id": pl.String, "centre": pl.String, "diagnosis_date": pl.Date, "last_contact_date": pl.Date},
    ).with_columns(death_date=pl.when(pl.col("patient_id").is_in(list(died))).then(pl.col("last_contact_date")))


def test_every_patient_out_of_the_survival_population_is_listed_with_its_reason():
    s = _summary([("A", D0, 400), ("B", None, None), ("C", D0, None), ("D", D0, -5), ("E", D0, 60), ("F", D0, 92)])
    out = exclusions(s)
    assert dict(out.select("patient_id", "reason").iter_rows()) == {
        "B": "no_diagnosis_date", "C": "no_follow_up_date", "D": "follow_up_before_diagnosis", "E": "short_follow_up"}
    assert out.filter(pl.col("patient_id") == "E")["detail"].item() == (
        "alive at last contact, follow-up 2.0 months < 3.0 months (censored_before_minimum rule)")
    assert sorted(survival_population(s)["patient_id"]) == ["A", "F"]  # 92 days = 3.02 months


def test_the_default_population_keeps_early_deaths_and_the_paper_preset_drops_them():
    s = _summary([("A", D0, 400), ("E", D0, 60), ("F", D0, 92), ("G", D0, 30)], died=("G",))
    assert sorted(survival_population(s)["patient_id"]) == ["A", "F", "G"]  # G died at 1 month: an event, kept
    assert sorted(survival_population(s, population="paper")["patient_id"]) == ["A", "F"]
    paper = exclusions(s, population="paper")
    assert paper.filter(pl.col("patient_id") == "G")["detail"].item() == (
        "died, follow-up 1.0 months < 3.0 months (paper rule)")
    with pytest.raises(ValueError, match="censored_before_minimum"):
        survival_population(s, population="landmark")


def test_the_minimum_follow_up_is_a_parameter():
    s = _summary([("A", D0, 400), ("E", D0, 60), ("F", D0, 92)])
    assert sorted(survival_population(s, min_follow_up_months=0)["patient_id"]) == ["A", "E", "F"]
    assert sorted(survival_population(s, min_follow_up_months=6)["patient_id"]) == ["A"]
    assert exclusions(s, min_follow_up_months=6)["min_follow_up_months"].unique().to_list() == [6.0]


@pytest.fixture(scope="module")
def twin_endpoints(twin_warehouse_url):
    with Warehouse(twin_warehouse_url) as wh:
        patient_summary = load_inputs(wh)[0]
        survival = wh.read_sql("SELECT * FROM analytics.survival")  # the whole view: its days beside the months
    return patient_summary, survival, endpoint_frame(patient_summary, survival, population="paper")


def test_twin_survival_population_is_the_studys_68_patients(twin_endpoints):
    patient_summary, _, frames = twin_endpoints
    assert frames["endpoint"].unique().sort().to_list() == sorted(ENDPOINTS)
    assert frames.group_by("endpoint").len()["len"].unique().to_list() == [68]
    assert exclusions(patient_summary, population="paper").height == 79 - 68


def test_recurrence_or_metastasis_endpoint_is_the_first_of_local_recurrence_and_metastasis(twin_endpoints):
    _, _, frames = twin_endpoints
    wide = frames.pivot(on="endpoint", index="patient_id", values=["time_months", "event"])
    assert (wide["event_RMFS"] == (wide["event_LRFS"] | wide["event_RFS"])).all()
    both = wide.filter((pl.col("event_LRFS") == 1) & (pl.col("event_RFS") == 1))
    first = both.select(pl.min_horizontal("time_months_LRFS", "time_months_RFS")).to_series()
    assert both.height > 0 and (both["time_months_RMFS"] - first).abs().max() < 1e-9
    one = wide.filter((pl.col("event_LRFS") == 1) & (pl.col("event_RFS") == 0))
    assert (one["time_months_RMFS"] - one["time_months_LRFS"]).abs().max() < 1e-9  # SQL vs polars division
    alive_without_relapse = wide.filter((pl.col("event_RMFS") == 0) & (pl.col("event_OS") == 0))
    assert alive_without_relapse.height > 0  # censored at last contact, as OS
    assert (alive_without_relapse["time_months_RMFS"] - alive_without_relapse["time_months_OS"]).abs().max() < 1e-9
    assert wide["event_RMFS"].sum() == 16


def test_months_are_days_over_30_4375(twin_endpoints):
    patient_summary, survival, frames = twin_endpoints
    os_ = frames.filter(pl.col("endpoint") == "OS").join(
        survival.filter(pl.col("endpoint") == "OS").select("patient_id", "time_days"), on="patient_id")
    assert (os_["time_months"] - os_["time_days"] / DAYS_PER_MONTH).abs().max() < 1e-9


def test_an_empty_warehouse_gives_an_empty_cohort_said_plainly_not_a_crash(tmp_path):
    from clms_etl.survival.study import EmptyCohort, analyse

    with Warehouse(f"duckdb:///{tmp_path / 'empty.duckdb'}") as wh:
        wh.create()
        patient_summary, survival = load_inputs(wh)
    with pytest.raises(EmptyCohort, match=r"no patient in the survival population .* among the 0 included"):
        analyse(patient_summary, survival)


def test_on_r_lung_the_paper_rule_inflates_one_year_survival_and_the_default_does_not():
    # R's lung (lifelines ships it): the default keeps the early deaths and gives R's S(365 days) = 0.409;
    # the paper's rule drops everyone followed < 3 months, deaths included, and S(365) rises to 0.464
    from lifelines.datasets import load_lung

    from clms_etl.survival.km import kaplan_meier

    lung = pl.from_pandas(load_lung()).with_row_index("i")
    summary = lung.select(
        patient_id=pl.format("L{}", "i"), centre=pl.lit("lyon"), diagnosis_date=pl.lit(D0),
        last_contact_date=pl.lit(D0) + pl.duration(days="time"),
        death_date=pl.when(pl.col("status") == 1).then(pl.lit(D0) + pl.duration(days="time")))
    one_year = {}
    for population in ("censored_before_minimum", "paper"):
        kept = survival_population(summary, population=population)["patient_id"]
        data = lung.filter(pl.format("L{}", "i").is_in(kept.implode()))
        one_year[population] = kaplan_meier(data["time"].to_numpy(), data["status"].to_numpy()).at(365)["survival"]
    assert one_year["censored_before_minimum"] == pytest.approx(0.409, abs=5e-4)
    assert one_year["paper"] == pytest.approx(0.464, abs=5e-4)
