"""Read + validate every centre of the synthetic deliveries: nothing lost, every defect found,
nothing clean flagged."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.keys import DEMO_KEY
from clms_etl.centre_import import read_and_validate
from clms_etl.keys import pseudonym
from clms_etl.synth.generate import generate

DATE = dt.date(2026, 11, 23)
CLINICAL = ["nice", "montpellier", "lyon", "nimes"]


def import_all(root):
    registry = load_registry(root)
    return {c: read_and_validate(registry[c], latest_delivery(root, c), DEMO_KEY) for c in registry}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    result = generate(root, seed=0, delivery_date=DATE)
    return result, import_all(root)


@pytest.fixture(scope="module", params=[0, 1, 2])
def defective(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"defects{request.param}")
    result = generate(root, seed=request.param, defect_rate=0.3, delivery_date=DATE)
    return result, import_all(root)


def test_clean_twin_imports_every_centre_with_no_error_query(clean):
    _, imports = clean
    for centre, imp in imports.items():
        assert imp.failure is None, imp.failure
        errors = imp.validated.queries.filter(pl.col("severity") == "error")
        assert errors.is_empty(), f"{centre}:\n{errors.select('file', 'row', 'field', 'value', 'rule', 'message')}"


def test_clean_twin_accepts_every_patient_and_event(clean):
    result, imports = clean
    truth = result.truth
    for centre in CLINICAL:
        v = imports[centre].validated
        part = truth.for_centre(centre)
        assert v.accepted["patient"].height == part.patient.height
        assert v.accepted["surgery"].height == part.surgery.height
        assert v.accepted["event"].height == part.event.height
    assert imports["molecular"].validated.accepted["molecular_sample"].height == 14


def test_rows_read_equal_rows_accepted_plus_quarantined_everywhere(defective):
    _, imports = defective
    for imp in imports.values():
        acc = imp.validated.accounting
        assert (acc["rows_read"] == acc["rows_accepted"] + acc["rows_quarantined"]).all()
        assert acc["rows_quarantined"].sum() > 0 or imp.centre == "molecular"


def test_every_planted_defect_is_reported_at_its_file_row_and_column(defective):
    result, imports = defective
    missed = []
    for d in result.defects.iter_rows(named=True):
        q = imports[d["centre"]].validated.queries.filter(
            (pl.col("file") == d["file"]) & (pl.col("row") == d["row"])
            & (pl.col("sheet").eq_missing(d["sheet"]))
        )
        fields = set(q["field"].drop_nulls())
        if d["kind"] == "duplicate_patient_row":
            hit = not q.filter(pl.col("severity") == "error").is_empty()
        else:
            hit = d["column"] in fields
        if not hit:
            missed.append((d["centre"], d["file"], d["sheet"], d["row"], d["column"], d["kind"], d["value"],
                           sorted(fields)))
    assert not missed, "\n".join(map(str, missed))


def test_error_queries_only_concern_patients_given_a_defect(defective):
    """No false positive: every error names a patient who was given a defect (its own row,
    a sibling row of the same chart, or the cascade of its quarantine)."""
    result, imports = defective
    planted = {pseudonym(DEMO_KEY, *key.split(":", 1)) for key in result.defects["patient_key"]}
    for centre, imp in imports.items():
        if centre == "molecular":
            continue
        errors = imp.validated.queries.filter(pl.col("severity") == "error")
        strays = errors.filter(~pl.col("patient_id").is_in(list(planted)))
        assert strays.is_empty(), strays.select("file", "row", "field", "value", "rule")


@pytest.mark.parametrize("seed", [5, 11, 12])
def test_a_defect_in_every_patient_still_imports_every_centre(tmp_path, seed):
    generate(tmp_path, seed=seed, defect_rate=1.0, delivery_date=DATE)
    for centre, imp in import_all(tmp_path).items():
        assert imp.failure is None, (centre, imp.failure)
        assert imp.validated.balanced
