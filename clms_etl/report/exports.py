"""Exports of the analysis views for statisticians: Parquet, CSV, SAS transport (XPT v5), Stata.

Datasets: ``analytics.patient_summary``, ``analytics.survival`` and every result table declared
in :data:`clms_etl.warehouse.schema.RESULT_TABLES` (Table 1, survival estimates, ...), one file
per dataset and format under ``<outdir>/<format>/``, plus ``<outdir>/README.md`` (the codebook:
every column with its type, label and its name in each format) and ``<outdir>/codebook.csv``.

No calendar date leaves the warehouse (:data:`RELATIVE_DATES`): every date becomes days from
the pathological diagnosis (the endpoints' time origin), the diagnosis date itself is dropped
(``diagnosis_year`` stays), ages are in completed years. Before anything is written, the
quasi-identifiers are measured (:mod:`clms_etl.disclosure`, k-anonymity over sex, 10-year age
band, diagnosis year, site and centre) and the smallest group goes into the codebook:

* **in-house** (default): the full analytic detail (exact age, diagnosis year, centre) for the
  registry's own statisticians; k is reported and the codebook says whether the files may be
  shared — they are never blocked;
* **shareable** (``--shareable``): age becomes its 10-year band (``age_band``), the laboratory
  accession (``sample_id``) is dropped, then diagnosis year, centre, site, age band and sex are
  suppressed (null), in that order, for the patients of groups smaller than the threshold (default
  5, ``--k-threshold``) in every per-patient dataset alike; an export that cannot reach the
  threshold is not written (:class:`~clms_etl.disclosure.DisclosureBlocked`).

Conventions per format (what a statistician reading the files needs to know):

* **Parquet** — the warehouse's types as they are (booleans, nulls); read with
  ``arrow::read_parquet`` / ``polars`` / ``pandas``. Each field's metadata holds its
  ``description`` (the label) and, for a coded column, its ``code_list`` and ``value_labels``
  (JSON); the file's metadata holds the dataset's ``description``.
* **CSV** — UTF-8 (with a byte-order mark when the file holds non-ASCII text, so that Excel
  reads it as UTF-8), comma-separated, header row, booleans ``true`` / ``false``, nulls as
  empty fields.
* **SAS transport** (``.xpt``, version 5, what regulators and ``haven::read_xpt`` /
  ``PROC COPY`` read): variable names of at most 8 characters, so long names are shortened
  (``xpt/name_map.csv`` and the codebook give the mapping; the full column name is also
  in the codebook); dataset names too (``patient_summary`` -> ``patisumm``); labels are the
  warehouse column comments cut to 40 characters (the full text is in the codebook); booleans
  are numeric 1 / 0; nulls are ``.`` (numeric) or blank (character); strings are UTF-8 bytes,
  longer than 200 bytes cut (v5 limit). Coded columns keep their codes; ``xpt/formats.sas``
  (``PROC FORMAT``, one format per code list, shared by the columns using it, then a data step
  attaching them) gives their labels, since a transport file carries no format catalogue.
* **Stata** (``.dta``, format 118: Stata 14 and later, ``haven::read_dta``): names up to 32 characters (shortened like
  the XPT ones if longer), labels cut to 80 characters, the dataset label a short complete
  sentence; coded columns are numeric with value labels, one label set per code list named after it
  and shared by every column using it (a text code is stored as its position in the list, 1 for
  the first; a numeric code as itself), booleans numeric 1 / 0 with the label set ``yes_no``;
  Stata has no missing string, so null strings are empty strings. Stata has no infinity either: a
  number beyond its range (an infinite statistic, e.g. an unbounded confidence limit) is the
  extended missing value ``.i`` (+infinity) or ``.j`` (-infinity), never a plain ``.``.
  In SAS transport such a number is the largest IBM float (about 7.2E75), with its sign.

Only pseudonyms leave the warehouse: the views and result tables hold no direct identifier
(``tests/report`` scans every exported file for the synthetic deliveries' identifiers).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clms_etl.disclosure import (
    DEFAULT_K_THRESHOLD, QUASI_IDENTIFIERS, DisclosureBlocked, KAnonymity, age_band, k_anonymity, suppress_until_k)
from clms_etl.files import remove_left_folders
from clms_etl.report.csv_files import write_csv
from clms_etl.vocabulary import code_labels, codes, column_code_list

FORMATS = ("parquet", "csv", "xpt", "dta")
VIEW_DATASETS = ("patient_summary", "survival")
XPT_NAME_LENGTH = 8
XPT_LABEL_LENGTH = 40
XPT_STRING_BYTES = 200
DTA_NAME_LENGTH = 32
DTA_LABEL_LENGTH = 80
DTA_VERSION = 14  # file format 118: read by Stata 14 and later (15's format 119 is not read by Stata 14)
DTA_MAX_DOUBLE = 8.988465674311579e307  # Stata's largest double ("help data types"): beyond it, no value
DTA_INFINITY = {1: "i", -1: "j"}  # sign -> extended missing value written for an out-of-range number
BOOLEAN_LABELS = {0: "no", 1: "yes"}
SAS_FORMATS_NAME = "formats.sas"
BOOLEAN_CODE_LIST = "yes_no"  # the label set of every boolean column (Stata) and its SAS format
BLOCK_PATIENTS = 50_000  # patients read, protected and written at a time
BLOCK_ROWS_PER_PATIENT = 5  # a result table's block: as many rows as a block of patients has in survival
PARQUET_ROW_GROUP = 1024 * 1024  # rows of a row group as pyarrow's write_table cuts them (its default)
DTA_STRL_BYTES = 2045  # a longer Stata string is a strL, stored apart from the rows (not written in blocks)

ORIGIN = "diagnosis_date"  # time origin of every relative time: day 0, not exported
AGE_COLUMN = "age_at_diagnosis_years"
# Calendar dates of the analysis views -> days from diagnosis (name, label); None: dropped, because
# another column already says it. A date column not listed becomes <name without _date>_days.
RELATIVE_DATES: dict[str, tuple[str, str] | None] = {
    ORIGIN: None,
    "last_contact_date": None,  # follow_up_days
    "end_date": None,  # survival: time_days
    "primary_surgery_date": ("primary_surgery_days", "Days from diagnosis to the primary excision."),
    "first_local_recurrence_date": ("first_local_recurrence_days", "Days from diagnosis to the first local recurrence."),
    "first_metastasis_date": ("first_metastasis_days", "Days from diagnosis to the first metastasis."),
    "death_date": ("death_days", "Days from diagnosis to death."),
}
# labels of the views that name a dropped date column, as the exports say them
EXPORT_LABELS = {
    ("survival", "time_days"): "Days from diagnosis to the event, or to censoring (last contact) when event = 0.",
    ("survival", "time_months"): "Months (days / 30.4375) from diagnosis to the event or to censoring.",
    ("survival", "event"): "1: the endpoint's event occurred at time_days; 0: censored at time_days.",
}
AGE_BAND_LABEL = "Age at diagnosis, 10-year band (90+: 90 and over)."
# shareable exports: the quasi-identifiers least useful to an analysis are suppressed first
SUPPRESSION_ORDER = ("diagnosis_year", "centre", "site", "age_band", "sex")
NOT_SHAREABLE_COLUMNS = ("sample_id",)  # the laboratory's accession
BLOCKED_HOW = ("clms-etl export analysis --k-threshold N, or the analysis_exports asset's config k_threshold; "
               "an in-house export (without --shareable) is never blocked")


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
    disclosure: KAnonymity | None = None
    shareable: bool = False  # exported as shareable (generalised, suppressed, checked)


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


def _relation_types(wh, schema_name: str, name: str) -> dict[str, pl.DataType]:
    """The relation's columns with the polars types of the database's column types."""
    types = wh.read_sql(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
        "ORDER BY ordinal_position", {"s": schema_name, "t": name})
    schema = {c: _polars_type(t) for c, t in types.iter_rows()}
    if not schema:
        raise LookupError(f"{schema_name}.{name} does not exist in this warehouse")
    return schema


def _typed_relation(wh, schema_name: str, name: str, schema: dict[str, pl.DataType] | None = None,
                    where: str = "", params: dict | None = None) -> pl.DataFrame:
    """The relation (the rows matching ``where``) with the database's column types (a column of nulls keeps
    its type), its rows sorted by its columns in order: the database returns them in any order, and two
    nights' files must differ only where the data did."""
    return _typed_rows(wh, f"{schema_name}.{name}", schema or _relation_types(wh, schema_name, name), where, params)


