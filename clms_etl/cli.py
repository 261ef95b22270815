"""The ``clms-etl`` command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clms_etl.config import DEFAULT_INCOMING

app = typer.Typer(help="cLMS registry: synthetic deliveries, pipeline, exports.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """cLMS registry: synthetic deliveries, pipeline, exports."""


def _date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Drop folder to write into.")] = DEFAULT_INCOMING,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    defects: Annotated[float, typer.Option(help="Share of patients given a realistic chart defect (0-1); writes _truth/defects.csv.")] = 0.0,
    patients: Annotated[int | None, typer.Option(help="Scale run: number of patients (default: the 79-patient twin).")] = None,
    centres: Annotated[int | None, typer.Option(help="Scale run: number of centres reusing the four formats.")] = None,
    date: Annotated[str | None, typer.Option(help="Delivery date YYYY-MM-DD (default: today).")] = None,
    workers: Annotated[int, typer.Option(help="Processes for scale runs.")] = 2,
) -> None:
    """Write synthetic deliveries: by default the twin of the published cohort."""
    from clms_etl.synth.generate import generate

    if not 0 <= defects <= 1:
        raise typer.BadParameter("--defects is a rate between 0 and 1")
    if (patients is None) != (centres is None) and centres is not None:
        raise typer.BadParameter("--centres goes with --patients")
    total = patients or 79
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("patients written", total=total)

        def progress(centre: str, n: int) -> None:
            if centre != "molecular":
                bar.advance(task, n)
            bar.console.log(f"{centre}: {n} {'cases' if centre == 'molecular' else 'patients'}")

        result = generate(out, seed=seed, defect_rate=defects, patients=patients, centres=centres,
                          delivery_date=_date(date), progress=progress, workers=workers)
    console.print(f"[green]wrote[/] {len(result.files)} files under {out} (delivery {result.delivery_date})")
    if result.defects is not None:
        console.print(f"planted {result.defects.height} defects: {out / '_truth' / 'defects.csv'}")


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

    if incoming is not None:  # before the code location is imported: its partitions come from this drop folder
        os.environ["CLMS_INCOMING"] = str(incoming)
    from assets.run import run_nightly

    outcomes = run_nightly(incoming, refresh=refresh, accept_shrinkage=accept_shrinkage or ())
    for outcome in outcomes:
        console.print(outcome.line(), markup=False, highlight=False, soft_wrap=True)
    failed = [o for o in outcomes if o.failed]
    if failed:
        console.print(f"{len(failed)} failed: " + ", ".join(o.name for o in failed), markup=False)
        raise typer.Exit(1)


warehouse_app = typer.Typer(help="Warehouse administration.", no_args_is_help=True)
app.add_typer(warehouse_app, name="warehouse")


@warehouse_app.command("create")
def warehouse_create(
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: CLMS_WAREHOUSE_URL or the DuckDB file).")] = None,
) -> None:
    """Create the schema (base tables and the analytics views) if it does not exist."""
    from clms_etl.config import Settings
    from clms_etl.warehouse.load import Warehouse

    url = url or Settings.from_env().warehouse_url
    with Warehouse(url) as wh:
        wh.create()
    console.print(f"[green]schema ready[/] in {url.split('@')[-1]}")


@warehouse_app.command("rollback")
def warehouse_rollback(
    centre: Annotated[str, typer.Argument(help="Centre (or the laboratory) to take back to its previous delivery.")],
    incoming: Annotated[Path | None, typer.Option(help="Drop folder (default: CLMS_INCOMING or data/incoming).")] = None,
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: CLMS_WAREHOUSE_URL or the DuckDB file).")] = None,
) -> None:
    """Re-load the centre's delivery before the current one from the drop folder; newer folders move to _rolled_back/."""
    from clms_etl.config import Settings
    from clms_etl.keys import pseudonym_key
    from clms_etl.rollback import RollbackImpossible, rollback
    from clms_etl.warehouse.load import Warehouse

    settings = Settings.from_env()
    url = url or settings.warehouse_url
    with Warehouse(url) as wh:
        try:
            done = rollback(centre, incoming or settings.incoming, wh, settings.outputs, pseudonym_key(url))
        except RollbackImpossible as impossible:
            console.print(f"[red]rollback refused[/]: {impossible}")
            raise typer.Exit(1) from None
    console.print(f"[green]{centre}[/]: {done.replaced} replaced by the delivery of {done.restored}")
    console.print(done.summary, markup=False)
    for folder in done.moved:
        console.print(f"moved aside: {folder}", markup=False)
    console.print("run the nightly refresh (clms-etl run) to recompute the analyses")


