"""Resources of the code location, configured from the environment.

Local configuration: folders read once from the environment with the project's defaults
(``data/incoming``, ``data/outputs``). Production configuration (``CLMS_DEPLOYMENT=production``):
folders from ``EnvVar``s that must be set.

Secrets are never configuration values, in either configuration: Dagster writes resource
configuration into its run storage and serves it on its GraphQL API (the UI's Resources page).
:class:`PseudonymKey` and :class:`WarehouseResource` hold the *names* of the environment
variables (``CLMS_PSEUDONYM_KEY`` / ``CLMS_PSEUDONYM_KEY_FILE``, ``CLMS_WAREHOUSE_URL``) and read
them when a step runs; a warehouse URL given inline (tests) may not carry a password.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import field_validator

import clms_etl.analyses  # noqa: F401  (declares the result tables to the warehouse)
from assets.handoff import CentreHandoff
from clms_etl.config import Settings
from clms_etl.keys import ENV_KEY, ENV_KEY_FILE
from clms_etl.warehouse.analytics import DEFAULT_POPULATION


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
    """The HMAC key of pseudonyms, read when a step runs from the environment variables named here
    (the key itself, or a secrets file holding it); never a configuration value."""

    key_env: str = ENV_KEY
    key_file_env: str = ENV_KEY_FILE

    def secret(self, warehouse_url: str) -> bytes:
        """The key for deliveries bound for ``warehouse_url``: refused when missing, weak, or the
        public demo key outside the demo (:func:`clms_etl.keys.pseudonym_key`)."""
        from clms_etl.keys import pseudonym_key

        return pseudonym_key(warehouse_url, variable=self.key_env, file_variable=self.key_file_env)


class WarehouseResource(dg.ConfigurableResource):
    """The harmonised warehouse: its SQLAlchemy URL is read when a step runs from the variable
    ``url_env`` (default ``CLMS_WAREHOUSE_URL``; unset: the DuckDB file of the local defaults).
    ``url`` may name a warehouse inline (tests) if it carries no password."""

    url: str = ""
    url_env: str = "CLMS_WAREHOUSE_URL"
    local_default: bool = True  # url_env unset: the local DuckDB file (False: an error)

    @field_validator("url")
    @classmethod
    def _no_password(cls, url: str) -> str:
        if url and sa.engine.make_url(url).password:
            raise ValueError("a warehouse URL with a password cannot be a configuration value (Dagster stores "
                             "and shows it): put it in CLMS_WAREHOUSE_URL and leave url empty")
        return url

    @property
    def resolved_url(self) -> str:
        url = self.url or os.environ.get(self.url_env)
        if url:
            return url
        if not self.local_default:
            raise RuntimeError(f"{self.url_env} is not set: the warehouse URL is read from it at run time")
        return Settings.from_env().warehouse_url

    def describe(self) -> str:
        """The warehouse for metadata and logs: backend and database, never a user or password."""
        from clms_etl.report.quality import describe_backend

        return describe_backend(self.resolved_url)

    def open(self, *, read_only: bool = False):
        """The warehouse; ``read_only`` for a step that only reads (on DuckDB, such steps run side by
        side and a writer waits for them: :mod:`clms_etl.warehouse.file_lock`)."""
        from clms_etl.warehouse.load import Warehouse

        return Warehouse(self.resolved_url, read_only=read_only)


class SurvivalSettings(dg.ConfigurableResource):
    """Parameters of the survival analysis (defaults: the study's), one resource so that the
    ``survival_analysis`` asset and the report that shows its results always use the same ones
    (set them for a run in the launchpad under ``resources: survival: config:``)."""

    # survival population: preset (paper = the study's rule; censored_before_minimum = the default, see
    # clms_etl.warehouse.analytics.POPULATIONS) and minimum follow-up; the analytics views follow the
    # rule the analysis last ran with
    population: str = DEFAULT_POPULATION
    min_follow_up_months: float = 3.0
    ci_transform: str = "log"  # interval shown in the tables and Figure 2: log (R default) or log-log

    def options(self) -> dict:
        """Keyword arguments of :func:`clms_etl.survival.study.analyse`."""
        return {"population": self.population, "min_follow_up_months": self.min_follow_up_months,
                "ci_transform": self.ci_transform}


def local_resources() -> dict:
    settings = Settings.from_env()
    return {
        "drop_folder": DropFolder(path=str(settings.incoming)),
        "outputs": OutputsFolder(path=str(settings.outputs)),
        "warehouse": WarehouseResource(),
        "pseudonym_key": PseudonymKey(),
        "survival": SurvivalSettings(),
        "centre_handoff": CentreHandoff(path=str(settings.handoff)),
    }


def production_resources() -> dict:
    return {
        "drop_folder": DropFolder(path=dg.EnvVar("CLMS_INCOMING")),
        "outputs": OutputsFolder(path=dg.EnvVar("CLMS_OUTPUTS")),
        "warehouse": WarehouseResource(local_default=False),  # never the DuckDB default in production
        "pseudonym_key": PseudonymKey(),
        "survival": SurvivalSettings(),
        "centre_handoff": CentreHandoff(path=dg.EnvVar("CLMS_HANDOFF")),
    }
