"""A snapshot of the code location's definitions (as dagster-open-platform keeps one).

The assets (group, kinds, owners, tags, partitions, code version, deps, pools, the tables their
column schema lists), the checks (blocking
or not, pool), the jobs and what they select, the schedules (cron, timezone), the sensors and the
resource keys, as the code location loads them (``assets/definitions.py``: the defs folder
``assets/defs/`` and the resources), are compared with ``tests/snapshots/definitions.json``. A
change to the asset graph — a check that stops blocking, an asset that leaves the ``warehouse``
pool or a job's selection, a new asset scaffolded by ``dg scaffold defs`` — shows here as a diff to
review and commit with the change.

To regenerate the file after an intended change::

    CLMS_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_definitions_snapshot.py -p no:cacheprovider

then read ``git diff tests/snapshots/`` before committing it. Descriptions are left out (prose); the
partition keys are recorded as the registry's when they are its centres (``centres.toml``), so that
a centre added to the registry is no change to the definitions.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import dagster as dg
import pytest

from assets.definitions import defs
from assets.partitions import REGISTRY

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
UPDATE = "CLMS_UPDATE_SNAPSHOTS"
REGISTRY_PARTITIONS = "one per entry of the registry (centres.toml)"


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> dict | None:
    if partitions_def is None:
        return None
    keys = partitions_def.get_partition_keys()
    return {"type": type(partitions_def).__name__,
            "keys": REGISTRY_PARTITIONS if keys == list(REGISTRY) else keys}


def _asset(graph: dg.AssetGraph, key: dg.AssetKey) -> dict:
    node = graph.get(key)
    return {
        "group": node.group_name,
        "kinds": sorted(node.kinds),
        "owners": sorted(node.owners),
        "tags": {k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")},
        "partitions": _partitions(node.partitions_def),
        "code_version": node.code_version,
        "deps": sorted(k.to_user_string() for k in node.parent_keys),
        "pools": sorted(node.pools),
        "column_schema_tables": _column_schema_tables(node.metadata.get("dagster/column_schema")),
    }


def _column_schema_tables(value) -> list[str] | None:
    """The tables whose columns an asset's column schema lists (``<table>.<column>``; the columns
    themselves are the contract's, ``tests/test_contract.py``)."""
    if value is None:
        return None
    schema = value.schema if isinstance(value, dg.TableSchemaMetadataValue) else value
    return sorted({c.name.split(".")[0] for c in schema.columns})


def _check(graph: dg.AssetGraph, key: dg.AssetCheckKey) -> dict:
    spec = graph.get_check_spec(key)
    # a check declared with its asset (check_specs) runs in the asset's own step
    owner = graph.get(key.asset_key).assets_def
    node = owner if key in owner.check_keys else defs.get_asset_checks_def(key)
    return {"blocking": spec.blocking, "pool": node.node_def.pool}


def _job(job: dg.JobDefinition) -> dict:
    layer = job.asset_layer
    return {
        "assets": sorted(k.to_user_string() for k in layer.executable_asset_keys),
        "checks": sorted(k.to_user_string() for k in layer.asset_graph.asset_check_keys
                         if k.asset_key in layer.executable_asset_keys),
        "partitions": _partitions(job.partitions_def),
    }


def definitions_snapshot(definitions: dg.Definitions) -> dict:
    """What the snapshot records of ``definitions``: plain JSON, sorted, without descriptions."""
    graph = definitions.resolve_asset_graph()
    repository = definitions.get_repository_def()
    return {
        "assets": {k.to_user_string(): _asset(graph, k) for k in sorted(graph.get_all_asset_keys())},
        "asset_checks": {k.to_user_string(): _check(graph, k)
                         for k in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string())},
        "jobs": {j.name: _job(j) for j in sorted(repository.get_all_jobs(), key=lambda j: j.name)
                 if not j.name.startswith("__")},  # Dagster's implicit __ASSET_JOB
        "schedules": {s.name: {"cron": s.cron_schedule, "timezone": s.execution_timezone, "job": s.job_name,
                               "default_status": s.default_status.value}
                      for s in sorted(repository.schedule_defs, key=lambda s: s.name)},
        "sensors": {s.name: {"jobs": sorted(j.name for j in s.jobs) if s.has_jobs else [],
                             "minimum_interval_seconds": s.minimum_interval_seconds,
                             "default_status": s.default_status.value}
                    for s in sorted(repository.sensor_defs, key=lambda s: s.name)},
        "resources": {k: type(v).__name__ for k, v in sorted(definitions.resources.items())},
    }


def test_definitions_match_the_committed_snapshot():
    current = json.dumps(definitions_snapshot(defs), indent=2, ensure_ascii=False) + "\n"
    if os.environ.get(UPDATE) == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current, encoding="utf-8")
    if not SNAPSHOT.is_file():
        pytest.fail(f"no snapshot at {SNAPSHOT}: write it with {UPDATE}=1 (see this module's docstring)")
    committed = SNAPSHOT.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(committed.splitlines(keepends=True), current.splitlines(keepends=True),
                                        "tests/snapshots/definitions.json", "the code location"))
    assert not diff, f"the definitions changed (if intended, regenerate with {UPDATE}=1):\n{diff}"
