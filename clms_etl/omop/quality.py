"""The Data Quality Dashboard's checks that need no vocabulary table, run on a written CDM schema.

Which check applies to which field is OHDSI's data, not ours: ``dqd_field_level.csv`` is the
DQD's ``OMOP_CDMv5.4_Field_Level.csv`` for the tables the registry writes (``NOTICE.md``). Each
check is one SQL count of violating rows, written in SQL both DuckDB and PostgreSQL run, after
the DQD's own SQL (``inst/sql/sql_server/*.sql``):

* ``isRequired`` — a required field is null;
* ``isPrimaryKey`` — a primary-key value is repeated (what the DDL's keys enforce on load; checked
  again for schemas created without them, like a site loading the CSV files);
* ``isForeignKey`` — a reference to a CDM table of the export (``person``, ``episode``) that does
  not exist (references to the vocabulary's ``concept`` cannot be checked without it);
* ``plausibleValueLow`` / ``plausibleValueHigh`` — a value or date out of the DQD's bounds (today
  + 1 day for dates, this year + 1 for ``year_of_birth``);
* ``plausibleTemporalAfter`` — a date before the one it follows (birth: 1 June of the year of birth
  when only the year is known, as the DQD does); ``plausibleStartBeforeEnd`` — a start after its end;
* ``plausibleAfterBirth`` — a date before 1 January of the year of birth;
* ``plausibleBeforeDeath`` — a date more than 60 days after death (the DQD's allowance);
* ``measureObservationPeriodOverlap`` — two overlapping or back-to-back periods of one person;
* ``withinObservationPeriod`` (not a DQD check: the issue's "dates in the observation period",
  the OHDSI convention that every event lies in one) — an event date outside every period.

Thresholds: the DQD tolerates a share of failing rows per check; the registry tolerates none
(every check here is blocking: one row fails it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from clms_etl.omop.cdm import qualified
from clms_etl.omop.cdm import tables as cdm_tables

FIELD_LEVEL = Path(__file__).with_name("dqd_field_level.csv")
DEATH_ALLOWANCE_DAYS = 60  # DQD field_plausible_before_death.sql
# Event dates that must fall in an observation period (table -> date field)
EVENT_DATES = {"condition_occurrence": "condition_start_date", "procedure_occurrence": "procedure_date",
               "measurement": "measurement_date", "observation": "observation_date", "death": "death_date",
               "specimen": "specimen_date", "episode": "episode_start_date"}
WRITTEN = ("person", "observation_period", "condition_occurrence", "procedure_occurrence", "measurement",
           "observation", "death", "specimen", "episode", "episode_event", "cdm_source", "metadata")


@dataclass(frozen=True)
class Check:
    name: str  # the DQD's check name
    table: str
    field: str
    sql: str  # SELECT count(*) of violating rows, schema as {s}
    condition: str | None = None  # a check on the table's own rows: its WHERE (``sql`` counts them alone)


def _on_rows(name: str, table: str, field: str, condition: str) -> Check:
    """A check whose violating rows are the rows of ``table`` meeting ``condition``."""
    return Check(name, table, field, f"SELECT count(*) FROM {{s}}.{table} WHERE {condition}", condition)


@cache
def field_level() -> pl.DataFrame:
    return pl.read_csv(FIELD_LEVEL, infer_schema=False).with_columns(
        pl.col("cdmTableName").str.to_lowercase(), pl.col("cdmFieldName").str.to_lowercase(),
        pl.col("fkTableName").str.to_lowercase(), pl.col("fkFieldName").str.to_lowercase(),
        pl.col("plausibleTemporalAfterTableName").str.to_lowercase(),
        pl.col("plausibleTemporalAfterFieldName").str.to_lowercase(),
        pl.col("plausibleStartBeforeEndFieldName").str.to_lowercase())


def _bound(value: str, field_type: str) -> str | None:
    """A DQD bound as SQL: ``'19500101'`` (date), ``1850`` (number), ``DATEADD(dd,1,GETDATE())``, ``YEAR(GETDATE())+1``."""
    value = value.strip()
    if value.startswith("DATEADD(dd,1,GETDATE())"):
        return "(CURRENT_DATE + 1)"
    if value.startswith("YEAR(GETDATE())"):
        return f"(EXTRACT(YEAR FROM CURRENT_DATE) + {int(value.split('+')[1]) if '+' in value else 0})"
    if value.startswith("'"):
        return f"DATE '{dt.datetime.strptime(value.strip(chr(39)), '%Y%m%d').date().isoformat()}'"
    return value if field_type != "date" else None


def _birth(mode: str) -> str:
    """The person's birth as the DQD takes it when only the year is known."""
    return f"make_date(CAST(p.year_of_birth AS INTEGER), {6 if mode == 'temporal' else 1}, 1)"


