"""A fresh, editable copy of the synthetic twin's drop folder for each hostile case."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from assets.definitions import defs
from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.centre_import import CentreImport, read_and_validate
from tests.dagster_resources import resources_for
from tests.rule_checks import registry_breaches

KEY = b"hostile-corpus-test-key-00000000"


@pytest.fixture(autouse=True)
def queries_follow_the_rule_registry(monkeypatch):
    """Every delivery validated by a hostile case (directly or through Dagster, in this process)
    gives registered rules with the registry's severity, one query per problem."""
    import clms_etl.validate

    validate = clms_etl.validate.validate

    def checked(*args, **kwargs):
        validated = validate(*args, **kwargs)
        assert registry_breaches(validated.queries) == []
        return validated

    monkeypatch.setattr(clms_etl.validate, "validate", checked)


@pytest.fixture
def drop(twin_drop, tmp_path) -> Path:
    """The twin's drop folder (seed 0), copied: edit its files freely."""
    root = tmp_path / "drop"
    shutil.copytree(twin_drop, root, symlinks=True)
    return root


def delivery_dir(drop: Path, centre: str) -> Path:
    """The one delivery folder of ``centre`` in the twin."""
    (folder,) = (drop / centre).iterdir()
    return folder


def import_centre(drop: Path, centre: str) -> CentreImport:
    """Read and validate ``centre``'s latest delivery, as the nightly does."""
    return read_and_validate(load_registry(drop)[centre], latest_delivery(drop, centre), KEY)


def accounting(imported: CentreImport) -> dict[str, tuple[int, int, int]]:
    """table -> (rows read, accepted, quarantined), after checking none is lost."""
    out = {}
    for row in imported.validated.accounting.iter_rows(named=True):
        assert row["rows_read"] == row["rows_accepted"] + row["rows_quarantined"], row
        out[row["table"]] = (row["rows_read"], row["rows_accepted"], row["rows_quarantined"])
    return out


def run_import(drop: Path, tmp_path: Path, centre: str) -> dg.ExecutionResult:
    """The code location's ``import_centre`` job for ``centre``, on a DuckDB warehouse in ``tmp_path``."""
    job = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                         resources=resources_for(drop, tmp_path)).resolve_job_def("import_centre")
    return job.execute_in_process(partition_key=centre, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