def _typed_rows(wh, relation: str, schema: dict[str, pl.DataType], where: str = "",
                params: dict | None = None) -> pl.DataFrame:
    """:func:`_typed_relation` of ``relation``, a FROM item (a table, or a subquery with its alias)."""
    frame = wh.read_sql(f"SELECT {', '.join(schema)} FROM {relation}" + (f" WHERE {where}" if where else ""), params)
    if frame.is_empty():
        return pl.DataFrame(schema=schema)
    frame = frame.select([pl.col(c).cast(t) for c, t in schema.items()])
    return frame.sort(frame.columns, nulls_last=True)


def analysis_datasets(wh) -> list[Dataset]:
    """The views for statisticians and every result table, whole, with their column comments as labels."""
    sources, _ = _warehouse_sources(wh, None)
    return [Dataset(s.name, s.description, s.read(s.blocks[0]), s.labels) for s in sources]


# -- no date, k-anonymity ---------------------------------------------------------------------


def _origins(datasets: Sequence[Dataset]) -> pl.DataFrame:
    """patient_id -> diagnosis date, from the first dataset that has both."""
    for d in datasets:
        if {"patient_id", ORIGIN} <= set(d.frame.columns):
            return _origins_of(d.frame)
    return pl.DataFrame(schema={"patient_id": pl.String, "_origin": pl.Date})


