"""The statisticians' exports carry no calendar date and state their k-anonymity; a shareable export
that cannot reach the threshold is not written."""

from __future__ import annotations

import datetime as dt
import re

import dagster as dg
import polars as pl
import pyreadstat
import pytest
from typer.testing import CliRunner

from clms_etl.disclosure import QUASI_IDENTIFIERS, DisclosureBlocked, equivalence_classes
from clms_etl.report.exports import export_analysis
from tests.no_dates import FRENCH_DATE, ISO_DATE, warehouse_dates, written_forms

def assert_no_date(result, dates: set[dt.date]) -> None:
    forms = written_forms(dates)
    assert result.files.keys() == {"parquet", "csv", "xpt", "dta"}
    for fmt, files in result.files.items():
        for name, path in files.items():
            if fmt == "parquet":
                frame = pl.read_parquet(path)
                assert not [c for c, t in frame.schema.items() if t.is_temporal()], (name, frame.schema)
                values = [v for c in frame.columns for v in frame[c].to_list()]
            elif fmt == "csv":
                frame = pl.read_csv(path, infer_schema=False)
                values = [v for c in frame.columns for v in frame[c].to_list()]
            else:
                frame, meta = pyreadstat.read_xport(str(path)) if fmt == "xpt" else pyreadstat.read_dta(str(path))
                formats = set(meta.original_variable_types.values())
                assert not {f for f in formats if re.search(r"DATE|TIME|%t", f or "", re.I)}, (fmt, name, formats)
                values = [v for c in frame.columns for v in frame[c].tolist()]
            assert not [v for v in values if isinstance(v, dt.date | dt.datetime)], (fmt, name)
            text = "\n".join(str(v) for v in values if v is not None)
            assert not ISO_DATE.search(text) and not FRENCH_DATE.search(text), (fmt, name)
            assert not {f for f in forms if f in text}, (fmt, name)
            if fmt == "csv":
                raw = path.read_text(encoding="utf-8")
                assert not ISO_DATE.search(raw) and not FRENCH_DATE.search(raw), name


@pytest.fixture(scope="module")
def in_house(report_warehouse, tmp_path_factory):
    return export_analysis(report_warehouse, tmp_path_factory.mktemp("in_house") / "exports")


@pytest.fixture(scope="module")
def shareable(report_warehouse, tmp_path_factory):
    return export_analysis(report_warehouse, tmp_path_factory.mktemp("shareable") / "exports", shareable=True)


def test_no_exported_file_of_any_format_holds_a_calendar_date(in_house, shareable, report_warehouse):
    dates = warehouse_dates(report_warehouse)
    assert len(dates) > 200
    assert_no_date(in_house, dates)
    assert_no_date(shareable, dates)


def test_dates_become_days_from_diagnosis(in_house, report_warehouse):
    exported = pl.read_parquet(in_house.files["parquet"]["patient_summary"])
    source = report_warehouse.read_sql("SELECT * FROM analytics.patient_summary")
    both = exported.join(source, on="patient_id", suffix="_wh")
    assert both.height == 79
    for days, date in (("primary_surgery_days", "primary_surgery_date"), ("death_days", "death_date"),
                       ("first_local_recurrence_days", "first_local_recurrence_date"),
                       ("first_metastasis_days", "first_metastasis_date")):
        expected = [None if d is None or o is None else (d - o).days
                    for d, o in zip(both[date], both["diagnosis_date"], strict=True)]
        assert both[days].to_list() == expected, days
        assert any(v is not None for v in expected), days
    assert both["follow_up_days"].equals(both["follow_up_days_wh"])
    assert {"diagnosis_date", "last_contact_date"}.isdisjoint(exported.columns)
    assert both["age_at_diagnosis_years"].equals(both["age_at_diagnosis_years_wh"], check_names=False)  # in-house: exact years
    survival = pl.read_parquet(in_house.files["parquet"]["survival"])
    assert {"diagnosis_date", "end_date"}.isdisjoint(survival.columns) and "time_days" in survival.columns
    readme = in_house.readme.read_text()
    assert "`primary_surgery_days`" in readme and "`diagnosis_date`" not in readme


def test_the_in_house_codebook_and_result_report_the_smallest_group_and_say_not_shareable(in_house):
    k = in_house.disclosure
    assert k.quasi_identifiers == QUASI_IDENTIFIERS and k.records == 79 and k.k == 1 and not k.passes
    readme = in_house.readme.read_text()
    assert "In-house only — not shareable" in readme
    assert "smallest group k = 1 patients (threshold 5)" in readme
    assert "sex, age_band, diagnosis_year, site, centre" in readme


