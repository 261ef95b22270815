"""Fixtures of the report tests: the twin cohort through the real readers, in a DuckDB warehouse,
and sections built from its analysis views with real matplotlib figures."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from clms_etl.report.sections import ReportFigure, ReportTable, Section
from clms_etl.warehouse import Warehouse
from tests.warehouse.conftest import pg_admin_url, pg_databases, pg_url  # noqa: F401  (PostgreSQL fixtures)

DELIVERY_DATE = dt.date(2026, 11, 23)
KEY = b"report-test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def report_imports(tmp_path_factory) -> list:
    """The synthetic deliveries with planted defects (so that there are data queries and quarantined
    rows per centre), read and validated by the project's readers: (source, delivery, validated)."""
    from clms_etl.centres import load_registry
    from clms_etl.deliveries import latest_delivery
    from clms_etl.centre_import import read_and_validate
    from clms_etl.synth.generate import generate

    drop = tmp_path_factory.mktemp("report_drop") / "incoming"
    generate(drop, seed=0, delivery_date=DELIVERY_DATE, defect_rate=0.1)
    out = []
    for name, centre in load_registry(drop).items():
        delivery = latest_delivery(drop, name)
        imported = read_and_validate(centre, delivery, KEY)
        assert imported.validated is not None, imported.failure
        out.append((name, delivery, imported.validated))
    return out


def load_imports(wh: Warehouse, imports: list) -> None:
    wh.create()
    for name, delivery, validated in imports:
        wh.load_delivery(name, delivery.date, [delivery.path / f for f, _ in delivery.files], validated,
                         run_id="report-test-load", expectations=False, key=KEY)


@pytest.fixture(scope="session")
def report_warehouse(report_imports, tmp_path_factory) -> Warehouse:
    """The deliveries of ``report_imports`` loaded into DuckDB."""
    root = tmp_path_factory.mktemp("report_wh")
    with Warehouse(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        load_imports(wh, report_imports)
        yield wh


def age_histogram(summary: pl.DataFrame, folder: Path) -> tuple[Path, Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(summary["age_at_diagnosis_years"].drop_nulls().to_list(), bins=10, color="#2b5d8a")
    ax.set_xlabel("age at diagnosis (years)")
    ax.set_ylabel("patients")
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / "age.png", folder / "age.svg"
    fig.savefig(png)
    fig.savefig(svg)
    return png, svg


def follow_up_plot(summary: pl.DataFrame, folder: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    months = sorted(summary["follow_up_months"].drop_nulls().to_list())
    ax.step(months, range(len(months), 0, -1), where="post", color="#c44e52")
    ax.set_xlabel("follow-up (months)")
    fig.tight_layout()
    png = folder / "follow_up.png"
    fig.savefig(png)
    return png


@pytest.fixture(scope="session")
def analysis_sections(report_warehouse, tmp_path_factory) -> list[Section]:
    """Two sections standing for the analyses': tables from analytics.patient_summary, real figures."""
    summary = report_warehouse.read_sql("SELECT * FROM analytics.patient_summary")
    folder = tmp_path_factory.mktemp("figures")
    png, svg = age_histogram(summary, folder)
    by_centre = (summary.group_by("centre").agg(pl.len().alias("patients"),
                                                pl.col("age_at_diagnosis_years").median().alias("median_age_years"),
                                                pl.col("in_survival_population").sum().alias("followed_3_months"))
                 .sort("centre"))
    by_grade = (summary.group_by("grade_label").agg(pl.len().alias("patients"))
                .with_columns(pl.col("grade_label").fill_null("not specified")).sort("grade_label"))
    by_site = summary.group_by("site").agg(pl.len().alias("n")).sort("site", nulls_last=True)
    return [
        Section("cohort", "Cohort", "Patients of the registry.\n\nPer centre and grade.",
                tables=(ReportTable("cohort_centres", "Patients per centre", by_centre, note="Median age in years."),
                        ReportTable("cohort_grades", "FNCLCC grade", by_grade)),
                figures=(ReportFigure("age", "Age at diagnosis", png, svg, note="All patients."),)),
        Section("follow_up", "Follow-up", "",
                tables=(ReportTable("sites", "Primary site", by_site),),
                figures=(ReportFigure("follow_up", "Patients still followed, by months since diagnosis",
                                      follow_up_plot(summary, folder)),)),
    ]


@pytest.fixture(scope="session")
def built_report(report_warehouse, analysis_sections, tmp_path_factory):
    from clms_etl.report.build import build_report

    return build_report(report_warehouse, analysis_sections, tmp_path_factory.mktemp("outputs") / "report",
                        run_id="run-1234abcd")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium: skipped without it, unless ``CLMS_REQUIRE_CHROMIUM=1`` (``.ci/run``)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = ("headless Chromium not found: install it (`apt-get install -y chromium`) or run `.ci/run`, "
                   "which installs it")
        if os.environ.get("CLMS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message + " (CLMS_REQUIRE_CHROMIUM=1 makes this test mandatory)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def twin_report(tmp_path_factory):
    """The report of the twin cohort with the real analyses' sections (Table 1, survival and Figure 2,
    Table 2, Table 3 and the OncoPrint), as the nightly builds it: analyses stored, then read back."""
    import clms_etl.analyses  # noqa: F401  (declares the result tables)
    from clms_etl.molecular.run import molecular_sections
    from clms_etl.molecular.run import write_outputs as molecular_outputs
    from clms_etl.report.build import build_report
    from clms_etl.survival.report_sections import sections as survival_sections
    from clms_etl.survival.run import write_outputs as survival_outputs
    from tests.warehouse.helpers import load_twin

    root = tmp_path_factory.mktemp("twin_report")
    outputs = root / "outputs"
    with Warehouse(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        wh.create()
        load_twin(wh, root)
        survival_outputs(wh, outputs, "twin-report-run")
        molecular_outputs(wh, outputs, "twin-report-run")
        report = outputs / "report"
        yield build_report(wh, [*survival_sections(wh, report), *molecular_sections(wh, report)], report,
                           run_id="twin-report-run")