def _origins_of(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("patient_id", pl.col(ORIGIN).alias("_origin")).unique("patient_id")


def without_dates(dataset: Dataset, origins: pl.DataFrame) -> Dataset:
    """``dataset`` with every calendar date replaced by days from the patient's diagnosis."""
    dates = [c for c, t in dataset.frame.schema.items() if t in (pl.Date,) or isinstance(t, pl.Datetime)]
    if not dates:
        return dataset
    if "patient_id" not in dataset.frame.columns:
        raise ValueError(f"{dataset.name}: date columns {dates} with no patient_id to relate them to a diagnosis")
    frame = dataset.frame.join(origins, on="patient_id", how="left", maintain_order="left")
    labels = dict(dataset.labels)
    columns = []
    for column in dataset.frame.columns:
        if column not in dates:
            columns.append(pl.col(column))
            continue
        target = RELATIVE_DATES.get(column, (f"{column.removesuffix('_date')}_days",
                                             f"Days from diagnosis to: {labels.get(column, column)}"))
        if target is None:
            continue
        name, label = target
        if name in dataset.frame.columns:
            raise ValueError(f"{dataset.name}: {column} would become {name}, which exists already")
        days = pl.col(column).cast(pl.Date) - pl.col("_origin").cast(pl.Date)
        columns.append(days.dt.total_days().cast(pl.Int32).alias(name))
        labels[name] = label
    frame = frame.select(columns)
    labels = {c: EXPORT_LABELS.get((dataset.name, c), labels.get(c, "")) for c in frame.columns}
    return Dataset(dataset.name, dataset.description, frame, labels)


def _patients(datasets: Sequence[Dataset]) -> pl.DataFrame:
    """One row per patient with the quasi-identifiers (age as its band), from patient_summary."""
    summary = next((d.frame for d in datasets if d.name == "patient_summary"), None)
    return pl.DataFrame(schema={"patient_id": pl.String}) if summary is None else _patients_of(summary)


def _patients_of(summary: pl.DataFrame) -> pl.DataFrame:
    frame = summary.with_columns(age_band(pl.col(AGE_COLUMN)).alias("age_band")) if AGE_COLUMN in summary.columns \
        else summary
    return frame.select("patient_id", *[q for q in QUASI_IDENTIFIERS if q in frame.columns])


def _generalised(dataset: Dataset, protected: pl.DataFrame) -> Dataset:
    """A per-patient dataset with the patients' protected quasi-identifiers, age as its band, no accession."""
    frame, labels = dataset.frame, dict(dataset.labels)
    if "patient_id" not in frame.columns:
        return dataset
    replaced = [q for q in protected.columns if q != "patient_id" and (q in frame.columns or
                                                                        (q == "age_band" and AGE_COLUMN in frame.columns))]
    values = protected.select("patient_id", *[pl.col(q).alias(f"_{q}") for q in replaced])
    frame = frame.join(values, on="patient_id", how="left", maintain_order="left")
    columns = []
    for column in dataset.frame.columns:
        if column in NOT_SHAREABLE_COLUMNS:
            continue
        if column == AGE_COLUMN and "age_band" in replaced:
            columns.append(pl.col("_age_band").alias("age_band"))
            labels["age_band"] = AGE_BAND_LABEL
        elif column in replaced:
            columns.append(pl.col(f"_{column}").cast(frame.schema[column]).alias(column))
        else:
            columns.append(pl.col(column))
    frame = frame.select(columns)
    return Dataset(dataset.name, dataset.description, frame, {c: labels.get(c, "") for c in frame.columns})


def protect(datasets: Sequence[Dataset], shareable: bool = False,
            k_threshold: int = DEFAULT_K_THRESHOLD) -> tuple[list[Dataset], KAnonymity]:
    """The datasets as they are exported (no date; shareable: generalised and suppressed) and their
    k-anonymity. A shareable export below ``k_threshold`` raises :class:`DisclosureBlocked`."""
    origins, protected, k = _protection(_origins(datasets), _patients(datasets), shareable, k_threshold)
    return [_exported(d, origins, protected) for d in datasets], k


def _protection(origins: pl.DataFrame, patients: pl.DataFrame, shareable: bool,
                k_threshold: int) -> tuple[pl.DataFrame, pl.DataFrame | None, KAnonymity]:
    """The diagnosis dates and, for a shareable export, the protected quasi-identifiers per patient (both
    sorted by pseudonym, so that a block of patients finds its rows by bisection), and the k-anonymity."""
    origins = origins.sort("patient_id")
    if not shareable:
        return origins, None, k_anonymity(patients, QUASI_IDENTIFIERS, k_threshold)
    protected, k = suppress_until_k(patients, SUPPRESSION_ORDER, k_threshold)
    if not k.passes:
        raise DisclosureBlocked("Shareable analysis export", k, BLOCKED_HOW)
    return origins, protected.sort("patient_id"), k


def _exported(dataset: Dataset, origins: pl.DataFrame, protected: pl.DataFrame | None) -> Dataset:
    """``dataset`` (whole or a block of its patients) as it is exported: no date; shareable: generalised."""
    if "patient_id" in dataset.frame.columns and dataset.frame.height:
        ids = dataset.frame["patient_id"]
        origins = _between(origins, ids.min(), ids.max())
        protected = None if protected is None else _between(protected, ids.min(), ids.max())
    out = without_dates(dataset, origins)
    return out if protected is None else _generalised(out, protected)


def _between(frame: pl.DataFrame, low: str | None, high: str | None) -> pl.DataFrame:
    """The rows of ``frame`` (sorted by pseudonym) whose pseudonym is in ``[low, high]``."""
    if low is None:
        return frame.clear()
    ids = frame["patient_id"]
    start, end = ids.search_sorted(low, "left"), ids.search_sorted(high, "right")
    return frame.slice(start, end - start)


# -- value labels -------------------------------------------------------------------------------


def coded_columns(frame: pl.DataFrame) -> dict[str, str]:
    """``{column: code list}`` of the columns of ``frame`` that hold a code list's codes
    (:func:`clms_etl.vocabulary.column_code_list`) and nothing else; booleans are the ``yes_no`` list."""
    return _coded(frame.schema, _code_values(frame))


def _code_values(frame: pl.DataFrame) -> dict[str, set]:
    """The distinct values of the columns of ``frame`` that may hold a code list's codes."""
    return {column: set(frame[column].drop_nulls().unique().to_list()) for column, dtype in frame.schema.items()
            if dtype != pl.Boolean and column_code_list(column) is not None}


def _coded(schema: pl.Schema, values: dict[str, set]) -> dict[str, str]:
    out = {}
    for column, dtype in schema.items():
        if dtype == pl.Boolean:
            out[column] = BOOLEAN_CODE_LIST
        elif column in values and values[column] <= set(codes(column_code_list(column))):
            out[column] = column_code_list(column)  # a value outside the list keeps the column as it is
    return out


def value_labels(code_list: str) -> dict[int, str]:
    """The numeric values of a code list in Stata and SAS and their labels: a numeric code is its own
    value, a text code its position in the list (1 for the first); booleans 0 / 1."""
    if code_list == BOOLEAN_CODE_LIST:
        return dict(BOOLEAN_LABELS)
    return {code if isinstance(code, int) else i: label
            for i, (code, label) in enumerate(code_labels(code_list).items(), start=1)}


def _numeric_codes(frame: pl.DataFrame, coded: dict[str, str]) -> pl.DataFrame:
    """Text codes as their numeric values (:func:`value_labels`), for Stata's value labels."""
    text = {c: cl for c, cl in coded.items() if frame.schema[c] == pl.String}
    return frame.with_columns(
        pl.col(c).replace_strict({code: i for i, code in enumerate(codes(cl), start=1)}, default=None,
                                 return_dtype=pl.Int32) for c, cl in text.items())


def sas_format_program(datasets: Sequence[Shape], members: dict[str, str],
                       xpt_names: dict[str, dict[str, str]]) -> str:
    """``formats.sas``: one ``PROC FORMAT`` value format per code list, then a data step per dataset
    attaching them to the coded variables of its transport file (``libname xptlib xport``)."""
    used: dict[str, bool] = {}  # code list -> text codes (a $ format)
    attach = []
    for dataset in datasets:
        coded = dataset.coded
        if not coded:
            continue
        formats = []
        for column, code_list in coded.items():
            text = dataset.schema[column] == pl.String
            used[code_list] = text
            formats.append(f"{xpt_names[dataset.name][column]} {'$' if text else ''}{code_list}.")
        member = members[dataset.name]
        attach += [f"libname xptlib xport \"{dataset.name}.xpt\";",
                   f"data work.{member};", f"  set xptlib.{member};", f"  format {' '.join(formats)};",
                   "run;", "libname xptlib clear;", ""]
    lines = ["/* Value labels of the coded variables (clms-etl exports): run in the folder of the .xpt files.",
             "   One format per code list, shared by every variable that holds its codes. */", "proc format;"]
    for code_list, text in used.items():
        labels = (code_labels(code_list) if text else value_labels(code_list))
        pairs = " ".join(f"{_sas_literal(c) if text else c}={_sas_literal(label)}" for c, label in labels.items())
        lines.append(f"  value {'$' if text else ''}{code_list} {pairs};")
    return "\n".join([*lines, "run;", "", *attach])


def _sas_literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def dataset_label(description: str, limit: int = DTA_LABEL_LENGTH) -> str:
    """A short complete label for a dataset: the description's first sentence when it fits in
    ``limit`` characters, else its first clause (before a colon, a semicolon or a parenthesis), else
    as many whole words as fit, never a word cut in two."""
    first = re.split(r"(?<=\.)\s", description.strip(), maxsplit=1)[0].rstrip(".")
    for candidate in (first, re.split(r"\s*[:;(]", first, maxsplit=1)[0]):
        if len(candidate) <= limit:
            return candidate
    words = first.split()
    while words and len(" ".join(words)) > limit:
        words.pop()
    return " ".join(words)


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


def _polars_for_stats(frame: pl.DataFrame, fmt: str) -> pl.DataFrame | None:
    """The values :func:`_to_pandas_for_stats` gives, as a polars frame, which pyreadstat writes as it writes
    the pandas one (null is its missing value, NaN made null as pandas counts it missing) without a pandas
    missing-value test per cell; None for a frame only the pandas path writes: a date, or (Stata) a number
    beyond Stata's range (:func:`_mark_infinities`)."""
    columns = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype == pl.Boolean or dtype.is_integer():
            columns.append(column.cast(pl.Float64))
        elif dtype.is_float():
            if fmt == "dta" and frame.select(column.fill_nan(None).abs().gt(DTA_MAX_DOUBLE).any()).item():
                return None
            columns.append(column.fill_nan(None))
        elif dtype == pl.String and fmt == "xpt":
            if (frame.select(column.str.len_bytes().max()).item() or 0) <= XPT_STRING_BYTES:
                columns.append(column)
            else:
                columns.append(pl.lit(pl.Series(name, [_cut_bytes(v, XPT_STRING_BYTES) for v in frame[name]],
                                                dtype=pl.String)))
        elif dtype == pl.String:
            columns.append(column.fill_null(""))
        else:
            return None
    return frame.select(columns)


def _mark_infinities(pdf) -> dict[str, list[str]]:
    """Replace, in place, the numbers Stata cannot hold (±inf, |x| > :data:`DTA_MAX_DOUBLE`) by the
    letters of :data:`DTA_INFINITY`; returns them per column, as pyreadstat's ``missing_user_values``
    (readstat refuses the whole file otherwise: "numeric value outside the range")."""
    import numpy as np

    marks = {}
    for name in pdf.columns:
        values = pdf[name].to_numpy()
        if values.dtype.kind != "f":
            continue
        beyond = np.abs(values) > DTA_MAX_DOUBLE  # NaN compares False: it stays the plain missing value
        if beyond.any():
            column = pdf[name].astype(object)
            column[beyond] = [DTA_INFINITY[int(np.sign(v))] for v in values[beyond]]
            pdf[name] = column
            marks[name] = sorted(set(column[beyond]))
    return marks


def cut_label(text: str, limit: int) -> str:
    """A label within the format's limit (the full text stays in the codebook); the files keep no
    trailing blank, so neither does the cut."""
    return text[:limit].rstrip()


def _cut_bytes(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    raw = value.encode("utf-8")
    return value if len(raw) <= limit else raw[:limit].decode("utf-8", errors="ignore")


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
                    datasets: Sequence[Dataset] | None = None, *, shareable: bool = False,
                    k_threshold: int = DEFAULT_K_THRESHOLD, block_patients: int = BLOCK_PATIENTS) -> ExportResult:
    """Write the analysis datasets in ``formats`` under ``outdir/<format>/``, plus the codebook.

    ``datasets`` (default: the warehouse's, :func:`analysis_datasets`) are protected first (:func:`protect`): a
    blocked shareable export raises :class:`DisclosureBlocked` before anything is written. The warehouse's
    per-patient views are read, protected and written ``block_patients`` patients at a time (the files are
    the same, byte for byte, as one block gives): memory follows a block, not the registry.
    """
    formats = tuple(dict.fromkeys(formats))
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}: choose among {', '.join(FORMATS)}")
    with ExitStack() as copies:  # the views' block copies (Warehouse.block_copy), while the blocks are read
        if datasets is None:
            sources, summary = _warehouse_sources(wh, block_patients, copies)
            origins, patients = _origins_of(summary), _patients_of(summary)
        else:
            datasets = list(datasets)
            sources = [Source(d.name, d.description, d.labels, [None], lambda _, frame=d.frame: frame) for d in datasets]
            origins, patients = _origins(datasets), _patients(datasets)
        origins, protected, disclosure = _protection(origins, patients, shareable, k_threshold)
        # the blocks an export killed mid-way kept (:func:`_read_source`: ``.<dataset>-blocks-*``)
        remove_left_folders(outdir, ".*-blocks-*")
        outdir.mkdir(parents=True, exist_ok=True)
        result = ExportResult(outdir, disclosure=disclosure, shareable=shareable)
        members = short_names([s.name for s in sources], XPT_NAME_LENGTH)
        shapes, codebook_rows = [], []
        # A source's files are written while the next sources are read: the reads wait on the database, the
        # writes on none; one after the other they left a core idle at the end of the PostgreSQL night. The
        # writes run one source at a time, in order; the blocks of at most two sources wait on disk.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clms-export-source") as writing:
            writes: list[tuple[Future, bool]] = []  # each source's, with whether its blocks wait on disk
            try:
                for source in sources:
                    if len(source.blocks) > 1:  # its blocks will wait on disk, beside one earlier source's at most
                        for write in [w for w, on_disk in writes if on_disk][:-1]:
                            write.result()
                    for write, _ in writes:
                        if write.done():
                            write.result()  # (a write's exception, raised here: nothing more is read)
                    kept = copies.enter_context(
                        tempfile.TemporaryDirectory(dir=outdir, prefix=f".{source.name}-blocks-"))
                    shape, blocks, measure = _read_source(source, origins, protected, Path(kept))
                    for fmt in formats:
                        result.files.setdefault(fmt, {})[shape.name] = outdir / fmt / f"{shape.name}.{fmt}"
                    writes.append((writing.submit(_write_files, shape, measure, formats, outdir, members[source.name],
                                                  blocks, Path(kept)), len(blocks) > 1))
                    shapes.append(shape)
                    result.rows[shape.name] = shape.rows
                    codebook_rows += _codebook_rows(shape, members[shape.name])
                for write, _ in writes:
                    write.result()
            except BaseException:
                writing.shutdown(cancel_futures=True)  # the writes queued behind a failure are not run
                raise
    codebook = pl.DataFrame(codebook_rows, schema={
        "dataset": pl.String, "xpt_dataset": pl.String, "position": pl.Int32, "column": pl.String, "type": pl.String,
        "xpt_name": pl.String, "stata_name": pl.String, "label": pl.String, "code_list": pl.String})
    write_csv(codebook, outdir / "codebook.csv")
    if "xpt" in formats:
        write_csv(codebook.select("xpt_dataset", "xpt_name", "dataset", "column", "label"),
                  outdir / "xpt" / "name_map.csv")
        xpt_names = {d.name: dict(zip(codebook.filter(pl.col("dataset") == d.name)["column"],
                                      codebook.filter(pl.col("dataset") == d.name)["xpt_name"], strict=True))
                     for d in shapes}
        (outdir / "xpt" / SAS_FORMATS_NAME).write_text(sas_format_program(shapes, members, xpt_names),
                                                       encoding="utf-8")
    result.codebook = codebook
    result.readme = outdir / "README.md"
    result.readme.write_text(_readme(shapes, codebook, formats, disclosure, shareable), encoding="utf-8")
    return result


