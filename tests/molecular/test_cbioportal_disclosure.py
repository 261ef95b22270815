"""The cBioPortal study is shareable: no date, no centre, age in 10-year bands, every group of sex x age
band x site at least k patients (stated in meta_study.txt and the asset metadata), or nothing written."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from clms_etl.cli import app
from clms_etl.disclosure import DisclosureBlocked
from clms_etl.molecular.cbioportal import write_study
from clms_etl.warehouse.load import Warehouse
from tests.molecular.test_cbioportal import _meta, _table
from tests.no_dates import FRENCH_DATE, ISO_DATE, warehouse_dates, written_forms


@pytest.fixture(scope="module")
def study(twin_read, tmp_path_factory):
    summary, patients = twin_read
    out = tmp_path_factory.mktemp("cbioportal_k") / "clms"
    return out, write_study(summary, patients, out)


def _clinical(folder) -> pl.DataFrame:
    _, header, rows = _table(folder / "data_clinical_patient.txt")
    patients = pl.DataFrame(rows, schema=header, orient="row")
    _, header, rows = _table(folder / "data_clinical_sample.txt")
    samples = pl.DataFrame(rows, schema=header, orient="row")
    return patients.join(samples, on="PATIENT_ID")


def test_the_study_holds_no_date_no_centre_and_ages_in_ten_year_bands(study, twin_warehouse_url):
    folder, _ = study
    with Warehouse(twin_warehouse_url) as wh:
        dates = warehouse_dates(wh)
    text = "\n".join(p.read_text(encoding="utf-8") for p in folder.rglob("*") if p.is_file())
    assert not ISO_DATE.search(text) and not FRENCH_DATE.search(text)
    assert not {f for f in written_forms(dates) if f in text}
    clinical = _clinical(folder)
    assert "CENTRE" not in clinical.columns and "DIAGNOSIS_YEAR" not in clinical.columns
    ages = [a for a in clinical["AGE"] if a != "NA"]
    assert all(a.isdigit() and int(a) % 10 == 0 and 0 <= int(a) <= 90 for a in ages)  # years, band's lower bound
    _, header, _ = _table(folder / "data_clinical_patient.txt")
    comments, _, _ = _table(folder / "data_clinical_patient.txt")
    descriptions = comments[1][1:].split("\t")
    assert "10-year band" in descriptions[header.index("AGE")]


def test_every_group_of_sex_age_band_and_site_holds_k_patients_and_meta_study_says_so(study):
    folder, result = study
    clinical = _clinical(folder)
    sizes = clinical.group_by("SEX", "AGE", "PRIMARY_SITE").len()["len"]
    assert clinical.height == 14 and sizes.min() >= 5
    k = result.disclosure
    assert (k.k, k.threshold, k.records) == (sizes.min(), 5, 14) and k.quasi_identifiers == ("site", "age_band", "sex")
    description = _meta(folder / "meta_study.txt")["description"]
    assert f"smallest group k = {k.k} patients (threshold 5)" in description and "suppressed: " in description


def test_a_study_below_the_threshold_is_blocked_and_the_previous_study_stays(study, twin_read, tmp_path):
    summary, patients = twin_read
    out = tmp_path / "clms"
    write_study(summary, patients, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(DisclosureBlocked) as blocked:
        write_study(summary, patients, out, k_threshold=15)
    message = str(blocked.value)
    assert message.startswith("cBioPortal study not written: k-anonymity 14 < threshold 15 over site, age_band, sex")
    assert "--k-threshold" in message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with pytest.raises(DisclosureBlocked):
        write_study(summary, patients, tmp_path / "new", k_threshold=15)
    assert not (tmp_path / "new").exists()


def test_the_cli_blocks_the_study_below_the_threshold_with_the_message(twin_warehouse_url, tmp_path):
    outcome = CliRunner().invoke(app, ["export", "cbioportal", str(tmp_path / "study"), "--k-threshold", "15",
                                       "--url", twin_warehouse_url])
    assert outcome.exit_code == 1 and isinstance(outcome.exception, SystemExit)
    assert "blocked" in outcome.output and "threshold 15" in outcome.output and "Traceback" not in outcome.output
    assert not (tmp_path / "study").exists()


def test_the_asset_metadata_reports_the_smallest_group_and_a_blocked_study_is_a_warning_check_with_the_message(
        twin_warehouse_url, tmp_path):
    from assets.molecular import cbioportal_study
    from assets.resources import OutputsFolder, WarehouseResource

    def run(folder, config):
        return dg.materialize([cbioportal_study], instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                              resources={"warehouse": WarehouseResource(url=twin_warehouse_url),
                                         "outputs": OutputsFolder(path=str(folder))},
                              run_config={"ops": {"cbioportal_study": {"config": config}}})

    result = run(tmp_path / "ok", {})
    meta = result.asset_materializations_for_node("cbioportal_study")[0].metadata
    assert meta["k_anonymity/smallest_group"].value >= 5 and meta["k_anonymity/threshold"].value == 5
    assert meta["k_anonymity/patients"].value == 14 and meta["k_anonymity/shareable"].value is True
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "k_anonymity" and check.passed
    blocked = run(tmp_path / "blocked", {"k_threshold": 15})
    assert blocked.success  # the night goes on: report and other exports are not held by the study
    [check] = blocked.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "k-anonymity 14 < threshold 15" in check.description
    meta = blocked.asset_materializations_for_node("cbioportal_study")[0].metadata
    assert meta["status"].value.startswith("blocked:") and "k-anonymity 14 < threshold 15" in meta["status"].value
    assert not (tmp_path / "blocked" / "cbioportal").exists()


def test_the_cli_refuses_a_study_from_molecular_results_never_computed_on_the_current_deliveries(tmp_path,
                                                                                                monkeypatch):
    from clms_etl.keys import ENV_KEY, ENV_KEY_FILE
    from tests.warehouse.helpers import TEST_KEY, load_twin

    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_KEY, TEST_KEY.decode())
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    with Warehouse(url) as wh:  # loaded, the molecular summary not run since
        wh.create()
        load_twin(wh, tmp_path)
    outcome = CliRunner().invoke(app, ["export", "cbioportal", str(tmp_path / "study"), "--url", url])
    assert outcome.exit_code == 1 and "Traceback" not in outcome.output
    assert "stored molecular results are never computed" in " ".join(outcome.output.split())
    assert not (tmp_path / "study").exists()