def checks() -> list[Check]:
    """Every check that applies to the tables the registry writes."""
    columns = {t: {c.name: c for c in cols} for t, cols in cdm_tables().items()}
    out: list[Check] = []
    for row in field_level().iter_rows(named=True):
        table, field = row["cdmTableName"], row["cdmFieldName"]
        if table not in WRITTEN or field not in columns.get(table, {}):
            continue
        col = columns[table][field]
        if field.endswith("_datetime"):
            continue  # the registry writes dates only
        kind = "date" if col.type == "date" else "number"
        src = f"{{s}}.{table}"
        if row["isRequired"] == "Yes":
            out.append(_on_rows("isRequired", table, field, f"{field} IS NULL"))
        if row["isPrimaryKey"] == "Yes":
            out.append(Check("isPrimaryKey", table, field, f"SELECT count(*) FROM (SELECT {field} FROM {src} "
                             f"GROUP BY {field} HAVING count(*) > 1) d"))
        fk = row["fkTableName"]
        if row["isForeignKey"] == "Yes" and fk in WRITTEN:
            out.append(Check("isForeignKey", table, field, f"SELECT count(*) FROM {src} t WHERE t.{field} IS NOT NULL "
                             f"AND NOT EXISTS (SELECT 1 FROM {{s}}.{fk} f WHERE f.{row['fkFieldName']} = t.{field})"))
        for name, op in (("plausibleValueLow", "<"), ("plausibleValueHigh", ">")):
            bound = _bound(row[name] or "", kind) if row[name] else None
            if bound is not None:
                out.append(_on_rows(name, table, field, f"{field} {op} {bound}"))
        after = row["plausibleTemporalAfterFieldName"]
        if row["plausibleTemporalAfter"] == "Yes" and after:
            after_table = row["plausibleTemporalAfterTableName"]
            if after_table == "person":
                sql = (f"SELECT count(*) FROM {src} t JOIN {{s}}.person p ON p.person_id = t.person_id "
                       f"WHERE t.{field} < {_birth('temporal')}")
                out.append(Check("plausibleTemporalAfter", table, field, sql))
            elif after_table == table and not after.endswith("_datetime"):
                out.append(_on_rows("plausibleTemporalAfter", table, field, f"{field} < {after}"))
        end = row["plausibleStartBeforeEndFieldName"]
        if row["plausibleStartBeforeEnd"] == "Yes" and end and end in columns[table] and not end.endswith("_datetime"):
            out.append(_on_rows("plausibleStartBeforeEnd", table, field, f"{field} > {end}"))
        if row["plausibleAfterBirth"] == "Yes":
            out.append(Check("plausibleAfterBirth", table, field, f"SELECT count(*) FROM {src} t JOIN {{s}}.person p "
                             f"ON p.person_id = t.person_id WHERE t.{field} < {_birth('after')}"))
        if row["plausibleBeforeDeath"] == "Yes":
            out.append(Check("plausibleBeforeDeath", table, field, f"SELECT count(*) FROM {src} t JOIN {{s}}.death d "
                             f"ON d.person_id = t.person_id WHERE t.{field} > d.death_date + {DEATH_ALLOWANCE_DAYS}"))
    out.append(Check("measureObservationPeriodOverlap", "observation_period", "observation_period_start_date",
                     "SELECT count(*) FROM {s}.observation_period a JOIN {s}.observation_period b "
                     "ON a.person_id = b.person_id AND a.observation_period_id < b.observation_period_id "
                     "AND a.observation_period_start_date <= b.observation_period_end_date + 1 "
                     "AND b.observation_period_start_date <= a.observation_period_end_date + 1"))
    for table, field in EVENT_DATES.items():
        out.append(Check("withinObservationPeriod", table, field,
                         f"SELECT count(*) FROM {{s}}.{table} t WHERE NOT EXISTS (SELECT 1 FROM {{s}}.observation_period o "
                         f"WHERE o.person_id = t.person_id AND t.{field} BETWEEN o.observation_period_start_date "
                         f"AND o.observation_period_end_date)"))
    return out


def run_checks(conn: sa.Connection, schema: str) -> pl.DataFrame:
    """One row per check: check, table, field, violating ``rows``, ``passed``. The checks on a table's own
    rows are counted in one scan of it (``count(*) FILTER (WHERE ...)`` each), the others one query each."""
    name = qualified(conn, schema)
    every = checks()
    counted: dict[int, int] = {}
    by_table: dict[str, list[int]] = {}
    for i, check in enumerate(every):
        if check.condition is not None:
            by_table.setdefault(check.table, []).append(i)
        else:
            counted[i] = int(conn.execute(sa.text(check.sql.format(s=name))).all()[0][0])
    for table, indexes in by_table.items():
        counts = ", ".join(f"count(*) FILTER (WHERE {every[i].condition})" for i in indexes)
        row = conn.execute(sa.text(f"SELECT {counts} FROM {name}.{table}")).all()[0]
        counted.update({i: int(n) for i, n in zip(indexes, row, strict=True)})
    rows = [{"check": c.name, "table": c.table, "field": c.field, "rows": counted[i], "passed": counted[i] == 0}
            for i, c in enumerate(every)]
    return pl.DataFrame(rows, schema={"check": pl.String, "table": pl.String, "field": pl.String,
                                      "rows": pl.Int64, "passed": pl.Boolean})
