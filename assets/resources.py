"""Resources of the code location, configured from the environment.

Local configuration: plain values read once from the environment with the project's defaults
(``data/incoming``, ``data/warehouse.duckdb``, ``data/outputs``, the demo key).
Production configuration (``CLMS_DEPLOYMENT=production``): every value comes from an
``EnvVar`` and must be set — a PostgreSQL URL, a real pseudonym key.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.handoff import CentreHandoff
from clms_etl.config import Settings


class DropFolder(dg.ConfigurableResource):
    """Where centres drop their deliveries (one sub-folder per centre and date)."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)


class OutputsFolder(dg.ConfigurableResource):
    """Where files for people go: query lists, report, figures, exports — owner-only."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from clms_etl.files import private_dir

        private_dir(self.root)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        from clms_etl.files import make_private

        # what matplotlib, xlsxwriter or pyreadstat wrote with the process umask
        make_private(self.root)


class PseudonymKey(dg.ConfigurableResource):
    """The HMAC key of pseudonyms: inline (``key``) or a secrets file (``key_file``).

    Left empty, the built-in demo key is used, which the warehouse accepts only on DuckDB.
    """

    key: str = ""
    key_file: str = ""

    def secret(self, warehouse_url: str) -> bytes:
        """The key for deliveries bound for ``warehouse_url`` (refused on PostgreSQL if unset)."""
        from clms_etl.keys import ENV_KEY, ENV_KEY_FILE, pseudonym_key

        return pseudonym_key(warehouse_url, {ENV_KEY: self.key, ENV_KEY_FILE: self.key_file})


class WarehouseResource(dg.ConfigurableResource):
    """The harmonised warehouse (any SQLAlchemy URL; DuckDB file by default)."""

    url: str

    def open(self):
        from clms_etl.warehouse.load import Warehouse

        return Warehouse(self.url)


class SurvivalSettings(dg.ConfigurableResource):
    """Parameters of the survival analysis (defaults: the study's), one resource so that the
    ``survival_analysis`` asset and the report that shows its results always use the same ones
    (set them for a run in the launchpad under ``resources: survival: config:``)."""

    min_follow_up_months: float = 3.0  # survival population: at least this follow-up
    ci_transform: str = "log"  # interval shown in the tables and Figure 2: log (R default) or log-log

    def options(self) -> dict:
        """Keyword arguments of :func:`clms_etl.survival.study.analyse`."""
        return {"min_follow_up_months": self.min_follow_up_months, "ci_transform": self.ci_transform}


def local_resources() -> dict:
    settings = Settings.from_env()
    import os

    return {
        "drop_folder": DropFolder(path=str(settings.incoming)),
        "outputs": OutputsFolder(path=str(settings.outputs)),
        "warehouse": WarehouseResource(url=settings.warehouse_url),
        "pseudonym_key": PseudonymKey(key=os.environ.get("CLMS_PSEUDONYM_KEY", ""),
                                      key_file=os.environ.get("CLMS_PSEUDONYM_KEY_FILE", "")),
        "survival": SurvivalSettings(),
        "centre_handoff": CentreHandoff(path=str(settings.handoff)),
    }


def production_resources() -> dict:
    return {
        "drop_folder": DropFolder(path=dg.EnvVar("CLMS_INCOMING")),
        "outputs": OutputsFolder(path=dg.EnvVar("CLMS_OUTPUTS")),
        "warehouse": WarehouseResource(url=dg.EnvVar("CLMS_WAREHOUSE_URL")),
        "pseudonym_key": PseudonymKey(key_file=dg.EnvVar("CLMS_PSEUDONYM_KEY_FILE")),
        "survival": SurvivalSettings(),
        "centre_handoff": CentreHandoff(path=dg.EnvVar("CLMS_HANDOFF")),
    }