@warehouse_app.command("roles")
def warehouse_roles(
    url: Annotated[str, typer.Option(envvar="CLMS_WAREHOUSE_URL", help="PostgreSQL URL of an administrator.")],
    loader_password: Annotated[str, typer.Option(envvar="CLMS_LOADER_PASSWORD", prompt=True, hide_input=True)],
    analyst_password: Annotated[str, typer.Option(envvar="CLMS_ANALYST_PASSWORD", prompt=True, hide_input=True)],
) -> None:
    """Create the PostgreSQL roles: a loader that writes, an analyst that reads `analytics` only."""
    from clms_etl.warehouse.roles import create_roles

    create_roles(url, loader_password, analyst_password)
    console.print("[green]roles created[/]: clms_loader (writes), clms_analyst (SELECT on analytics only)")


@warehouse_app.command("docs")
def warehouse_docs() -> None:
    """Regenerate docs/warehouse.md (data dictionary and example queries) from the schema."""
    from clms_etl.warehouse.docs import write

    console.print(f"wrote {write()}")


export_app = typer.Typer(help="Exports of the warehouse for other tools.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("analysis")
def export_analysis_command(
    outdir: Annotated[Path, typer.Argument(help="Folder to write into: one sub-folder per format, plus README.md.")],
    format: Annotated[list[str] | None, typer.Option("--format", "-f",
                                                     help="parquet, csv, xpt or dta; repeat for several (default: all).")] = None,
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: CLMS_WAREHOUSE_URL or the DuckDB file).")] = None,
) -> None:
    """Export the analysis views and result tables for statisticians (Parquet, CSV, SAS XPT, Stata)."""
    from clms_etl.config import Settings
    from clms_etl.report.exports import FORMATS, export_analysis
    from clms_etl.warehouse.load import Warehouse

    formats = format or list(FORMATS)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise typer.BadParameter(f"unknown format {', '.join(unknown)}: choose among {', '.join(FORMATS)}",
                                 param_hint="--format")
    with Warehouse(url or Settings.from_env().warehouse_url) as wh:
        result = export_analysis(wh, outdir, formats)
    for fmt, files in result.files.items():
        console.print(f"[green]{fmt}[/]: {len(files)} files in {outdir / fmt}")
    console.print(f"codebook: {result.readme}")


@export_app.command("cbioportal")
def export_cbioportal_command(
    outdir: Annotated[Path, typer.Argument(help="Study folder to write (created; previous files replaced).")],
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: CLMS_WAREHOUSE_URL or the DuckDB file).")] = None,
) -> None:
    """Export the molecular series as a cBioPortal study folder (docs/molecular.md)."""
    from clms_etl.config import Settings
    from clms_etl.molecular.run import export_cbioportal
    from clms_etl.warehouse.load import Warehouse

    with Warehouse(url or Settings.from_env().warehouse_url) as wh:
        files = export_cbioportal(wh, outdir)
    console.print(f"[green]cBioPortal study[/]: {len(files)} files in {outdir}")


@app.command("survival")
def survival_command(
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: CLMS_WAREHOUSE_URL or the DuckDB file).")] = None,
    outputs: Annotated[Path | None, typer.Option(help="Outputs folder (default: CLMS_OUTPUTS); figures/ and tables/ go in it.")] = None,
    min_follow_up_months: Annotated[float, typer.Option(help="Survival population: minimum follow-up, months.")] = 3.0,
    ci_transform: Annotated[str, typer.Option(help="Interval shown in the tables and Figure 2: log (R) or log-log.")] = "log",
    write_results: Annotated[bool, typer.Option(help="Replace the survival result tables in the warehouse.")] = True,
) -> None:
    """Survival analysis, Table 1, Table 2 and Figure 2 from the warehouse (docs/survival.md)."""
    from clms_etl.config import Settings
    from clms_etl.survival.km import CI_TRANSFORMS
    from clms_etl.survival.run import write_outputs
    from clms_etl.warehouse.load import Warehouse

    if ci_transform not in CI_TRANSFORMS:
        raise typer.BadParameter(f"choose among {', '.join(CI_TRANSFORMS)}", param_hint="--ci-transform")
    settings = Settings.from_env()
    with Warehouse(url or settings.warehouse_url) as wh:
        out = write_outputs(wh, outputs or settings.outputs, "cli", write_results=write_results,
                            min_follow_up_months=min_follow_up_months, ci_transform=ci_transform)
    if out.rows_written:
        console.print("[green]result tables[/]: " + ", ".join(f"{k} ({v})" for k, v in out.rows_written.items()))
    if out.results is None:
        console.print(f"[yellow]no survival analysis[/]: {out.status}")
        return
    for path in out.files.values():
        console.print(f"wrote {path}")
    console.print(out.results.survival_display())


def main() -> None:  # pragma: no cover
    """The ``clms-etl`` executable: leaves without the interpreter's shutdown, where duckdb 2.0's
    bindings print ~100 lines of "nanobind: leaked ..." (harmless; everything is written and closed
    by then) that would bury the command's last lines."""
    import os
    import sys

    try:
        app()
        code = 0
    except SystemExit as end:
        code = end.code
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
