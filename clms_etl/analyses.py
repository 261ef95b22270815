"""The analyses whose results the warehouse stores, declared to it: importing this module is enough.

The warehouse sits below the analyses (they read it) and never imports them; it learns their
result tables from :func:`clms_etl.warehouse.schema.declare_results`. Whatever builds, migrates,
re-keys or writes results to a warehouse imports this module first: the CLI, the Dagster
resources, the Alembic environment, the tests. A new analysis adds its ``TABLES`` here.
"""

from __future__ import annotations

from clms_etl.molecular import tables as molecular_tables
from clms_etl.survival import tables as survival_tables
from clms_etl.warehouse.schema import declare_results


def _code_lists() -> dict[str, tuple]:
    """The result tables' code lists named by their suites (the analyses imported on demand)."""
    from clms_etl.molecular import summary as molecular
    from clms_etl.survival import competing_study, endpoints, km, study
    from clms_etl.warehouse.analytics import POPULATIONS

    return {
        "SURVIVAL_ENDPOINTS": endpoints.ENDPOINTS,
        "UNIVARIATE_ENDPOINTS": study.UNIVARIATE_ENDPOINTS,
        "CI_TRANSFORMS": km.CI_TRANSFORMS,
        "SURVIVAL_ESTIMATES": ("median", *(f"survival_{t}m" for t in study.TIME_POINTS_MONTHS)),
        "COMPETING_OUTCOMES": tuple(o.key for o in competing_study.OUTCOMES),
        "COMPETING_CAUSES": competing_study.CAUSES,
        "SURVIVAL_POPULATIONS": tuple(POPULATIONS),
        "PROFILE_CLASSES": molecular.PROFILE_CLASSES,
        "FUSION_STATES": molecular.FUSION_STATES,
        "ALTERATIONS": molecular.ALTERATIONS,
    }


declare_results([*survival_tables.TABLES, *molecular_tables.TABLES], vocabularies=_code_lists)
