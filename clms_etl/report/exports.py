"""Exports of the analysis views for statisticians: Parquet, CSV, SAS transport (XPT v5), Stata.

Datasets: ``analytics.patient_summary``, ``analytics.survival`` and every result table declared
in :data:`clms_etl.warehouse.schema.RESULT_TABLES` (Table 1, survival estimates, ...), one file
per dataset and format under ``<outdir>/<format>/``, plus ``<outdir>/README.md`` (the codebook:
every column with its type, label and its name in each format) and ``<outdir>/codebook.csv``.

Conventions per format (what a statistician reading the files needs to know):

* **Parquet** — the warehouse's types as they are (dates, booleans, nulls); read with
  ``arrow::read_parquet`` / ``polars`` / ``pandas``.
* **CSV** — UTF-8, comma-separated, header row, ISO dates (``YYYY-MM-DD``), booleans
  ``true`` / ``false``, nulls as empty fields.
* **SAS transport** (``.xpt``, version 5, what regulators and ``haven::read_xpt`` /
  ``PROC COPY`` read): variable names of at most 8 characters, so long names are shortened
  (``xpt/name_map.csv`` and the codebook give the mapping; the full column name is also
  in the codebook); dataset names too (``patient_summary`` -> ``patisumm``); labels are the
  warehouse column comments cut to 40 characters (the full text is in the codebook); booleans
  are numeric 1 / 0; dates are SAS dates (format ``DATE9``); nulls are ``.`` (numeric) or
  blank (character); strings are UTF-8 bytes, longer than 200 bytes cut (v5 limit).
* **Stata** (``.dta``, format 118: Stata 14 and later, ``haven::read_dta``): names up to 32 characters (shortened like
  the XPT ones if longer), labels cut to 80 characters, booleans numeric 1 / 0 with value
  labels ``no`` / ``yes``, dates ``%td``; Stata has no missing string, so null strings are
  empty strings.

Only pseudonyms leave the warehouse: the views and result tables hold no direct identifier
(``tests/report`` scans every exported file for the synthetic deliveries' identifiers).
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

FORMATS = ("parquet", "csv", "xpt", "dta")
VIEW_DATASETS = ("patient_summary", "survival")
XPT_NAME_LENGTH = 8
XPT_LABEL_LENGTH = 40
XPT_STRING_BYTES = 200
DTA_NAME_LENGTH = 32
DTA_LABEL_LENGTH = 80
DTA_VERSION = 14  # file format 118: read by Stata 14 and later (15's format 119 is not read by Stata 14)
BOOLEAN_LABELS = {0: "no", 1: "yes"}


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    frame: pl.DataFrame
    labels: dict[str, str]  # column -> full label (the warehouse column comment)


@dataclass
class ExportResult:
    outdir: Path
    files: dict[str, dict[str, Path]] = field(default_factory=dict)  # format -> dataset -> file
    rows: dict[str, int] = field(default_factory=dict)  # dataset -> rows
    codebook: pl.DataFrame | None = None
    readme: Path | None = None


# -- names --------------------------------------------------------------------------------------


def short_names(names: Sequence[str], length: int) -> dict[str, str]:
    """Unique names of at most ``length`` characters for ``names``, deterministic and readable.

    Names that fit are kept. Longer ones keep the start of each ``_``-separated word (the first
    word getting what the others leave), e.g. ``age_at_diagnosis_years`` -> ``agatdiye``; a
    clash (case-insensitive: SAS and Stata users type names in any case) gets a numeric suffix.
    """
    out: dict[str, str] = {}
    taken = {n.lower() for n in names if len(n) <= length}
    for name in names:
        if len(name) <= length:
            out[name] = name
            continue
        candidate = _abbreviate(name, length)
        base, n = candidate, 1
        while candidate.lower() in taken:
            n += 1
            candidate = base[: length - len(str(n))] + str(n)
        taken.add(candidate.lower())
        out[name] = candidate
    return out


def _abbreviate(name: str, length: int) -> str:
    words = [w for w in re.split(r"_+", name) if w] or [name]
    if len(words) == 1:
        return name[:length]
    per_word = max(length // len(words), 1)
    parts = [w[:per_word] for w in words]
    text = "".join(parts)[:length]
    if len(text) < length:  # give the spare characters back to the first word
        spare = length - len(text)
        text = (words[0][: per_word + spare] + "".join(parts[1:]))[:length]
    if not (text[0].isalpha() or text[0] == "_"):
        text = ("v" + text)[:length]
    return text


# -- reading ------------------------------------------------------------------------------------

_SQL_TYPES = (  # information_schema data types of DuckDB and PostgreSQL -> polars
    ("timestamp", pl.Datetime("us", "UTC")), ("date", pl.Date), ("bool", pl.Boolean), ("bigint", pl.Int64),
    ("smallint", pl.Int16), ("int", pl.Int32), ("double", pl.Float64), ("real", pl.Float64), ("float", pl.Float64),
    ("numeric", pl.Float64), ("decimal", pl.Float64), ("char", pl.String), ("text", pl.String), ("varchar", pl.String),
)


def _polars_type(sql_type: str) -> pl.DataType:
    t = sql_type.lower()
    for prefix, dtype in _SQL_TYPES:
        if t.startswith(prefix) or prefix in t:
            return dtype
    return pl.String


def _typed_relation(wh, schema_name: str, name: str) -> pl.DataFrame:
    """The whole relation with the database's column types (a column of nulls keeps its type)."""
    types = wh.query(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
        "ORDER BY ordinal_position", {"s": schema_name, "t": name})
    schema = {c: _polars_type(t) for c, t in types.iter_rows()}
    if not schema:
        raise LookupError(f"{schema_name}.{name} does not exist in this warehouse")
    frame = wh.query(f"SELECT {', '.join(schema)} FROM {schema_name}.{name}")
    if frame.is_empty():
        return pl.DataFrame(schema=schema)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def analysis_datasets(wh) -> list[Dataset]:
    """The views for statisticians and every result table, with their column comments as labels."""
    from clms_etl.warehouse.analytics import VIEWS_BY_NAME
    from clms_etl.results import RUN_ID_COMMENT
    from clms_etl.warehouse.schema import ANALYTICS_SCHEMA, RESULT_TABLES

    out = []
    for name in VIEW_DATASETS:
        view = VIEWS_BY_NAME[name]
        frame = _typed_relation(wh, ANALYTICS_SCHEMA, name)
        out.append(Dataset(name, view.description, frame, dict(view.columns)))
    for name, spec in sorted(RESULT_TABLES.items()):
        try:
            frame = _typed_relation(wh, ANALYTICS_SCHEMA, name)
        except LookupError:  # declared by newer code, not created yet in this database (migration pending)
            warnings.warn(f"result table {name} not exported: absent from this warehouse (migration pending?)",
                          stacklevel=2)
            continue
        labels = {c.name: c.comment for c in spec.columns} | {"run_id": RUN_ID_COMMENT}
        out.append(Dataset(name, spec.description, frame, labels))
    return out