def _codebook_rows(shape: Shape, member: str) -> list[dict]:
    """The codebook's rows of a dataset written: one per column, with its names in the SAS and Stata files."""
    xpt_names = short_names(list(shape.schema), XPT_NAME_LENGTH)
    dta_names = short_names(list(shape.schema), DTA_NAME_LENGTH)
    return [{"dataset": shape.name, "xpt_dataset": member, "position": position, "column": column,
             "type": _type_name(dtype), "xpt_name": xpt_names[column], "stata_name": dta_names[column],
             "label": shape.labels.get(column, ""), "code_list": shape.coded.get(column)}
            for position, (column, dtype) in enumerate(shape.schema.items(), start=1)]


# -- block by block ------------------------------------------------------------------------------



@dataclass(frozen=True)
class Source:
    """A dataset to export, read as blocks whose concatenation, in order, is the whole dataset sorted by its
    columns: a per-patient view in ranges of pseudonyms (its first sort column), anything else whole."""

    name: str
    description: str
    labels: dict[str, str]
    blocks: Sequence[object]
    read: Callable[[object], pl.DataFrame]


@dataclass(frozen=True)
class Shape:
    """What the codebook, the README and the SAS format program say of a dataset written."""

    name: str
    description: str
    schema: pl.Schema
    labels: dict[str, str]
    rows: int
    coded: dict[str, str]


def _warehouse_sources(wh, block_patients: int | None,
                       copies: ExitStack | None = None) -> tuple[list[Source], pl.DataFrame]:
    """The views for statisticians (per block of ``block_patients`` patients; None: whole) and every result
    table (in blocks of as many rows as a block of patients has survival rows), and patient_summary's
    pseudonym, diagnosis date and quasi-identifier columns (sorted by pseudonym). With ``copies``, the views'
    blocks, and those of a result table of several blocks, are read from their
    :meth:`~clms_etl.warehouse.Warehouse.block_copy`, held until it closes."""
    from clms_etl.results import RUN_ID_COMMENT
    from clms_etl.warehouse.analytics import VIEWS_BY_NAME, view_select
    from clms_etl.warehouse.load import pseudonym_ranges
    from clms_etl.warehouse.schema import ANALYTICS_SCHEMA, RESULT_TABLES

    relations, expanded = {}, {}  # (schema, name) each view's blocks are read from; {view: view its rows come from}
    for name in VIEW_DATASETS:
        relation, source = f"{ANALYTICS_SCHEMA}.{name}", VIEWS_BY_NAME[name].rows_from
        if copies is not None and block_patients is not None:
            if source in relations and relations[source] != (ANALYTICS_SCHEMA, source):
                # computed row by row from a view copied already: each block from that copy's block (survival:
                # five rows per patient; its own copy and index took 7.4 s of the server at 1,000,000 patients)
                expanded[name] = source
            else:
                relation = copies.enter_context(wh.block_copy(relation, "patient_id"))
        relations[name] = tuple(relation.split(".", 1))
    types = _relation_types(wh, ANALYTICS_SCHEMA, "patient_summary")
    narrow = {c: types[c] for c in ("patient_id", ORIGIN, AGE_COLUMN, *QUASI_IDENTIFIERS) if c in types}
    summary = _typed_relation(wh, *relations["patient_summary"], narrow).sort("patient_id")
    ranges = [(None, None)] if block_patients is None else \
        pseudonym_ranges(summary["patient_id"].drop_nulls(), max(block_patients, 1))

    def read_view(name: str, schema: dict):
        def read(bounds: tuple[str | None, str | None]) -> pl.DataFrame:
            low, high = bounds
            clause = wh.range_clause("patient_id", low, high)
            if clause and high is None:  # nulls sort last: the last block takes them
                clause = f"patient_id IS NULL OR ({clause})"
            params = {"low": low, "high": high}
            if name in expanded:
                source = expanded[name]
                block = f"(SELECT * FROM {'.'.join(relations[source])}{f' WHERE {clause}' if clause else ''}) AS {source}"
                return _typed_rows(wh, f"({view_select(name, {source: block})}) AS {name}", schema, clause, params)
            return _typed_relation(wh, *relations[name], schema, clause, params)
        return read

    out = []
    for name in VIEW_DATASETS:
        view = VIEWS_BY_NAME[name]
        schema = _relation_types(wh, ANALYTICS_SCHEMA, name)
        if next(iter(schema)) != "patient_id":  # the blocks are ranges of the first sort column
            raise ValueError(f"{ANALYTICS_SCHEMA}.{name}: its first column must be patient_id to be exported in blocks")
        out.append(Source(name, view.description, dict(view.columns), ranges, read_view(name, schema)))
    for name, spec in sorted(RESULT_TABLES.items()):
        try:
            schema = _relation_types(wh, ANALYTICS_SCHEMA, name)
        except LookupError:  # declared by newer code, not created yet in this database (migration pending)
            warnings.warn(f"result table {name} not exported: absent from this warehouse (migration pending?)",
                          stacklevel=3)
            continue
        labels = {c.name: c.comment for c in spec.columns} | {"run_id": RUN_ID_COMMENT}
        prefix = _leading_key(schema, spec.primary_key)
        blocks = [None] if block_patients is None else \
            _group_ranges(wh, name, schema, prefix, BLOCK_ROWS_PER_PATIENT * block_patients)
        relation = f"{ANALYTICS_SCHEMA}.{name}"
        if copies is not None and len(blocks) > 1:
            relation = copies.enter_context(wh.block_copy(relation, prefix))
        out.append(Source(name, spec.description, labels, blocks,
                          _range_reader(wh, *relation.split(".", 1), schema, prefix)))
    return out, summary


