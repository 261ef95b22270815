"""The ``clms-etl`` command line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import clms_etl.analyses  # noqa: F401  (declares the result tables to the warehouse)
from clms_etl.config import DEFAULT_INCOMING
from clms_etl.disclosure import DEFAULT_K_THRESHOLD
from clms_etl.files import private_process

app = typer.Typer(help="cLMS registry: synthetic deliveries, pipeline, exports.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """cLMS registry: synthetic deliveries, pipeline, exports."""
    private_process()  # every file a command writes holds or derives from row-level data


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


def _no_secret_on_command_line(ctx: typer.Context, param: typer.CallbackParam, value):
    """A password typed on the command line is readable by every user of the machine (``ps``)
    and kept in shell histories: warehouse URLs with a password and role passwords come from the
    environment (or a prompt), never from an argument."""
    import sqlalchemy as sa

    # by name: typer may bring its own copy of click and its ParameterSource enum
    if value and getattr(ctx.get_parameter_source(param.name), "name", None) == "COMMANDLINE":
        secret = "password" in param.name or (isinstance(value, str) and "://" in value
                                               and sa.engine.make_url(value).password)
        if secret:
            raise typer.BadParameter("no password on the command line (other users can read it): set "
                                     + (", ".join(param.envvar) if isinstance(param.envvar, list | tuple)
                                        else param.envvar or "CLMS_WAREHOUSE_URL") + " instead.")
    return value


warehouse_app = typer.Typer(help="Warehouse administration.", no_args_is_help=True)
app.add_typer(warehouse_app, name="warehouse")


@warehouse_app.command("create")
def warehouse_create(
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL without password (default: CLMS_WAREHOUSE_URL or the DuckDB file).", callback=_no_secret_on_command_line)] = None,
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
    url: Annotated[str, typer.Option(envvar="CLMS_WAREHOUSE_URL", help="PostgreSQL URL of an administrator.", callback=_no_secret_on_command_line)],
    loader_password: Annotated[str, typer.Option(envvar="CLMS_LOADER_PASSWORD", prompt=True, hide_input=True, callback=_no_secret_on_command_line)],
    analyst_password: Annotated[str, typer.Option(envvar="CLMS_ANALYST_PASSWORD", prompt=True, hide_input=True, callback=_no_secret_on_command_line)],
) -> None:
    """Create the PostgreSQL roles: a loader that writes, an analyst that reads `analytics` only."""
    from clms_etl.warehouse.roles import create_roles

    create_roles(url, loader_password, analyst_password)
    console.print("[green]roles created[/]: clms_loader (writes), clms_analyst (SELECT on analytics only)")


def key_refused(exc: Exception) -> typer.Exit:
    """A refused pseudonym key (missing, weak, the demo key, another key than the warehouse's): one line saying
    why and how to fix it, and the exit to raise (code 1)."""
    console.print(f"[red]refused[/]: {exc}")
    return typer.Exit(1)


@warehouse_app.command("rekey")
def warehouse_rekey(
    mapping: Annotated[Path, typer.Option(help="CSV from the centres, UTF-8, with the columns centre and local_id "
                                               "(the hospital numbers of every patient they delivered); read, "
                                               "never stored.", exists=True, dir_okay=False)],
) -> None:
    """Re-pseudonymise the warehouse with a new key, in one transaction.

    Every pseudonym of every table is recomputed from the mapping (old key -> new key) and the
    warehouse's key fingerprint replaced; the next deliveries are read with the new key. Keys
    from the environment only: the old one in CLMS_OLD_PSEUDONYM_KEY or CLMS_OLD_PSEUDONYM_KEY_FILE,
    the new one in CLMS_PSEUDONYM_KEY or CLMS_PSEUDONYM_KEY_FILE; the warehouse is CLMS_WAREHOUSE_URL.
    """
    import polars as pl

    from clms_etl import keys
    from clms_etl.config import Settings
    from clms_etl.warehouse.load import KeyMismatch, Warehouse

    url = Settings.from_env().warehouse_url
    try:
        old_key = keys.pseudonym_key(url, variable=keys.ENV_OLD_KEY, file_variable=keys.ENV_OLD_KEY_FILE)
        new_key = keys.pseudonym_key(url)
        pairs = pl.read_csv(mapping, infer_schema=False)  # hospital numbers stay text (leading zeros)
        with Warehouse(url) as wh:
            report = wh.rekey(pairs, old_key, new_key, run_id="cli")
    except (keys.PseudonymKeyError, KeyMismatch, ValueError, pl.exceptions.PolarsError) as exc:
        raise key_refused(exc) from None
    console.print(f"[green]re-keyed[/] {report.detail}")


@warehouse_app.command("adopt-key")
def warehouse_adopt_key() -> None:
    """Record the key fingerprint of a warehouse loaded before fingerprints existed (migration 0003).

    The key (CLMS_PSEUDONYM_KEY or CLMS_PSEUDONYM_KEY_FILE) must be the one its pseudonyms were
    computed with: loads with any other key are refused from then on.
    """
    from clms_etl import keys
    from clms_etl.config import Settings
    from clms_etl.warehouse.load import KeyMismatch, Warehouse

    url = Settings.from_env().warehouse_url
    try:
        key = keys.pseudonym_key(url)
        with Warehouse(url) as wh:
            key_id = wh.adopt_key(key, run_id="cli")
    except (keys.PseudonymKeyError, KeyMismatch) as exc:
        raise key_refused(exc) from None
    console.print(f"[green]key {key_id} recorded[/]")


@warehouse_app.command("docs")
def warehouse_docs() -> None:
    """Regenerate docs/warehouse.md (data dictionary and example queries) from the schema."""
    from clms_etl.warehouse.docs import write

    console.print(f"wrote {write()}")


export_app = typer.Typer(help="Exports of the warehouse for other tools.", no_args_is_help=True)
app.add_typer(export_app, name="export")
K_THRESHOLD_HELP = ("Smallest group of patients sharing the quasi-identifiers (sex, age band, diagnosis year, site, "
                    "centre) a shareable export must reach; lower it only with the data protection officer.")


@contextmanager
def _disclosure_guard() -> Iterator[None]:
    """A blocked shareable export (or one whose stored results are stale): its message and exit status 1,
    no traceback."""
    from clms_etl.disclosure import DisclosureBlocked
    from clms_etl.molecular.run import StaleResults

    try:
        yield
    except (DisclosureBlocked, StaleResults) as e:
        console.print(f"[red]blocked[/]: {e}")
        raise typer.Exit(1) from None


@export_app.command("analysis")
def export_analysis_command(
    outdir: Annotated[Path, typer.Argument(help="Folder to write into: one sub-folder per format, plus README.md.")],
    format: Annotated[list[str] | None, typer.Option("--format", "-f",
                                                     help="parquet, csv, xpt or dta; repeat for several (default: all).")] = None,
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL without password (default: CLMS_WAREHOUSE_URL or the DuckDB file).", callback=_no_secret_on_command_line)] = None,
    shareable: Annotated[bool, typer.Option(help="Files that may leave the registry: age bands, quasi-identifiers "
                                            "suppressed in small groups, not written below --k-threshold. "
                                            "Default: in-house (full detail, k reported only).")] = False,
    k_threshold: Annotated[int, typer.Option(help=K_THRESHOLD_HELP)] = DEFAULT_K_THRESHOLD,
) -> None:
    """Export the analysis views and result tables for statisticians (Parquet, CSV, SAS XPT, Stata): no
    calendar date (days from diagnosis), k-anonymity in the codebook."""
    from clms_etl.config import Settings
    from clms_etl.report.exports import FORMATS, export_analysis
    from clms_etl.warehouse.load import Warehouse

    formats = format or list(FORMATS)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise typer.BadParameter(f"unknown format {', '.join(unknown)}: choose among {', '.join(FORMATS)}",
                                 param_hint="--format")
    with Warehouse(url or Settings.from_env().warehouse_url) as wh, _disclosure_guard():
        result = export_analysis(wh, outdir, formats, shareable=shareable, k_threshold=k_threshold)
    for fmt, files in result.files.items():
        console.print(f"[green]{fmt}[/]: {len(files)} files in {outdir / fmt}")
    console.print(f"codebook: {result.readme}")
    console.print(f"{'shareable' if shareable else 'in-house'} export, {result.disclosure.summary()}")


@export_app.command("cbioportal")
def export_cbioportal_command(
    outdir: Annotated[Path, typer.Argument(help="Study folder to write (created; previous files replaced).")],
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL without password (default: CLMS_WAREHOUSE_URL or the DuckDB file).", callback=_no_secret_on_command_line)] = None,
    k_threshold: Annotated[int, typer.Option(help=K_THRESHOLD_HELP)] = DEFAULT_K_THRESHOLD,
) -> None:
    """Export the molecular series as a cBioPortal study folder (docs/molecular.md); not written when a
    group of patients sharing sex, age band and site is smaller than --k-threshold."""
    from clms_etl.config import Settings
    from clms_etl.molecular.run import export_cbioportal
    from clms_etl.warehouse.load import Warehouse

    with Warehouse(url or Settings.from_env().warehouse_url) as wh, _disclosure_guard():
        study = export_cbioportal(wh, outdir, k_threshold)
    console.print(f"[green]cBioPortal study[/]: {len(study.files)} files in {outdir}")
    console.print(f"disclosure control: {study.disclosure.summary()}")


@export_app.command("omop")
def export_omop_command(
    target: Annotated[str, typer.Argument(
        help="Folder (CSV files, an OMOP DuckDB file, unmapped.csv, quality.csv) or database URL without password "
             "(duckdb:///..., postgresql+psycopg://...; the password from PGPASSWORD or ~/.pgpass).",
        callback=_no_secret_on_command_line)],
    url: Annotated[str | None, typer.Option(help="Warehouse URL without password (default: CLMS_WAREHOUSE_URL or the DuckDB file).", callback=_no_secret_on_command_line)] = None,
    exact_dates: Annotated[bool, typer.Option(help="Keep the warehouse's dates (in-house OMOP warehouse). Default: "
                                               "every date of a patient shifted back by the same 1-365 days, drawn "
                                               "from the pseudonym key (an export that may leave the registry).")] = False,
    schema: Annotated[str, typer.Option(help="Schema of the CDM tables in the target database.")] = "omop",
    replace: Annotated[bool, typer.Option(help="Drop and recreate the target schema when it holds an earlier export.")] = False,
) -> None:
    """Export the registry as OMOP CDM v5.4 with the Oncology extension (docs/omop.md): official DDL, pinned
    concepts, the Data Quality Dashboard's checks; exit status 1 when a check fails."""
    from clms_etl.config import Settings
    from clms_etl.keys import PseudonymKeyError, pseudonym_key
    from clms_etl.omop.export import TargetRefused, export_omop
    from clms_etl.warehouse.load import Warehouse

    warehouse_url = url or Settings.from_env().warehouse_url
    try:
        key = None if exact_dates else pseudonym_key(warehouse_url)
        with Warehouse(warehouse_url) as wh:
            result = export_omop(wh, target, dates="exact" if exact_dates else "shifted", key=key, schema=schema,
                                 replace=replace)
    except (PseudonymKeyError, TargetRefused) as exc:
        console.print(f"[red]refused[/]: {exc}", markup=True)
        raise typer.Exit(1) from None
    console.print(f"[green]OMOP CDM v5.4[/] in {result.target}: {result.summary()}", highlight=False, soft_wrap=True)
    for name, path in result.files.items():
        if name in ("duckdb", "unmapped", "quality"):
            console.print(f"{name}: {path}", markup=False, soft_wrap=True)
    for row in result.failures().iter_rows(named=True):
        console.print(f"[red]check failed[/]: {row['check']} {row['table']}.{row['field']}: {row['rows']} rows",
                      soft_wrap=True)
    if not result.passed:
        raise typer.Exit(1)


@app.command("survival")
def survival_command(
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL without password (default: CLMS_WAREHOUSE_URL or the DuckDB file).", callback=_no_secret_on_command_line)] = None,
    outputs: Annotated[Path | None, typer.Option(help="Outputs folder (default: CLMS_OUTPUTS); figures/ and tables/ go in it.")] = None,
    population: Annotated[str, typer.Option(help="Survival population preset: censored_before_minimum (default) or "
                                                 "paper (the study's rule, early deaths left out).")] = "censored_before_minimum",
    min_follow_up_months: Annotated[float, typer.Option(help="Survival population: minimum follow-up, months.")] = 3.0,
    ci_transform: Annotated[str, typer.Option(help="Interval shown in the tables and Figure 2: log (R) or log-log.")] = "log",
    write_results: Annotated[bool, typer.Option(help="Replace the survival result tables in the warehouse.")] = True,
) -> None:
    """Survival analysis, Table 1, Table 2 and Figure 2 from the warehouse (docs/survival.md)."""
    from clms_etl.config import Settings
    from clms_etl.survival.km import CI_TRANSFORMS
    from clms_etl.survival.run import write_outputs
    from clms_etl.warehouse.analytics import POPULATIONS
    from clms_etl.warehouse.load import Warehouse

    if ci_transform not in CI_TRANSFORMS:
        raise typer.BadParameter(f"choose among {', '.join(CI_TRANSFORMS)}", param_hint="--ci-transform")
    if population not in POPULATIONS:
        raise typer.BadParameter(f"choose among {', '.join(POPULATIONS)}", param_hint="--population")
    settings = Settings.from_env()
    with Warehouse(url or settings.warehouse_url) as wh:
        out = write_outputs(wh, outputs or settings.outputs, "cli", write_results=write_results,
                            population=population, min_follow_up_months=min_follow_up_months,
                            ci_transform=ci_transform)
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
