"""The registry's pipeline: centre imports, the warehouse, the analyses, the report and exports,
their checks and automation. The definitions live in the ``assets`` modules; this module is what
the defs folder loads."""

from __future__ import annotations

import dagster as dg

from assets import automation, ingest, interop, molecular, quality, report, result_checks, survival, warehouse

defs = dg.Definitions(
    assets=[ingest.centre_import, ingest.centre_warehouse, warehouse.warehouse,
            molecular.molecular_summary, molecular.cbioportal_study, survival.survival_analysis, quality.quality_dashboard,
            report.clinician_report, report.analysis_exports, interop.omop_cdm],
    asset_checks=[ingest.validation_gate, ingest.row_accounting, warehouse.great_expectations,
                  *result_checks.CHECKS],
    jobs=[automation.import_job, automation.nightly_job],
    schedules=[automation.nightly_schedule],
    sensors=[automation.drop_folder_sensor, automation.dead_runs_sensor],
)
