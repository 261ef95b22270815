"""The code location: ``dagster dev -w workspace.yaml`` or ``dg dev`` load ``defs`` from here.

``CLMS_DEPLOYMENT=production`` switches the resources to their EnvVar-only configuration
(PostgreSQL warehouse, key file); anything else is the local configuration.
"""

from __future__ import annotations

import os

import dagster as dg

from assets import automation, ingest, molecular, report, result_checks, survival, warehouse
from assets.resources import local_resources, production_resources
from clms_etl.files import private_process

# Every process that loads the code location (code server, run and step workers, `dg` / `dagster`
# CLIs) creates owner-only files: Dagster's run storage and compute logs, DuckDB's file and WAL.
private_process()

defs = dg.Definitions(
    assets=[ingest.centre_import, ingest.centre_warehouse, warehouse.warehouse,
            molecular.molecular_summary, molecular.cbioportal_study, survival.survival_analysis,
            report.clinician_report, report.analysis_exports],
    asset_checks=[ingest.validation_gate, ingest.row_accounting, ingest.shrinkage_guard, warehouse.great_expectations,
                  *result_checks.CHECKS],
    jobs=[automation.import_job, automation.nightly_job],
    schedules=[automation.nightly_schedule],
    sensors=[automation.drop_folder_sensor, automation.dead_runs_sensor],
    resources=production_resources() if os.environ.get("CLMS_DEPLOYMENT") == "production" else local_resources(),
)
