"""The code location: ``dg dev`` / ``dg check defs`` and ``workspace.yaml`` load ``defs`` from here.

``defs`` is what the project's defs folder ``assets/defs/`` holds (``dg.load_from_defs_folder``:
every module there, so ``dg scaffold defs`` adds to it) with the resources of the deployment.

``CLMS_DEPLOYMENT=production`` switches the resources to their EnvVar-only configuration
(PostgreSQL warehouse, key file); anything else is the local configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from assets.resources import local_resources, production_resources
from assets.run_workers import warm_code_server
from clms_etl.files import private_process

# Every process that loads the code location (code server, run and step workers, `dg` / `dagster`
# CLIs) creates owner-only files: Dagster's run storage and compute logs, DuckDB's file and WAL.
private_process()

defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    dg.Definitions(resources=production_resources() if os.environ.get("CLMS_DEPLOYMENT") == "production"
                   else local_resources()),
)

# In a code server, each run's worker is forked from a process that imported all this once
# (assets/run_workers.py); nothing changes in any other process. Imported only now: the defs
# folder imports the asset modules with Dagster's preview notices silenced, an import above it would not.
from assets.automation import RUN_WORKER_MODULES  # noqa: E402

warm_code_server(__name__, *RUN_WORKER_MODULES)