def _leading_key(schema: dict[str, pl.DataType], key: Sequence[str]) -> list[str]:
    """A result table's first columns that are key columns (never null), without the key's last: the
    groups of rows a block of the table is made of (ph_residual: endpoint, model, term)."""
    prefix = []
    for column in schema:
        if column not in key or len(prefix) == len(key) - 1:
            break
        prefix.append(column)
    return prefix


def _group_ranges(wh, name: str, schema: dict[str, pl.DataType], prefix: list[str],
                  block_rows: int) -> list[tuple[tuple | None, tuple | None] | None]:
    """Ranges ``[low, high)`` of the values of ``prefix`` (the table's first sort columns), each holding
    whole groups of rows, at most ``block_rows`` rows unless one group is larger; ``[None]``: one block."""
    from clms_etl.warehouse.schema import ANALYTICS_SCHEMA

    if not prefix:
        return [None]
    columns = ", ".join(prefix)
    counts = wh.read_sql(f"SELECT {columns}, COUNT(*) AS _rows FROM {ANALYTICS_SCHEMA}.{name} GROUP BY {columns}")
    if counts.is_empty() or counts["_rows"].sum() <= block_rows:
        return [None]
    counts = counts.with_columns(pl.col(c).cast(schema[c]) for c in prefix).sort(prefix, nulls_last=True)
    starts, rows = [], 0
    for *values, n in counts.iter_rows():
        if rows and rows + n > block_rows:
            starts.append(tuple(values))
            rows = 0
        rows += n
    return list(zip([None, *starts], [*starts, None], strict=True))


def _range_reader(wh, schema_name: str, name: str, schema: dict[str, pl.DataType], prefix: list[str]):
    """Reads the rows of a range of :func:`_group_ranges` (None: the whole table), sorted by every column."""
    compared = [wh.bytewise(c) if schema[c] == pl.String else c for c in prefix]

    def read(bounds) -> pl.DataFrame:
        if bounds is None:
            return _typed_relation(wh, schema_name, name, schema)
        clauses, params = [], {}
        for tag, values, below in (("low", bounds[0], False), ("high", bounds[1], True)):
            if values is not None:
                clauses.append(_lexicographic(compared, tag, below))
                params |= {f"{tag}{i}": v for i, v in enumerate(values)}
        return _typed_relation(wh, schema_name, name, schema, " AND ".join(clauses), params)
    return read


def _lexicographic(columns: Sequence[str], tag: str, below: bool) -> str:
    """SQL: the tuple of ``columns`` ``<`` (``below``) or ``>=`` the parameters ``:<tag>0``, ``:<tag>1``...
    (written out: DuckDB compares no row values in a range)."""
    terms = []
    for i, column in enumerate(columns):
        last = i == len(columns) - 1
        op = "<" if below else (">=" if last else ">")
        terms.append(" AND ".join([*(f"{columns[j]} = :{tag}{j}" for j in range(i)), f"{column} {op} :{tag}{i}"]))
    return "(" + " OR ".join(f"({t})" for t in terms) + ")"


@dataclass
class _Measure:
    """What a file's header must say of the whole dataset before its first block is written: the first pass."""

    rows: int = 0
    schema: pl.Schema | None = None
    labels: dict[str, str] = field(default_factory=dict)
    values: dict[str, set] = field(default_factory=dict)  # code-list columns' distinct values
    xpt_bytes: dict[str, int | None] = field(default_factory=dict)  # string column -> widest value (None: all null)
    dta_bytes: dict[str, int] = field(default_factory=dict)  # the same with nulls as empty strings
    non_ascii: bool = False

    def add(self, dataset: Dataset) -> None:
        frame = dataset.frame
        if self.schema is None:
            self.schema, self.labels = frame.schema, dataset.labels
            self.non_ascii = not "".join(frame.columns).isascii()
        self.rows += frame.height
        for column, found in _code_values(frame).items():
            self.values.setdefault(column, set()).update(found)
        for column, dtype in frame.schema.items():
            if dtype != pl.String:
                continue
            lengths = frame[column].str.len_bytes()
            widest = lengths.max()
            self.dta_bytes[column] = max(self.dta_bytes.get(column, 0), widest or 0)
            if widest is not None and widest > XPT_STRING_BYTES:
                long = frame[column].filter(lengths > XPT_STRING_BYTES).to_list()
                widest = max(lengths.filter(lengths <= XPT_STRING_BYTES).max() or 0,
                             *(len(_cut_bytes(v, XPT_STRING_BYTES).encode()) for v in long))
            before = self.xpt_bytes.get(column)
            self.xpt_bytes[column] = widest if before is None else max(before, widest or 0)
        strings = [c for c, t in frame.schema.items() if t == pl.String]
        if not self.non_ascii and strings and frame.height:
            self.non_ascii = bool(frame.select(pl.any_horizontal(
                pl.col(c).str.contains(r"[^\x00-\x7F]").any() for c in strings)).item())


def _read_source(source: Source, origins: pl.DataFrame, protected: pl.DataFrame | None,
                 kept: Path) -> tuple[Shape, list, _Measure]:
    """The first pass over ``source``: read, protect and measure each block (widths, code lists, text), kept as
    an Arrow file in ``kept`` (owner-only, beside the exports) until :func:`_write_files` writes it; a source
    of one block is kept in memory. Returns the dataset's shape, its blocks and what was measured."""
    measure = _Measure()
    blocks: list = []
    for i, block in enumerate(source.blocks):
        part = _exported(Dataset(source.name, source.description, source.read(block), source.labels), origins,
                         protected)
        measure.add(part)
        if len(source.blocks) == 1:
            blocks.append(part.frame)
        else:
            blocks.append(kept / f"{i}.arrow")
            part.frame.write_ipc(blocks[-1], compression="uncompressed")
        del part
    coded = _coded(measure.schema, measure.values)
    return Shape(source.name, source.description, measure.schema, measure.labels, measure.rows, coded), blocks, measure


def _write_files(shape: Shape, measure: _Measure, formats: Sequence[str], outdir: Path, member: str,
                 blocks: list, kept: Path) -> None:
    """The second pass: the dataset's file in each format, every block in order (the headers as the first pass
    measured the whole dataset); the kept blocks removed at the end. The formats of a block are written side by
    side: Parquet and CSV are written by Arrow and polars without the GIL, the SAS and Stata rows encoded by
    numpy."""
    files = {}
    try:
        for fmt in formats:
            path = outdir / fmt / f"{shape.name}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "parquet":
                files[fmt] = _ParquetFile(path, shape)
            elif fmt == "csv":
                files[fmt] = _CsvFile(path, measure.non_ascii)
            else:
                files[fmt] = _StatsFile(fmt, path, shape, member, measure, blocks=len(blocks))
        with ThreadPoolExecutor(max_workers=len(files), thread_name_prefix="clms-export") as writers:
            for block in blocks:
                frame = block if isinstance(block, pl.DataFrame) else pl.read_ipc(block.read_bytes())  # not mapped
                written = [writers.submit(file.write, frame) for file in files.values()]
                wait(written)
                for done in written:
                    done.result()  # (a writer's exception, raised here)
    finally:
        for file in files.values():
            file.close()
        shutil.rmtree(kept, ignore_errors=True)