# -- writing ------------------------------------------------------------------------------------


def _to_pandas_for_stats(frame: pl.DataFrame, fmt: str):
    """A pandas frame the SAS / Stata writers accept: booleans 1/0 (float, nulls NaN), integers
    as floats (NaN for null), dates as ``datetime.date`` objects (pyreadstat writes those as
    dates, pandas timestamps as date-times), strings cut to the XPT limit, or with nulls as
    empty strings for Stata."""
    import pandas as pd

    columns = {}
    for name, dtype in frame.schema.items():
        series = frame[name]
        if dtype == pl.Boolean or dtype.is_integer():
            columns[name] = series.cast(pl.Float64).to_pandas()
        elif dtype == pl.Date:
            columns[name] = pd.Series(series.to_list(), dtype=object)
        elif isinstance(dtype, pl.Datetime):
            columns[name] = series.dt.replace_time_zone(None).to_pandas()
        elif dtype == pl.String:
            values = series.to_list()
            if fmt == "xpt":
                columns[name] = pd.Series([_cut_bytes(v, XPT_STRING_BYTES) for v in values], dtype=object)
            else:
                columns[name] = pd.Series(["" if v is None else v for v in values], dtype=object)
        else:
            columns[name] = series.to_pandas()
    return pd.DataFrame(columns, index=pd.RangeIndex(frame.height))


def cut_label(text: str, limit: int) -> str:
    """A label within the format's limit (the full text stays in the codebook); the files keep no
    trailing blank, so neither does the cut."""
    return text[:limit].rstrip()


