"""The data stewards' quality dashboard: one static HTML page, written every night.

Modelled on OHDSI's Data Quality Dashboard: per source (centre or laboratory) and per Kahn
category (conformance, completeness, plausibility), the checks — the rules of the data queries —
(their Kahn category declared in the rule registry, ``clms_etl/data/rules.toml``), with the
number and share of the current delivery's rows each one flags, its threshold and
whether it passed; then the trend over the last nights from the warehouse's delivery history.

Conventions:

* *rows read* of a source: the rows read from its current delivery, every table summed
  (``delivery.rows_read``); a check's *rows failing*: the distinct rows (table and row, or file
  and line for a file-level problem) of that delivery it raised a query on; *share failing* =
  rows failing / rows read;
* a check *fails* when its share failing exceeds its threshold (:data:`THRESHOLD`, DQD's default
  of 5 %), or, for a rule of severity error, as soon as one row is quarantined for it — an
  error always sends the row to quarantine;
* the trend: the :data:`TREND_NIGHTS` latest deliveries of each source, with rows read,
  quarantined and their share (older deliveries' queries are replaced with their rows, so the
  per-rule counts are the current delivery's only);
* counts and rule names only, never a value or a pseudonym: the page may be shared.

The page has no script and no external resource (CSS inline): it opens the same with no network.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import jinja2
import polars as pl

from clms_etl.rules import CATEGORIES, registry

THRESHOLD = 0.05  # share of rows failing above which a warning check fails (OHDSI DQD's default)
TREND_NIGHTS = 14
TEMPLATE = Path(__file__).with_name("dashboard.html.j2")


CHECKS_SQL = """
SELECT q.centre, q.rule, q.severity,
       COUNT(DISTINCT COALESCE(q.table_name || ':' || q.row_id,
                               q.source_file || ':' || COALESCE(CAST(q.source_row AS TEXT), ''))) AS rows_failing,
       COUNT(*) AS queries
FROM data_query q JOIN delivery d ON d.delivery_id = q.delivery_id AND d.is_current
GROUP BY q.centre, q.rule, q.severity
"""
TREND_SQL = """
SELECT centre, delivery_date, loaded_at, is_current, rows_read, rows_quarantined
FROM delivery ORDER BY centre, loaded_at DESC
"""


@dataclass(frozen=True)
class QualityDashboard:
    """What the page shows, as frames (see the module docstring for the conventions)."""

    checks: pl.DataFrame  # one row per source and rule raised
    categories: pl.DataFrame  # one row per source and Kahn category
    trend: pl.DataFrame  # the latest deliveries of each source
    generated_at: dt.datetime


def build_dashboard(wh) -> QualityDashboard:
    """The dashboard's figures from the warehouse ``wh`` (a :class:`~clms_etl.warehouse.Warehouse`)."""
    current = wh.read_sql("SELECT centre, delivery_date, rows_read FROM delivery WHERE is_current").select(
        "centre", "delivery_date", pl.col("rows_read").fill_null(0).cast(pl.Int64))
    checks = wh.read_sql(CHECKS_SQL).cast({"rows_failing": pl.Int64, "queries": pl.Int64})
    category_of = {rule.id: rule.category for rule in registry().values()}  # clms_etl/data/rules.toml
    checks = (checks.with_columns(category=pl.col("rule").replace_strict(category_of, return_dtype=pl.String))
              .join(current, on="centre", how="left")
              .with_columns(share_failing=_share("rows_failing", "rows_read"), threshold=pl.lit(THRESHOLD))
              .with_columns(passed=pl.when(pl.col("severity") == "error").then(pl.col("rows_failing") == 0)
                            .otherwise(pl.col("share_failing") <= pl.col("threshold")))
              .select("centre", "category", "rule", "severity", "queries", "rows_failing", "rows_read",
                      "share_failing", "threshold", "passed")
              .sort("centre", "category", "rows_failing", "rule", descending=[False, False, True, False]))
    declared = pl.DataFrame({"category": list(category_of.values())}).group_by("category").agg(
        checks_declared=pl.len().cast(pl.Int64))
    grid = (current.select("centre", "rows_read").join(pl.DataFrame({"category": CATEGORIES}), how="cross")
            .join(declared, on="category", how="left"))
    per_category = checks.group_by("centre", "category").agg(
        checks=pl.len().cast(pl.Int64), checks_failed=(~pl.col("passed")).sum().cast(pl.Int64),
        rows_failing=pl.col("rows_failing").sum().cast(pl.Int64))
    categories = (grid.join(per_category, on=["centre", "category"], how="left")
                  .with_columns(pl.col("checks_declared", "checks", "checks_failed", "rows_failing").fill_null(0))
                  .with_columns(share_failing=_share("rows_failing", "rows_read"))
                  .select("centre", "category", "checks_declared", "checks", "checks_failed", "rows_failing", "rows_read",
                          "share_failing")
                  .sort("centre", pl.col("category").replace_strict(CATEGORIES, list(range(len(CATEGORIES))))))
    trend = (wh.read_sql(TREND_SQL).with_columns(pl.col("rows_read", "rows_quarantined").fill_null(0).cast(pl.Int64))
             .with_columns(share_quarantined=_share("rows_quarantined", "rows_read"))
             .group_by("centre", maintain_order=True).head(TREND_NIGHTS))
    return QualityDashboard(checks, categories, trend, dt.datetime.now(dt.UTC))


def _share(part: str, whole: str) -> pl.Expr:
    return pl.when(pl.col(whole) > 0).then(pl.col(part) / pl.col(whole)).otherwise(0.0)


def write_dashboard(dashboard: QualityDashboard, path: Path, *, data_docs: Path | None = None) -> Path:
    """Write the page to ``path`` (``data_docs``: the Data Docs index it links to, if any)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(
        categories=CATEGORIES, threshold=THRESHOLD, nights=TREND_NIGHTS,
        summary=dashboard.categories.to_dicts(), checks=dashboard.checks.to_dicts(), trend=dashboard.trend.to_dicts(),
        generated=dashboard.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        data_docs=data_docs.resolve().as_uri() if data_docs is not None and data_docs.exists() else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