class _ParquetFile:
    """Parquet with each field's description (and code list with its labels) in the field metadata, written
    as ``pq.write_table`` writes the whole table: row groups of :data:`PARQUET_ROW_GROUP` rows, each from one
    contiguous column (the rows of a group are gathered first: the pages' bounds follow the chunks)."""

    def __init__(self, path: Path, shape: Shape):
        self.path, self.shape = path, shape
        self.schema = self.writer = None
        self.parts: list = []
        self.buffered = 0

    def write(self, frame: pl.DataFrame) -> None:
        table = frame.to_arrow()
        if self.schema is None:
            self.schema = self._schema(table.schema)
        self.parts.append(table.cast(self.schema))
        self.buffered += table.num_rows
        if self.buffered >= PARQUET_ROW_GROUP:
            self._flush(final=False)

    def _schema(self, arrow_schema):
        import pyarrow as pa

        fields = []
        for f in arrow_schema:
            meta = {"description": self.shape.labels.get(f.name, "")}
            code_list = self.shape.coded.get(f.name)
            if code_list:
                labels = value_labels(code_list) if code_list == BOOLEAN_CODE_LIST else code_labels(code_list)
                meta |= {"code_list": code_list, "value_labels": json.dumps({str(k): v for k, v in labels.items()})}
            fields.append(f.with_metadata(meta))
        return pa.schema(fields, metadata={"description": self.shape.description, "dataset": self.shape.name})

    def _gathered(self):
        """The buffered rows as one table of contiguous columns, each column's parts released once joined."""
        import pyarrow as pa

        columns = [[part.column(i) for part in self.parts] for i in range(len(self.schema))]
        self.parts = []
        joined = []
        for i in range(len(columns)):
            joined.append(pa.chunked_array([c for chunked in columns[i] for c in chunked.chunks],
                                           type=self.schema.field(i).type).combine_chunks())
            columns[i] = None
        return pa.Table.from_arrays(joined, schema=self.schema)

    def _flush(self, final: bool) -> None:
        import pyarrow.parquet as pq

        table = self._gathered()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema)
        done = 0
        while table.num_rows - done >= PARQUET_ROW_GROUP or (final and done < table.num_rows):
            size = min(PARQUET_ROW_GROUP, table.num_rows - done)
            self.writer.write_table(table.slice(done, size))
            done += size
        rest = table.slice(done)
        self.parts, self.buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        import pyarrow.parquet as pq

        if self.schema is None:
            return
        if self.writer is None and not self.buffered:  # no row: as write_table writes an empty table
            pq.write_table(self._gathered(), self.path)
            return
        self._flush(final=True)
        self.writer.close()


class _CsvFile:
    """Comma-separated UTF-8, with a byte-order mark when any header or value is not ASCII
    (:func:`clms_etl.report.csv_files.write_csv`, which the first pass decided for the whole file)."""

    def __init__(self, path: Path, non_ascii: bool):
        self.out = path.open("w", encoding="utf-8", newline="")
        if non_ascii:
            self.out.write("\ufeff")
        self.header = True

    def write(self, frame: pl.DataFrame) -> None:
        self.out.write(frame.write_csv(include_header=self.header, date_format="%Y-%m-%d",
                                       datetime_format="%Y-%m-%dT%H:%M:%S%z"))
        self.header = False

    def close(self) -> None:
        self.out.close()


class _StatsFile:
    """A SAS transport (v5) or Stata (118) file written one block at a time, byte for byte the file pyreadstat
    writes from the whole frame.

    pyreadstat sizes each string variable by its longest value. The header comes from pyreadstat writing a
    padding row alone: in each string column a value as long as the whole dataset's longest (the first pass
    measured it), so the header has the whole file's row layout. The rows are encoded by numpy
    (:func:`_xpt_encoded`, :func:`_dta_encoded`), or, for what only readstat writes (a NUL in a string, a
    Stata number beyond its range), by pyreadstat from the block plus the padding row, whose rows without
    that last one are appended. Stata's number of rows, section offsets and label sets are set at the end.
    A Stata dataset with a string too long for a fixed-width variable (a strL, stored apart from the rows)
    is gathered and written whole by pyreadstat.
    """

    def __init__(self, fmt: str, path: Path, shape: Shape, member: str, measure: _Measure, blocks: int):
        self.fmt, self.path, self.shape, self.member = fmt, path, shape, member
        self.names = short_names(list(shape.schema), XPT_NAME_LENGTH if fmt == "xpt" else DTA_NAME_LENGTH)
        widths = measure.xpt_bytes if fmt == "xpt" else measure.dta_bytes
        self.widths = {c: (None if w is None else max(w, 1)) for c, w in widths.items()}
        gather = fmt == "dta" and any(w >= DTA_STRL_BYTES for w in self.widths.values() if w)
        self.mode = "whole" if blocks == 1 or gather else "blocks"
        self.frames: list[pl.DataFrame] = []
        self.out = self.head = self.tail = None
        self.rows = self.row_bytes = 0

    def write(self, frame: pl.DataFrame) -> None:
        if self.fmt == "dta":
            frame = _numeric_codes(frame, self.shape.coded)
        if self.mode == "whole":
            self.frames.append(frame)
        else:
            self._append(frame, padded=True)

    def _padding_row(self, schema: pl.Schema) -> pl.DataFrame:
        return pl.DataFrame({c: [("x" * self.widths[c]) if t == pl.String and self.widths.get(c) else None]
                             for c, t in schema.items()}, schema=schema)

    def _append(self, frame: pl.DataFrame, padded: bool) -> None:
        rows = frame.height
        if self.fmt == "xpt" or not any(w >= DTA_STRL_BYTES for w in self.widths.values() if w):
            data = _polars_for_stats(frame, self.fmt)
            if data is not None and self._append_encoded(data, frame.schema):
                return
        if padded:
            frame = pl.concat([frame, self._padding_row(frame.schema)])
        raw = self._written(frame)
        start, end, row_bytes = self._rows_of(raw, frame.height)
        if self.out is None:
            self._begin(raw, start, end, row_bytes)
        self.out.write(raw[start:start + rows * row_bytes])
        self.rows += rows

    def _append_encoded(self, data: pl.DataFrame, schema: pl.Schema) -> bool:
        """Rows encoded by :func:`_xpt_encoded` / :func:`_dta_encoded`, after the header pyreadstat writes for
        the padding row alone; False (nothing appended) for rows only readstat writes (a NUL in a string)."""
        if self.out is None:
            raw = self._written(self._padding_row(schema))
            self._begin(raw, *self._rows_of(raw, 1))
        widths = {c: w or 1 for c, w in self.widths.items()}  # an all-null column: width 1, as readstat sizes it
        encoded = _xpt_encoded(data, widths) if self.fmt == "xpt" else \
            _dta_encoded(data, widths, "<" if b"<byteorder>LSF</byteorder>" in self.head[:256] else ">")
        if encoded is None:
            return False
        if len(encoded) != data.height * self.row_bytes:
            raise AssertionError(f"{self.path.name}: {data.height} rows encoded in {len(encoded)} bytes, "
                                 f"not {self.row_bytes} each")
        self.out.write(encoded)
        self.rows += data.height
        return True

    def _written(self, frame: pl.DataFrame) -> bytes:
        """The file pyreadstat writes for ``frame`` (a scratch file, read back and removed)."""
        import pyreadstat

        data = _polars_for_stats(frame, self.fmt)
        if data is None:
            data = _to_pandas_for_stats(frame, self.fmt).rename(columns=self.names)
            marks = _mark_infinities(data) if self.fmt == "dta" else {}
        else:
            data, marks = data.rename(self.names), {}
        scratch = self.path.with_name(f".{self.path.name}.block")
        try:
            if self.fmt == "xpt":
                labels = [cut_label(self.shape.labels.get(c, ""), XPT_LABEL_LENGTH) for c in frame.columns]
                pyreadstat.write_xport(data, str(scratch), file_label=self.shape.name[:XPT_LABEL_LENGTH],
                                       column_labels=labels, table_name=self.member, file_format_version=5)
            else:
                labels = [cut_label(self.shape.labels.get(c, ""), DTA_LABEL_LENGTH) for c in frame.columns]
                pyreadstat.write_dta(data, str(scratch), version=DTA_VERSION,
                                     file_label=dataset_label(self.shape.description), column_labels=labels,
                                     missing_user_values=marks or None,
                                     variable_value_labels={self.names[c]: value_labels(cl)
                                                            for c, cl in self.shape.coded.items()} or None)
            return scratch.read_bytes()
        finally:
            scratch.unlink(missing_ok=True)

    def _rows_of(self, raw: bytes, rows: int) -> tuple[int, int, int]:
        """Where the rows of a file of ``rows`` rows start and end, and the bytes of one."""
        if self.fmt == "xpt":
            start, row_bytes = _xpt_rows(raw, len(self.shape.schema))
            return start, start + rows * row_bytes, row_bytes  # then blanks to a whole record
        start, end = _dta_rows(raw)
        return start, end, (end - start) // rows if rows else 0

    def _begin(self, raw: bytes, start: int, end: int, row_bytes: int) -> None:
        """The file starts with ``raw``'s header; its end (after the rows) is kept for :meth:`close`."""
        self.head, self.tail, self.row_bytes = raw[:start], raw[end:], row_bytes
        self.out = self.path.open("wb")
        self.out.write(self.head)

    def close(self) -> None:
        try:
            if self.mode == "whole":
                frame = pl.concat(self.frames) if self.frames else None
                self.frames = []
                if frame is not None:
                    self._append(frame, padded=False)
            if self.out is None:
                return
            if self.fmt == "xpt":  # v5 pads the file with blanks to whole 80-byte records
                self.out.write(b" " * (-self.out.tell() % 80))
                return
            label_sets = [self.shape.coded.get(c) for c in self.shape.schema] if self.shape.coded else None
            head, tail = _dta_finished(self.head, self.tail, self.rows, self.rows * self.row_bytes, label_sets)
            self.out.seek(0)
            self.out.write(head)
            self.out.seek(0, 2)
            self.out.write(tail)
        finally:
            if self.out is not None:
                self.out.close()