def _cut_bytes(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    raw = value.encode("utf-8")
    return value if len(raw) <= limit else raw[:limit].decode("utf-8", errors="ignore")


def _write(dataset: Dataset, fmt: str, folder: Path, xpt_names: dict[str, str], dta_names: dict[str, str],
           member: str) -> Path:
    import pyreadstat

    frame = dataset.frame
    if fmt == "parquet":
        path = folder / f"{dataset.name}.parquet"
        frame.write_parquet(path)
    elif fmt == "csv":
        path = folder / f"{dataset.name}.csv"
        frame.write_csv(path, date_format="%Y-%m-%d", datetime_format="%Y-%m-%dT%H:%M:%S%z")
    elif fmt == "xpt":
        path = folder / f"{dataset.name}.xpt"
        pdf = _to_pandas_for_stats(frame, "xpt").rename(columns=xpt_names)
        labels = [cut_label(dataset.labels.get(c, ""), XPT_LABEL_LENGTH) for c in frame.columns]
        pyreadstat.write_xport(pdf, str(path), file_label=dataset.name[:XPT_LABEL_LENGTH], column_labels=labels,
                               table_name=member, file_format_version=5)
    elif fmt == "dta":
        path = folder / f"{dataset.name}.dta"
        pdf = _to_pandas_for_stats(frame, "dta").rename(columns=dta_names)
        labels = [cut_label(dataset.labels.get(c, ""), DTA_LABEL_LENGTH) for c in frame.columns]
        booleans = {dta_names[c]: BOOLEAN_LABELS for c, t in frame.schema.items() if t == pl.Boolean}
        pyreadstat.write_dta(pdf, str(path), version=DTA_VERSION,
                             file_label=cut_label(dataset.description, DTA_LABEL_LENGTH),
                             column_labels=labels, variable_value_labels=booleans or None)
    else:
        raise ValueError(f"unknown export format {fmt!r}: choose among {', '.join(FORMATS)}")
    return path


def _type_name(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "boolean"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "timestamp (UTC)"
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "number"
    return "string"


def export_analysis(wh, outdir: Path, formats: Iterable[str] = FORMATS,
                    datasets: Sequence[Dataset] | None = None) -> ExportResult:
    """Write the analysis datasets in ``formats`` under ``outdir/<format>/``, plus the codebook."""
    formats = tuple(dict.fromkeys(formats))
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}: choose among {', '.join(FORMATS)}")
    datasets = list(datasets) if datasets is not None else analysis_datasets(wh)
    result = ExportResult(outdir)
    members = short_names([d.name for d in datasets], XPT_NAME_LENGTH)
    codebook_rows = []
    for dataset in datasets:
        xpt_names = short_names(dataset.frame.columns, XPT_NAME_LENGTH)
        dta_names = short_names(dataset.frame.columns, DTA_NAME_LENGTH)
        result.rows[dataset.name] = dataset.frame.height
        for position, (column, dtype) in enumerate(dataset.frame.schema.items(), start=1):
            codebook_rows.append({
                "dataset": dataset.name, "xpt_dataset": members[dataset.name], "position": position,
                "column": column, "type": _type_name(dtype), "xpt_name": xpt_names[column],
                "stata_name": dta_names[column], "label": dataset.labels.get(column, ""),
            })
        for fmt in formats:
            folder = outdir / fmt
            folder.mkdir(parents=True, exist_ok=True)
            path = _write(dataset, fmt, folder, xpt_names, dta_names, members[dataset.name])
            result.files.setdefault(fmt, {})[dataset.name] = path
    codebook = pl.DataFrame(codebook_rows, schema={
        "dataset": pl.String, "xpt_dataset": pl.String, "position": pl.Int32, "column": pl.String, "type": pl.String,
        "xpt_name": pl.String, "stata_name": pl.String, "label": pl.String})
    outdir.mkdir(parents=True, exist_ok=True)
    codebook.write_csv(outdir / "codebook.csv")
    if "xpt" in formats:
        codebook.select("xpt_dataset", "xpt_name", "dataset", "column", "label").write_csv(outdir / "xpt" / "name_map.csv")
    result.codebook = codebook
    result.readme = outdir / "README.md"
    result.readme.write_text(_readme(datasets, codebook, formats), encoding="utf-8")
    return result


def _readme(datasets: Sequence[Dataset], codebook: pl.DataFrame, formats: Sequence[str]) -> str:
    # the module docstring's conventions, from reStructuredText to Markdown
    doc = (__doc__ or "").split("Conventions per format", 1)[1].split("Only pseudonyms", 1)[0]
    doc = doc.split("\n", 1)[1].replace("``", "`")
    lines = [
        "# cLMS registry: analysis datasets",
        "",
        f"Exported {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC} by clms-etl from the warehouse's `analytics` schema. "
        f"Formats: {', '.join(formats)} (one folder each). Patients appear under pseudonyms only.",
        "",
        "## Conventions per format",
        "",
        doc.strip(),
        "",
        "`codebook.csv` holds the table below for every dataset in machine-readable form.",
    ]
    for dataset in datasets:
        rows = codebook.filter(pl.col("dataset") == dataset.name)
        lines += ["", f"## `{dataset.name}` ({dataset.frame.height} rows; XPT member `{rows['xpt_dataset'][0]}`)"
                  if rows.height else f"## `{dataset.name}`", "", dataset.description, "",
                  "| column | type | XPT name | Stata name | label |", "|---|---|---|---|---|"]
        for r in rows.iter_rows(named=True):
            label = r["label"].replace("|", "\\|")
            lines.append(f"| `{r['column']}` | {r['type']} | `{r['xpt_name']}` | `{r['stata_name']}` | {label} |")
    return "\n".join(lines) + "\n"
