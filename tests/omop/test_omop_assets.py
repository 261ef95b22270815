"""The OMOP export through Dagster and the command line: the ``omop_cdm`` asset writes the folder in
the nightly refresh and yields its blocking ``omop_quality`` check from the quality checks the export
ran on what it wrote (failing on a defect planted in the file), and ``clms-etl export omop`` writes the same."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import polars as pl
import sqlalchemy as sa
from typer.testing import CliRunner

from assets import interop
from assets.resources import OutputsFolder, PseudonymKey, WarehouseResource
from clms_etl.cli import app
from clms_etl.omop.export import DEFAULT_SCHEMA, DUCKDB_FILE
from tests.omop.test_omop_export import twin_warehouse  # noqa: F401  (fixture)


def test_the_omop_asset_is_downstream_of_the_warehouse_and_in_the_nightly_refresh():
    from assets.automation import nightly_job
    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    node = graph.get(interop.omop_cdm.key)
    assert dg.AssetKey("warehouse") in node.parent_keys and node.group_name == "interop"
    nightly = defs.resolve_job_def(nightly_job.name)
    assert interop.omop_cdm.key in nightly.asset_layer.executable_asset_keys


def test_a_writer_can_open_the_duckdb_warehouse_while_omop_builds_the_cdm(tmp_path, monkeypatch):
    # The 1,000,000-patient DuckDB night: OMOP read the warehouse for its whole export (66 s), so it held the
    # pool until the analyses (writers) were done, then ended the refresh. It reads its rows first now: while
    # it builds, another process can open the file read-write (DuckDB refuses that beside any reader).
    from clms_etl.omop import build
    from tests.warehouse.helpers import TEST_KEY, load_twin
    from clms_etl.warehouse import Warehouse

    monkeypatch.setenv("CLMS_PSEUDONYM_KEY", TEST_KEY.decode())
    database = tmp_path / "warehouse.duckdb"
    with Warehouse(f"duckdb:///{database}") as wh:
        wh.create()
        load_twin(wh, tmp_path)
    writer_opened = []

    def build_with_a_writer(*args, **kwargs):
        writer = (f"from clms_etl.warehouse import Warehouse\n"
                  f"with Warehouse('duckdb:///{database}') as wh: wh.read_sql('SELECT count(*) FROM patient')")
        try:  # the writer waits for the file's readers to let go (clms_etl/warehouse/file_lock.py)
            opening = subprocess.run([sys.executable, "-c", writer], capture_output=True, text=True, timeout=60)
            writer_opened.append(opening.returncode == 0 or opening.stderr[-300:])
        except subprocess.TimeoutExpired:
            writer_opened.append("kept out for 60 s")
        return build_block(*args, **kwargs)

    build_block = build.build
    monkeypatch.setattr(build, "build", build_with_a_writer)  # (the twin is one block)
    resources = {"warehouse": WarehouseResource(url=f"duckdb:///{database}"), "pseudonym_key": PseudonymKey(),
                 "outputs": OutputsFolder(path=str(tmp_path / "outputs"))}
    result = dg.materialize([interop.omop_cdm], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success and writer_opened == [True]
    assert [p.name for p in (tmp_path / "outputs" / "omop").iterdir() if p.name.startswith(".")] == []
    assert interop.omop_cdm.op.pool is None  # no pool slot: it starts beside the analyses


def test_materialising_writes_the_cdm_and_its_blocking_check_is_the_export_s_checks_of_the_written_file(
        twin_warehouse, tmp_path, monkeypatch):  # noqa: F811
    """The quality checks run once, by the export on the file it wrote; the asset yields their verdict as
    its blocking check (not a second run of every check on the same file), and a defect in that file fails it."""
    from clms_etl.omop import export, quality

    resources = {"warehouse": WarehouseResource(url=twin_warehouse.url), "pseudonym_key": PseudonymKey(),
                 "outputs": OutputsFolder(path=str(tmp_path / "outputs"))}
    runs = []
    run_checks = quality.run_checks
    monkeypatch.setattr(quality, "run_checks", lambda conn, schema: runs.append(schema) or run_checks(conn, schema))
    result = dg.materialize([interop.omop_cdm], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed, evaluation.severity) == (
        "omop_quality", True, dg.AssetCheckSeverity.ERROR)
    assert evaluation.metadata["failed"].value == 0
    written = pl.read_csv(tmp_path / "outputs" / "omop" / "quality.csv")
    assert runs == [DEFAULT_SCHEMA] and evaluation.metadata["checks"].value == written.height > 0
    meta = result.asset_materializations_for_node("omop_cdm")[0].metadata
    assert meta["dagster/row_count"].value == 79 and meta["dates"].value == "shifted"
    # (niced only in a process of its own: a multiprocess step)
    assert meta["cpu_priority"].value == "unchanged (the step shares its process)"
    database = tmp_path / "outputs" / "omop" / DUCKDB_FILE
    assert (tmp_path / "outputs" / "omop" / "csv" / "person.csv").is_file()

    def defect_then_check(engine: sa.Engine, schema: str) -> pl.DataFrame:
        with engine.begin() as conn:  # a record after death in the file written: what the check must catch
            conn.execute(sa.text(f"UPDATE {schema}.procedure_occurrence SET procedure_date = d.death_date + 100 "
                                 f"FROM {schema}.death d WHERE d.person_id = procedure_occurrence.person_id"))
        return check_database(engine, schema)

    check_database = export.check_database
    monkeypatch.setattr(export, "check_database", defect_then_check)
    checked = dg.materialize([interop.omop_cdm], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                             raise_on_error=False)
    [failed] = checked.get_asset_check_evaluations()
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert "plausibleBeforeDeath" in {r.data["check"] for r in failed.metadata["failures"].records}
    assert not checked.success  # blocking: the run stops there
    quality_csv = pl.read_csv(tmp_path / "outputs" / "omop" / "quality.csv")  # the verdict is the file's
    assert failed.metadata["failed"].value == quality_csv.filter(~pl.col("passed")).height > 0
    assert database.is_file()


def test_the_command_writes_exact_dates_for_the_in_house_warehouse(twin_warehouse, tmp_path):  # noqa: F811
    shifted = CliRunner().invoke(app, ["export", "omop", str(tmp_path / "shared"), "--url", twin_warehouse.url])
    exact = CliRunner().invoke(app, ["export", "omop", str(tmp_path / "inhouse"), "--url", twin_warehouse.url,
                                     "--exact-dates"])
    assert shifted.exit_code == 0 and exact.exit_code == 0, shifted.output + exact.output
    assert "79 persons" in exact.output and "quality checks passed" in exact.output
    def diagnoses(folder: str) -> pl.DataFrame:
        csv = tmp_path / folder / "csv"
        return (pl.read_csv(csv / "condition_occurrence.csv", try_parse_dates=True)
                .join(pl.read_csv(csv / "person.csv"), on="person_id")
                .select(pl.col("person_source_value").alias("patient_id"), "condition_start_date"))

    truth = twin_warehouse.read_sql("SELECT patient_id, diagnosis_date FROM patient")
    inhouse = diagnoses("inhouse").join(truth, on="patient_id")
    shared = diagnoses("shared").join(truth, on="patient_id")
    assert inhouse.height == shared.height == truth.height
    assert (inhouse["condition_start_date"] == inhouse["diagnosis_date"]).all()
    assert (shared["condition_start_date"] < shared["diagnosis_date"]).all()  # every patient's dates moved back


def test_the_command_refuses_a_schema_name_it_would_have_to_quote(twin_warehouse, tmp_path):  # noqa: F811
    result = CliRunner().invoke(app, ["export", "omop", f"duckdb:///{tmp_path / 'x.duckdb'}", "--url",
                                      twin_warehouse.url, "--schema", 'omop"; drop table person; --'])
    assert result.exit_code == 1 and "refused" in result.output and "lower-case letters" in result.output
    assert not (tmp_path / "x.duckdb").exists()  # refused before connecting