_DTA_MISSING = 0x7FE0000000000000  # Stata's missing value "." as the bits of a double (dta 113 and later)


def _dta_encoded(data: pl.DataFrame, widths: dict[str, int], order: str) -> bytes | None:
    """The rows of ``data`` (as :func:`_polars_for_stats` gives them for Stata) as readstat writes them in a dta
    118 file: each number a double in the file's byte ``order`` (null: Stata's missing value), each string
    its UTF-8 bytes padded with NUL to the variable's width (:func:`_encoded_rows`)."""
    def doubles(values, null):
        bits = values.view("u8").copy()
        bits[null] = _DTA_MISSING
        return bits.astype(f"{order}u8")
    return _encoded_rows(data, widths, doubles, b"\0")


def _encoded_rows(data: pl.DataFrame, widths: dict[str, int], numbers: Callable, pad: bytes) -> bytes | None:
    """Fixed-width records of ``data``, encoded by numpy rather than cell by cell: each number the 8 bytes
    ``numbers(doubles, null mask)`` gives, each string its UTF-8 bytes padded with ``pad`` to the variable's
    width (null: padding only); None when a string holds a NUL (readstat cuts it there)."""
    import numpy as np

    fields, values = [], []
    for i, (name, dtype) in enumerate(data.schema.items()):
        column = data[name]
        if dtype == pl.String:
            raw = column.cast(pl.Binary)
            if raw.bin.contains(b"\0").any():
                return None
            values.append(np.array(raw.fill_null(b"").to_list(), dtype=f"S{widths[name]}"))  # NUL-padded
            if pad != b"\0":  # no NUL of its own: every NUL is padding
                values[-1].view(np.uint8)[values[-1].view(np.uint8) == 0] = pad[0]
        else:
            values.append(numbers(column.cast(pl.Float64).fill_null(0.0).to_numpy(), column.is_null().to_numpy()))
        fields.append((f"f{i}", values[-1].dtype))
    rows = np.empty(data.height, dtype=np.dtype(fields))
    for (name, _), array in zip(fields, values, strict=True):
        rows[name] = array
    return rows.tobytes()


_XPT_MISSING = 0x2E00000000000000  # SAS's missing value "." (then zeros), big-endian
_IBM_BIGGEST = 0x7FFFFFFFFFFFFFFF  # what readstat writes for a number beyond 2**249, with its sign


def _ibm_doubles(values) -> "np.ndarray":
    """IEEE doubles as the 8-byte IBM floats of SAS transport, to the bit as readstat converts them (SAS's
    TS-140 ``ieee2xpt``): the 53-bit mantissa shifted into 56 bits under a base-16 exponent (exact), a
    number beyond 2**249 (infinity too) the largest IBM float with its sign, one below 2**-260 (zero and
    -0.0 too) zero."""
    import numpy as np

    bits = np.asarray(values, dtype=np.float64).view(np.uint64)
    sign = (bits >> np.uint64(63)) << np.uint64(63)
    exponent = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64) - 1023
    mantissa = (bits & np.uint64((1 << 52) - 1)) | np.uint64(1 << 52)
    hex_exponent = np.floor_divide(exponent + 4, 4)  # 2**(e+1) = 16**E / 2**k, k in 0..3
    shift = np.uint64(3) - np.clip(4 * hex_exponent - exponent - 1, 0, 3).astype(np.uint64)
    out = sign | (np.clip(hex_exponent + 64, 0, 127).astype(np.uint64) << np.uint64(56)) | (mantissa << shift)
    out = np.where(exponent > 248, sign | np.uint64(_IBM_BIGGEST), out)
    return np.where(exponent < -260, np.uint64(0), out)


def _xpt_encoded(data: pl.DataFrame, widths: dict[str, int]) -> bytes | None:
    """The rows of ``data`` (as :func:`_polars_for_stats` gives them for SAS transport) as readstat writes them
    in a version 5 file: each number its IBM float (:func:`_ibm_doubles`; null: SAS's missing value), each
    string its UTF-8 bytes padded with blanks to the variable's width (:func:`_encoded_rows`)."""
    def doubles(values, null):
        bits = _ibm_doubles(values)
        bits[null] = _XPT_MISSING
        return bits.astype(">u8")
    return _encoded_rows(data, widths, doubles, b" ")


def _xpt_rows(raw: bytes, variables: int) -> tuple[int, int]:
    """Where a SAS transport v5 file's rows start and the bytes of one row (the sum of its variables'
    lengths, from their 140-byte NAMESTR records)."""
    namestr = raw.index(b"HEADER RECORD*******NAMESTR HEADER RECORD") + 80
    row_bytes = sum(struct.unpack(">H", raw[namestr + i * 140 + 4:namestr + i * 140 + 6])[0] for i in range(variables))
    return raw.index(b"HEADER RECORD*******OBS     HEADER RECORD", namestr + variables * 140) + 80, row_bytes


