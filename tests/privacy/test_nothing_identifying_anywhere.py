"""The data-protection audit as a test: plant the habits that carry identifiers out of a chart,
run the whole nightly through Dagster as an operator does, then scan every byte the product
wrote — warehouse, DAGSTER_HOME (run storage, event log, compute logs, storage folder), outputs,
Data Docs, its own console — and what the webserver's GraphQL API serves, for the delivery's
identifiers and for the pseudonym key. One hit fails the test.
"""

from __future__ import annotations

import json
import os
import secrets as random_secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from clms_etl.synth.twin import build_twin
from tests.privacy.habits import plant
from tests.privacy.scan import Secrets, scan_files, scan_text

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

MD = """fragment md on MetadataEntry { label description __typename
  ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } ... on PathMetadataEntry { path }
  ... on JsonMetadataEntry { jsonString } ... on UrlMetadataEntry { url } ... on TableMetadataEntry { table { records } }
  ... on IntMetadataEntry { intRepr } ... on FloatMetadataEntry { floatRepr } }"""
OVERVIEW = MD + """
{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name
    allTopLevelResourceDetails { name description configuredValues { key value type }
      configFields { name description defaultValueAsJson } } } } }
  runsOrError { __typename ... on Runs { results { runId jobName runConfigYaml tags { key value } } } }
  assetNodes { assetKey { path } description
    assetMaterializations(limit: 100) { partition metadataEntries { ...md } } }
}"""
RUN_LOGS = MD + """
query Logs($runId: ID!) { logsForRun(runId: $runId, limit: 5000) { __typename ... on EventConnection { events {
  __typename ... on MessageEvent { message }
  ... on MaterializationEvent { metadataEntries { ...md } }
  ... on ExecutionStepFailureEvent { error { message stack } failureMetadata { metadataEntries { ...md } } }
  ... on AssetCheckEvaluationEvent { evaluation { metadataEntries { ...md } } } } } } }"""


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def twin_secrets(extra_names: set[str], key: str) -> Secrets:
    """The delivery's identifiers, from the twin's truth (not from the product's reader)."""
    people = build_twin(0).patient
    return Secrets(names=set(people["last_name"]) | set(people["first_name"]) | extra_names,
                   local_ids=set(people["local_id"]), birth_dates=set(people["birth_date"]), keys={key})


def graphql_answers(env: dict, log_path: Path) -> str:
    """Everything the webserver serves about resources, runs and metadata, as one JSON text."""
    from tests.test_dagster_platform import free_port, stop

    port = free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
                                   "-p", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while True:
                assert server.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                try:
                    overview = graphql(port, OVERVIEW)
                    if overview["data"]["repositoriesOrError"]["__typename"] == "RepositoryConnection":
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError):
                    pass
                time.sleep(0.5)
            runs = overview["data"]["runsOrError"]["results"]
            assert runs, "the webserver shows no run of the nightly"
            logs = [graphql(port, RUN_LOGS, {"runId": r["runId"]}) for r in runs]
        finally:
            stop(server)
    return json.dumps([overview, logs], ensure_ascii=False)


def describe(hits) -> str:
    return "\n".join(f"{h.kind:<10} {h.what:<22} in {h.where}  …{h.context}…" for h in hits[:40])


@pytest.mark.slow
def test_a_whole_night_with_identifier_habits_leaves_no_identifier_and_no_key_anywhere(twin_drop, tmp_path):
    drop = tmp_path / "incoming"
    shutil.copytree(twin_drop, drop)
    extra = plant(drop)
    key = "k-" + random_secrets.token_urlsafe(32)
    secrets = twin_secrets(extra, key)
    # the scanner finds every kind of identifier where they are expected: in the deliveries
    control = {h.kind for h in scan_files([drop], secrets)}
    assert control >= {"name", "local_id", "birth_date"}

    run = tmp_path / "run"  # everything the product writes goes here
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLMS_", "DAGSTER_"))}
    env.update(CLMS_INCOMING=str(drop), CLMS_OUTPUTS=str(run / "outputs"), CLMS_HANDOFF=str(run / "handoff"),
               CLMS_WAREHOUSE_URL=f"duckdb:///{run / 'warehouse.duckdb'}", CLMS_PSEUDONYM_KEY=key,
               DAGSTER_HOME=str(run / "dagster_home"), PYTHONWARNINGS="ignore", DAGSTER_DISABLE_TELEMETRY="1",
               VIRTUAL_ENV=str(BIN.parent))
    night = subprocess.run([sys.executable, "-m", "assets.demo"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=1200)
    console = night.stdout + night.stderr

    served = graphql_answers(env, tmp_path / "webserver.log")
    hits = (scan_files([run], secrets) + scan_text("console of the night", console, secrets)
            + scan_text("GraphQL answers", served, secrets)
            + scan_text("webserver log", (tmp_path / "webserver.log").read_text(errors="replace"), secrets))
    assert not hits, f"{len(hits)} identifier or key hits:\n{describe(hits)}"
    # and the night itself went through: every centre imported, the refresh done
    assert night.returncode == 0, console[-4000:]
