"""Quality gates on the analyses' result tables: Great Expectations, blocking the report.

Each analysis asset has a blocking ``result_expectations`` check running the suites of the result
tables it writes (``validations/expectations/analytics/``, ``scope="results"`` of
:func:`clms_etl.warehouse.expectations.run_expectations`). A failed check stops everything
downstream in the run: the clinicians' report and the exports (``assets/report.py``) depend on
both analyses, so numbers that break a rule (a survival above 1, numbers at risk that grow, a
hazard ratio outside its interval, a Table 3 missing a case) never reach a clinician.
"""

import dagster as dg

from assets.metadata import expectations_check_result
from assets.molecular import molecular_summary
from assets.resources import WarehouseResource
from assets.survival import survival_analysis


def _run(warehouse: WarehouseResource, analysis: str, tables: list[str]) -> dg.AssetCheckResult:
    from clms_etl.warehouse.expectations import RESULTS, results_data_docs_dir, run_expectations

    with warehouse.open() as wh:
        report = run_expectations(wh, scope=RESULTS, tables=tables, data_docs_dir=results_data_docs_dir(wh, analysis))
    return expectations_check_result(report)


@dg.asset_check(asset=survival_analysis, name="result_expectations", blocking=True, pool="warehouse",
                description="Great Expectations suites of the survival result tables "
                "(validations/expectations/analytics/): survival and CI in [0, 1] with lower <= estimate <= upper, "
                "numbers at risk never increasing, the product-limit, hazard ratios > 0 inside their CI or a "
                "reason, p-values in [0, 1], Table 1 percentages, the survival population of analytics.survival. "
                "Data Docs in data_docs_analytics/survival_analysis/ next to the warehouse's.")
def survival_result_expectations(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from clms_etl.survival.tables import TABLES

    return _run(warehouse, "survival_analysis", [t.name for t in TABLES])


@dg.asset_check(asset=molecular_summary, name="result_expectations", blocking=True, pool="warehouse",
                description="Great Expectations suites of the molecular result tables "
                "(validations/expectations/analytics/): profile classes in their list and consistent with the "
                "anomaly counts, one profile and one Table 3 row per case of molecular_sample, recurrent "
                "alterations within the assessed and contributory cases, allele fractions in [0, 1], pseudonyms. "
                "Data Docs in data_docs_analytics/molecular_summary/ next to the warehouse's.")
def molecular_result_expectations(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from clms_etl.molecular.tables import TABLES

    return _run(warehouse, "molecular_summary", [t.name for t in TABLES])


CHECKS = [survival_result_expectations, molecular_result_expectations]
