"""k-anonymity and local suppression (clms_etl.disclosure) on hand-built frames whose classes are known."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl.disclosure import (
    QUASI_IDENTIFIERS, DisclosureBlocked, age_band, age_band_floor, equivalence_classes, k_anonymity, suppress_until_k)

# 10 patients: (F, 60-69, 2010, trunk, a) x3, (M, 60-69, 2010, trunk, a) x4, (M, 70-79, 2011, head_neck, b) x2,
# and one with no site (its own class)
PATIENTS = pl.DataFrame({
    "patient_id": [f"P{i}" for i in range(10)],
    "sex": ["female"] * 3 + ["male"] * 7,
    "age_band": ["60-69"] * 7 + ["70-79"] * 2 + ["60-69"],
    "diagnosis_year": [2010] * 7 + [2011] * 2 + [2010],
    "site": ["trunk"] * 7 + ["head_neck"] * 2 + [None],
    "centre": ["a"] * 7 + ["b"] * 2 + ["a"],
    "size_cm": [1.0] * 10,  # not a quasi-identifier: ignored
})


def test_equivalence_classes_count_patients_sharing_every_quasi_identifier_and_null_is_a_class_of_its_own():
    classes = equivalence_classes(PATIENTS, QUASI_IDENTIFIERS)
    assert sorted(classes["size"].to_list()) == [1, 2, 3, 4]
    assert classes.columns == [*QUASI_IDENTIFIERS, "size"]
    k = k_anonymity(PATIENTS, QUASI_IDENTIFIERS, threshold=3)
    assert (k.k, k.classes, k.records, k.records_below, k.passes) == (1, 4, 10, 3, False)
    assert k.quasi_identifiers == QUASI_IDENTIFIERS
    # only the quasi-identifiers present count: by sex alone, 3 women and 7 men
    by_sex = k_anonymity(PATIENTS.select("patient_id", "sex"), QUASI_IDENTIFIERS, threshold=3)
    assert (by_sex.k, by_sex.classes, by_sex.quasi_identifiers, by_sex.passes) == (3, 2, ("sex",), True)


def test_no_patient_is_trivially_anonymous():
    k = k_anonymity(PATIENTS.clear(), QUASI_IDENTIFIERS, threshold=5)
    assert (k.k, k.records, k.passes) == (0, 0, True)
    frame, k = suppress_until_k(PATIENTS.clear(), ("centre", "sex"), 5)
    assert frame.is_empty() and k.passes


def test_age_bands_are_ten_years_with_90_and_over_as_one_band():
    ages = pl.DataFrame({"age": [26, 29, 30, 69, 89, 90, 93, None]}, schema={"age": pl.Int16})
    got = ages.select(age_band(pl.col("age")).alias("band"), age_band_floor(pl.col("age")).alias("floor"))
    assert got["band"].to_list() == ["20-29", "20-29", "30-39", "60-69", "80-89", "90+", "90+", None]
    assert got["floor"].to_list() == [20, 20, 30, 60, 80, 90, 90, None]


def test_local_suppression_blanks_the_least_important_quasi_identifier_in_small_groups_first():
    frame, k = suppress_until_k(PATIENTS, ("diagnosis_year", "centre", "site", "age_band", "sex"), threshold=3)
    assert k.passes and k.k >= 3
    # pass 1 blanks the year of the 3 patients in groups < 3 (2 in 70-79, 1 without site): not enough;
    # pass 2 their centre; pass 3 their site: (M, 60-69/70-79, no site) still apart; pass 4 their age band
    assert k.suppressed == {"diagnosis_year": 3, "centre": 3, "site": 2, "age_band": 3, "sex": 0}
    assert frame.filter(pl.col("patient_id").is_in(["P0", "P1", "P2", "P3", "P4", "P5", "P6"])).equals(PATIENTS.head(7))
    assert frame["sex"].to_list() == PATIENTS["sex"].to_list()  # the most important is kept
    assert equivalence_classes(frame, QUASI_IDENTIFIERS)["size"].min() >= 3
    assert "suppressed: 3 diagnosis_year, 3 centre, 2 site, 3 age_band values" in k.summary()


def test_suppression_that_cannot_reach_k_fails_with_a_message_naming_k_the_threshold_and_how_to_change_it():
    frame, k = suppress_until_k(PATIENTS.head(4), ("centre", "sex"), threshold=5)
    assert not k.passes and (k.k, k.threshold, k.records_below) == (4, 5, 4)
    error = DisclosureBlocked("Test export", k, "use --k-threshold N")
    message = str(error)
    assert message.startswith("Test export not written: k-anonymity 4 < threshold 5 over centre, sex")
    assert "use --k-threshold N" in message and "4 of 4 patients" in message
    with pytest.raises(DisclosureBlocked):
        raise error


def test_when_blanking_leaves_a_group_too_small_the_smallest_other_group_is_blanked_into_it():
    # (a, F) x3, (a, M) x3, (b, M) x1: blanking the lone patient's centre then sex leaves a class of 1
    frame = pl.DataFrame({"centre": ["a"] * 6 + ["b"], "sex": ["female"] * 3 + ["male"] * 4})
    protected, k = suppress_until_k(frame, ("centre", "sex"), threshold=3)
    assert k.passes and k.k == 3 and k.classes == 2
    assert protected.rows() == [(None, None)] * 3 + [("a", "male")] * 3 + [(None, None)]
    assert k.suppressed == {"centre": 4, "sex": 4}
    _, k = suppress_until_k(frame.head(2), ("centre", "sex"), threshold=3)
    assert not k.passes and k.k == 2  # fewer patients than the threshold: nothing can make it
