"""Table 1 when a centre records nothing for a characteristic: 'not recorded', never 'absent'."""

from __future__ import annotations

import polars as pl

from clms_etl.survival.table1 import NO_KNOWN_VALUE, NOT_RECORDED, table1, table1_display, unrecorded_items

COLUMNS = {
    "patient_id": pl.String, "centre": pl.String, "age_at_diagnosis_years": pl.Float64, "sex": pl.String,
    "immunosuppression": pl.Boolean, "site": pl.String, "presentation": pl.String, "pain": pl.Boolean,
    "on_scar": pl.Boolean, "size_cm": pl.Float64, "fnclcc_grade": pl.Int32, "histological_ulceration": pl.Boolean,
    "invasion": pl.String, "mitoses_per_10hpf": pl.Int32, "necrosis_present": pl.Boolean,
    "differentiation_score": pl.Int32, "ki67_percent": pl.Float64, "resection_status": pl.String,
}


def _patients() -> pl.DataFrame:
    """Centre A records pain (one yes, one no, one blank chart); centre B records nothing but age and sex."""
    rows = [
        {"patient_id": "a1", "centre": "a", "pain": True, "size_cm": 1.5},
        {"patient_id": "a2", "centre": "a", "pain": False, "size_cm": 4.0},
        {"patient_id": "a3", "centre": "a", "pain": None},
        {"patient_id": "b1", "centre": "b"},
        {"patient_id": "b2", "centre": "b"},
    ]
    frame = pl.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], schema=COLUMNS)
    return frame.with_columns(age_at_diagnosis_years=pl.lit(60.0), sex=pl.lit("male"))


def test_a_sign_a_centre_records_nothing_for_is_not_recorded_and_a_blank_where_it_is_recorded_is_absent():
    t1 = table1(_patients())
    pain = dict(t1.filter(pl.col("variable") == "pain").select("item", "n").iter_rows())
    # the paper's convention in centre a (blank chart = absent), 'not recorded' for centre b's two patients
    assert pain == {"present": 1, "absent": 2, NOT_RECORDED: 2}
    scar = dict(t1.filter(pl.col("variable") == "occurred_on_scar").select("item", "n").iter_rows())
    assert scar == {"present": 0, "absent": 0, NOT_RECORDED: 5}


def test_when_every_centre_records_a_sign_table1_has_no_not_recorded_row():
    t1 = table1(_patients().filter(pl.col("centre") == "a"))
    assert NOT_RECORDED not in t1.filter(pl.col("variable") == "pain")["item"].to_list()


def test_a_statistic_with_no_known_value_is_null_and_says_not_recorded():
    t1 = table1(_patients())
    ki67 = t1.filter((pl.col("variable") == "ki67_percent") & (pl.col("kind") == "statistic"))
    assert ki67["value"].is_null().all() and set(ki67["display"]) == {NO_KNOWN_VALUE}
    display = dict(table1_display(t1).filter(pl.col("Characteristic").str.starts_with("M") & (pl.col("Level") == 1))
                   .select("Characteristic", "Value").rows())
    assert NO_KNOWN_VALUE in display.values()
    size = t1.filter((pl.col("variable") == "tumour_size_cm") & (pl.col("item") == "mean"))
    assert size["value"].item() == 2.75  # centre a's two sizes


def test_unrecorded_items_name_the_centre_and_the_characteristic():
    items = unrecorded_items(_patients())
    by_centre = {c: set(g["variable"]) for (c,), g in items.group_by("centre")}
    assert "pain" in by_centre["b"] and "pain" not in by_centre["a"]
    assert "tumour_size_cm" in by_centre["b"] and "ki67_percent" in by_centre["a"]
    assert "sex" not in by_centre["a"] | by_centre["b"]
    assert items.filter(pl.col("centre") == "b")["patients"].unique().to_list() == [2]


def test_unrecorded_items_counted_over_blocks_of_patients_are_those_of_all_patients_at_once():
    # the report reads the patients a block at a time: a centre split across blocks records what any block does
    patients = _patients()
    whole = unrecorded_items(patients)
    assert whole.height and whole.filter(pl.col("centre") == "a").height
    for size in (1, 2, 3):
        blocks = (patients.slice(start, size) for start in range(0, patients.height, size))
        assert unrecorded_items(blocks).equals(whole), size
