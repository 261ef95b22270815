"""The installed ``clms-etl`` command: the library's commands (:mod:`clms_etl.cli`) plus ``run``.

``run`` starts the nightly through Dagster (:mod:`assets.run`), so it belongs to the Dagster
layer: the library, which knows nothing of Dagster, cannot register it itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import validations.canonical  # noqa: F401  (declares what the validate step checks: rollback re-validates)
from clms_etl.cli import app, console, main

__all__ = ["app", "main"]


@app.command("run")
def run_command(
    incoming: Annotated[Path | None, typer.Option(help="Drop folder (default: CLMS_INCOMING or data/incoming).")] = None,
    refresh: Annotated[bool, typer.Option(help="After the imports, run the nightly refresh (checks, analyses, report).")] = True,
    accept_shrinkage: Annotated[list[str] | None, typer.Option(
        "--accept-shrinkage", help="Centre whose delivery may remove more patients than the shrinkage guard allows "
        "(you checked the export is complete); repeat for several.")] = None,
) -> None:
    """The nightly through Dagster (DAGSTER_HOME): import every centre that delivered, then the nightly refresh."""
    import os
    import warnings

    # Dagster's beta / preview notices are for the code's authors, not the operator's console
    # (the runs' full logs are in the UI); the demo does the same.
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")

    if incoming is not None:  # before the code location is imported: its partitions come from this drop folder
        os.environ["CLMS_INCOMING"] = str(incoming)
    # the key is the operator's setting: refused once, here, not by every run's steps with Dagster's stack traces
    from clms_etl.cli import key_refused
    from clms_etl.config import Settings
    from clms_etl.keys import PseudonymKeyError, pseudonym_key

    try:
        pseudonym_key(Settings.from_env().warehouse_url)
    except PseudonymKeyError as refused:
        raise key_refused(refused) from None
    from assets.run import run_nightly

    outcomes = run_nightly(incoming, refresh=refresh, accept_shrinkage=accept_shrinkage or ())
    for outcome in outcomes:
        console.print(outcome.line(), markup=False, highlight=False, soft_wrap=True)
    failed = [o for o in outcomes if o.failed]
    if failed:
        console.print(f"{len(failed)} failed: " + ", ".join(o.name for o in failed), markup=False)
        raise typer.Exit(1)