def test_a_shareable_export_is_generalised_and_every_group_reaches_k(shareable):
    k = shareable.disclosure
    assert k.passes and k.k >= 5 and k.threshold == 5 and sum(k.suppressed.values()) > 0
    summary = pl.read_parquet(shareable.files["parquet"]["patient_summary"])
    assert "age_at_diagnosis_years" not in summary.columns and "age_band" in summary.columns
    assert set(summary["age_band"].drop_nulls()) <= {f"{a}-{a + 9}" for a in range(0, 90, 10)} | {"90+"}
    classes = equivalence_classes(summary, QUASI_IDENTIFIERS)
    assert classes.columns == [*QUASI_IDENTIFIERS, "size"] and classes["size"].min() >= 5
    # the per-patient datasets carry the same suppressed values (no way back to a centre through another file)
    centre = dict(zip(summary["patient_id"], summary["centre"], strict=True))
    survival = pl.read_parquet(shareable.files["parquet"]["survival"])
    assert all(centre[p] == c for p, c in zip(survival["patient_id"], survival["centre"], strict=True))
    for name, path in shareable.files["parquet"].items():
        assert "sample_id" not in pl.read_parquet(path).columns, name  # the laboratory accession
    readme = shareable.readme.read_text()
    assert "**Shareable**" in readme and f"smallest group k = {k.k} patients (threshold 5)" in readme
    assert "suppressed: " in readme and "79 diagnosis_year" in readme


def test_a_shareable_export_below_the_threshold_is_blocked_and_the_previous_export_stays(report_warehouse, tmp_path):
    outdir = tmp_path / "exports"
    export_analysis(report_warehouse, outdir, formats=["csv"])
    before = {p: p.read_bytes() for p in outdir.rglob("*") if p.is_file()}
    with pytest.raises(DisclosureBlocked) as blocked:
        export_analysis(report_warehouse, outdir, shareable=True, k_threshold=80)
    message = str(blocked.value)
    assert message.startswith("Shareable analysis export not written: k-anonymity 79 < threshold 80")
    assert "--k-threshold" in message and "79 of 79 patients" in message
    assert {p: p.read_bytes() for p in outdir.rglob("*") if p.is_file()} == before
    with pytest.raises(DisclosureBlocked):
        export_analysis(report_warehouse, tmp_path / "new", shareable=True, k_threshold=80)
    assert not (tmp_path / "new").exists()


def test_the_cli_blocks_a_shareable_export_below_the_threshold_with_the_message(report_warehouse, tmp_path):
    from clms_etl.cli import app

    runner = CliRunner()
    outcome = runner.invoke(app, ["export", "analysis", str(tmp_path / "out"), "--shareable", "--k-threshold", "80",
                                  "--url", report_warehouse.url])
    assert outcome.exit_code == 1 and outcome.exception is not None and isinstance(outcome.exception, SystemExit)
    assert "blocked" in outcome.output and "threshold 80" in outcome.output and "Traceback" not in outcome.output
    assert not (tmp_path / "out").exists()
    ok = runner.invoke(app, ["export", "analysis", str(tmp_path / "ok"), "--shareable", "-f", "csv",
                             "--url", report_warehouse.url])
    assert ok.exit_code == 0, ok.output
    assert "shareable export, smallest group k = " in " ".join(ok.output.split())


def _materialise(report_warehouse, tmp_path, config: dict):
    from assets.report import analysis_exports
    from assets.resources import OutputsFolder, WarehouseResource

    resources = {"warehouse": WarehouseResource(url=report_warehouse.url),
                 "outputs": OutputsFolder(path=str(tmp_path / "outputs"))}
    return dg.materialize([analysis_exports], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                          run_config={"ops": {"analysis_exports": {"config": config}}}, raise_on_error=False)


def test_the_asset_metadata_reports_the_smallest_group_and_a_blocked_shareable_export_fails_with_the_message(
        report_warehouse, tmp_path):
    result = _materialise(report_warehouse, tmp_path / "in_house", {})
    assert result.success
    meta = result.asset_materializations_for_node("analysis_exports")[0].metadata
    assert meta["k_anonymity/smallest_group"].value == 1 and meta["k_anonymity/threshold"].value == 5
    assert meta["k_anonymity/shareable"].value is False and meta["k_anonymity/patients"].value == 79
    shared = _materialise(report_warehouse, tmp_path / "shared", {"shareable": True})
    meta = shared.asset_materializations_for_node("analysis_exports")[0].metadata
    assert meta["k_anonymity/smallest_group"].value >= 5 and meta["k_anonymity/shareable"].value is True
    assert "smallest group k =" in meta["k_anonymity/summary"].value
    failed = _materialise(report_warehouse, tmp_path / "blocked", {"shareable": True, "k_threshold": 80})
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "k-anonymity 79 < threshold 80" in failure.step_failure_data.user_failure_data.description
    assert not (tmp_path / "blocked" / "outputs" / "exports").exists()