def _dta_map(raw: bytes) -> tuple[str, int, list[int]]:
    order = "<" if b"<byteorder>LSF</byteorder>" in raw[:256] else ">"
    at = raw.index(b"<map>") + len(b"<map>")
    return order, at, list(struct.unpack(f"{order}14Q", raw[at:at + 112]))


def _dta_rows(raw: bytes) -> tuple[int, int]:
    """Where a dta 118 file's rows start and end (its ``<data>`` section, from the map)."""
    _, _, offsets = _dta_map(raw)
    return offsets[9] + len(b"<data>"), offsets[10] - len(b"</data>")


def _dta_finished(head: bytes, tail: bytes, rows: int, data_bytes: int,
                  label_sets: Sequence[str | None] | None) -> tuple[bytes, bytes]:
    """The header and the end of a dta 118 file whose ``<data>`` holds ``rows`` rows in ``data_bytes``: the
    number of rows and the offsets of the sections after the rows, and with ``label_sets`` the variables'
    value-label sets named after their code lists (:func:`_share_label_sets`). The header keeps its length."""
    order, at, offsets = _dta_map(head)
    shift = len(head) + data_bytes + len(b"</data>") - offsets[10]
    offsets[10:] = [o + shift for o in offsets[10:]]
    n_at = head.index(b"<N>") + len(b"<N>")
    head = head[:n_at] + struct.pack(f"{order}Q", rows) + head[n_at + 8:]
    if label_sets:
        head, tail = _share_label_sets(head, tail, order, offsets, label_sets)
    return head[:at] + struct.pack(f"{order}14Q", *offsets) + head[at + 112:], tail


def _share_label_sets(head: bytes, tail: bytes, order: str, offsets: list[int],
                      label_sets: Sequence[str | None]) -> tuple[bytes, bytes]:
    """Name each variable's value-label set after its code list and keep one set per list (``offsets``,
    the map, updated in place).

    pyreadstat (readstat) writes one set per variable, named after the variable. A dta 118 file names
    each variable's set in ``<value_label_names>`` (129 bytes per variable, in the header) and defines the
    sets in ``<value_labels>`` (after the rows; ``<lbl>``: 4-byte length, 129-byte name, 3 bytes padding,
    table); the ``<map>`` holds the sections' offsets (Stata's "dta file format" documentation).
    """
    width, names_at = 129, offsets[6] + len(b"<value_label_names>")
    old = [head[names_at + i * width:names_at + (i + 1) * width].split(b"\0", 1)[0].decode()
           for i in range(len(label_sets))]
    tail_at = offsets[10] - len(b"</data>")  # the file's offset of the tail's first byte
    start, end = offsets[11] + len(b"<value_labels>") - tail_at, offsets[12] - len(b"</value_labels>") - tail_at
    tables, pos = {}, start
    while pos < end:
        length = struct.unpack(f"{order}I", tail[pos + 5:pos + 9])[0]
        name = tail[pos + 9:pos + 9 + width].split(b"\0", 1)[0].decode()
        body_at = pos + 9 + width + 3
        tables[name] = tail[body_at:body_at + length]
        pos = body_at + length + len(b"</lbl>")
    shared = {}
    for before, after in zip(old, label_sets, strict=True):
        if before and after:
            shared.setdefault(after, tables[before])
    section = b"".join(b"<lbl>" + struct.pack(f"{order}I", len(body)) + name.encode().ljust(width, b"\0")
                       + b"\0\0\0" + body + b"</lbl>" for name, body in shared.items())
    names = b"".join((n or "").encode().ljust(width, b"\0") for n in label_sets)
    head = head[:names_at] + names + head[names_at + len(names):]
    tail = tail[:start] + section + tail[end:]
    offsets[12] += len(section) - (end - start)
    offsets[13] += len(section) - (end - start)
    return head, tail


def disclosure_text(disclosure: KAnonymity, shareable: bool) -> str:
    """The codebook's paragraph on re-identification: the smallest group and whether to share."""
    if shareable:
        verdict = (f"**Shareable**: generalised (age in 10-year bands, no laboratory accession) and locally "
                   f"suppressed until every group holds at least {disclosure.threshold} patients.")
    elif disclosure.passes:
        verdict = (f"**In-house** export (exact age, diagnosis year, centre); its smallest group reaches the "
                   f"threshold of {disclosure.threshold}, but exact ages are finer than the bands measured: "
                   f"export with `--shareable` to share it.")
    else:
        verdict = (f"**In-house only — not shareable**: groups smaller than {disclosure.threshold} patients "
                   f"(exact age, diagnosis year and centre are kept for the registry's own analyses). "
                   f"Export with `--shareable` for files that may leave the registry.")
    return f"{verdict} k-anonymity (one row per patient, age in 10-year bands): {disclosure.summary()}"


def _code_list_rows(codebook: pl.DataFrame) -> list[str]:
    rows = []
    for code_list in codebook["code_list"].drop_nulls().unique(maintain_order=True):
        if code_list == BOOLEAN_CODE_LIST:
            pairs = [(value, "false" if value == 0 else "true", label) for value, label in BOOLEAN_LABELS.items()]
        else:
            pairs = [(value, code, label) for value, (code, label)
                     in zip(value_labels(code_list), code_labels(code_list).items(), strict=True)]
        rows += [f"| `{code_list}` | {value} | `{code}` | {label} |" for value, code, label in pairs]
    return rows


def _readme(datasets: Sequence[Shape], codebook: pl.DataFrame, formats: Sequence[str],
            disclosure: KAnonymity, shareable: bool) -> str:
    # the module docstring's conventions, from reStructuredText to Markdown
    doc = (__doc__ or "").split("Conventions per format", 1)[1].split("Only pseudonyms", 1)[0]
    doc = doc.split("\n", 1)[1].replace("``", "`")
    dates = (__doc__ or "").split("No calendar date", 1)[1].split("Conventions per format", 1)[0]
    dates = re.sub(r":(?:data|mod|class):`~?([^`]+)`", r"`\1`", "No calendar date" + dates).replace("``", "`")
    lines = [
        "# cLMS registry: analysis datasets",
        "",
        f"Exported {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC} by clms-etl from the warehouse's `analytics` schema. "
        f"Formats: {', '.join(formats)} (one folder each). Patients appear under pseudonyms only.",
        "",
        "## Dates, ages and re-identification",
        "",
        dates.strip(),
        "",
        disclosure_text(disclosure, shareable),
        "",
        "## Conventions per format",
        "",
        doc.strip(),
        "",
        "`codebook.csv` holds the table below for every dataset in machine-readable form.",
        "",
        "## Code lists",
        "",
        "A coded column keeps its codes in Parquet, CSV and SAS transport; in Stata it holds the value on the left "
        "with the label set named after the code list; `xpt/formats.sas` defines the same labels as SAS formats.",
        "",
        "| code list | value | code | label |",
        "|---|---|---|---|",
        *_code_list_rows(codebook),
    ]
    for dataset in datasets:
        rows = codebook.filter(pl.col("dataset") == dataset.name)
        lines += ["", f"## `{dataset.name}` ({dataset.rows} rows; XPT member `{rows['xpt_dataset'][0]}`)"
                  if rows.height else f"## `{dataset.name}`", "", dataset.description, "",
                  "| column | type | XPT name | Stata name | code list | label |", "|---|---|---|---|---|---|"]
        for r in rows.iter_rows(named=True):
            label = r["label"].replace("|", "\\|")
            code_list = f"`{r['code_list']}`" if r["code_list"] else ""
            lines.append(f"| `{r['column']}` | {r['type']} | `{r['xpt_name']}` | `{r['stata_name']}` | {code_list} "
                         f"| {label} |")
    return "\n".join(lines) + "\n"
