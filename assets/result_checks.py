"""Quality gates on the analyses' result tables: Great Expectations, blocking the report.

Each analysis asset has a blocking ``result_expectations`` check running the suites of the result
tables it writes (``validations/expectations/analytics/``, ``scope="results"`` of
:func:`clms_etl.warehouse.expectations.run_expectations`). A failed check stops everything
downstream in the run: the clinicians' report and the exports (``assets/report.py``) depend on
both analyses, so numbers that break a rule (a survival above 1, numbers at risk that grow, a
hazard ratio outside its interval, a Table 3 missing a case) never reach a clinician.
"""

import dagster as dg

from assets import unchanged
from assets.metadata import dagster_run_name, expectations_check_result
from assets.molecular import molecular_summary
from assets.resources import WarehouseResource
from assets.survival import survival_analysis
from assets.warehouse import suites_version


def _run(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, tables: list[str]) -> dg.AssetCheckResult:
    from clms_etl.warehouse.expectations import RESULTS, run_expectations

    suites = suites_version("analytics")
    if (repeated := unchanged.check_unchanged(context, suites=suites)) is not None:
        return repeated
    with warehouse.open(read_only=True) as wh:
        report = run_expectations(wh, scope=RESULTS, tables=tables, run_name=dagster_run_name(context))
    return expectations_check_result(report, unchanged.check_metadata(context, suites=suites))


@dg.asset_check(asset=survival_analysis, name="result_expectations", blocking=True,
                description="Great Expectations suites of the survival result tables "
                "(validations/expectations/analytics/): survival and CI in [0, 1] with lower <= estimate <= upper, "
                "numbers at risk never increasing, the product-limit, hazard ratios > 0 inside their CI or a "
                "reason, p-values in [0, 1], Table 1 percentages, the survival population of analytics.survival. "
                "Validations listed in the warehouse's Data Docs.")
def survival_result_expectations(context: dg.AssetCheckExecutionContext,
                                 warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from clms_etl.survival.tables import TABLES

    return _run(context, warehouse, [t.name for t in TABLES])


@dg.asset_check(asset=molecular_summary, name="result_expectations", blocking=True,
                description="Great Expectations suites of the molecular result tables "
                "(validations/expectations/analytics/): profile classes in their list and consistent with the "
                "anomaly counts, one profile and one Table 3 row per case of molecular_sample, recurrent "
                "alterations within the assessed and contributory cases, allele fractions in [0, 1], pseudonyms. "
                "Validations listed in the warehouse's Data Docs.")
def molecular_result_expectations(context: dg.AssetCheckExecutionContext,
                                  warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from clms_etl.molecular.tables import TABLES

    return _run(context, warehouse, [t.name for t in TABLES])


CHECKS = [survival_result_expectations, molecular_result_expectations]
