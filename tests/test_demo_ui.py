"""Issue #16, the data team's and the data stewards' view after ``make demo``.

The demo (``assets/demo.py``) runs once, in a subprocess on its own DAGSTER_HOME, warehouse and
outputs; the tests then look at what a user opening ``dg dev`` or the Data Docs would find: the
runs under their jobs, a drop-folder sensor that imports nothing again, Data Docs that need no
network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG  # what the UI's job page filters its runs on
import pytest
import yaml

from assets.automation import drop_folder_sensor
from assets.partitions import REGISTRY
from assets.resources import DropFolder
from assets.run import CODE_LOCATION, CODE_MODULE, code_location, sensor_cursor
from tests.test_dagster_platform import ROOT, clms_env

DEMO_REPOSITORY = f"__repository__@{CODE_LOCATION}"


def test_the_demo_launches_from_the_code_location_that_workspace_yaml_names():
    [entry] = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    assert entry["python_module"]["location_name"] == CODE_LOCATION
    assert entry["python_module"]["module_name"] == CODE_MODULE


@pytest.fixture(scope="module")
def demo(twin_drop, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("demo")
    home = tmp / "dagster_home"
    env = clms_env(tmp, twin_drop, home)  # DAGSTER_HOME not created yet: the demo creates it
    env["CLMS_WAREHOUSE_URL"] = f"duckdb:///{tmp / 'wh' / 'warehouse.duckdb'}"
    done = subprocess.run([sys.executable, "-m", "assets.demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return {"home": home, "drop": twin_drop, "wh": tmp / "wh", "outputs": tmp / "outputs", "stdout": done.stdout}


@pytest.mark.slow
def test_the_demo_runs_are_listed_under_their_jobs_in_the_code_location(demo):
    with dg.DagsterInstance.from_config(str(demo["home"])) as instance:
        def runs(job: str) -> list[dg.DagsterRun]:
            return instance.get_runs(dg.RunsFilter(job_name=job, tags={REPOSITORY_LABEL_TAG: DEMO_REPOSITORY}))

        [nightly] = runs("nightly_refresh")
        assert nightly.status == dg.DagsterRunStatus.SUCCESS
        assert nightly.remote_job_origin.location_name == CODE_LOCATION
        imports = runs("import_centre")
        assert sorted(r.tags["dagster/partition"] for r in imports) == sorted(
            c.name for c in (demo["drop"]).iterdir() if c.is_dir() and not c.name.startswith("_"))


@pytest.mark.slow
def test_the_demo_writes_one_offline_data_docs_site_and_the_quality_dashboard(demo):
    from tests.warehouse.test_data_docs import index_rows

    site = demo["wh"] / "data_docs"
    assert f"data docs     {site / 'index.html'}" in demo["stdout"]
    assert not (demo["wh"] / "data_docs_analytics").exists()  # one site, not three
    rows = [r for r in index_rows(site / "index.html") if "run_name" in r]
    scopes = {r["_table_row_link_path"].split("/")[1] for r in rows}
    assert scopes == {"warehouse", "analytics"}  # the base tables' and the analyses' validations
    assert {r["run_name"].split("-")[0] for r in rows} == {"nightly_refresh"}
    dashboard = demo["outputs"] / "quality" / "dashboard.html"
    assert dashboard.is_file() and f"quality       {dashboard}" in demo["stdout"]


@pytest.mark.slow
def test_the_drop_folder_sensor_requests_no_run_after_the_demo(demo):
    with dg.DagsterInstance.from_config(str(demo["home"])) as instance:
        cursor = sensor_cursor(code_location(instance), instance, drop_folder_sensor.name)
        resources = {"drop_folder": DropFolder(path=str(demo["drop"]))}
        after_demo = drop_folder_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        assert after_demo.run_requests == []
        # the cursor is what keeps it so: without it, every centre would be imported again
        fresh = drop_folder_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert len(fresh.run_requests) == len(json.loads(cursor)) == len(REGISTRY)
