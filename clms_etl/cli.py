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


def main() -> None:  # pragma: no cover
    app()
