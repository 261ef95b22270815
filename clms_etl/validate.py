"""Validation of one delivery: canonical rules -> data queries -> accepted and quarantined rows.

:func:`validate` runs the pandera schemas of :mod:`validations.canonical` on the reader's
canonical frames (lazily, so every failure is collected), turns each failure into a
:class:`~clms_etl.data_queries.DataQuery` row pointing at the centre's file, sheet and row, adds
the reader's own queries, and splits every table:

* a row with at least one ERROR query (reader's or validation's) is quarantined, with the
  rule ids in ``quarantine_reasons``;
* a patient with no accepted row takes its tumour, operation and event rows with it (rule
  ``parent_quarantined``, one query per cascaded row, so query counts and row counts agree);
  likewise a laboratory sample with no accepted manifest row takes its segments, variants and
  fusions (``sample_quarantined``, or ``sample_not_in_manifest`` when no manifest row names it);
* every other row is accepted, with ``has_warning`` when a WARNING query concerns it.

What is checked — the pandera schemas, the rules, the context the schemas compare with — is data
about the data: ``validations/canonical.py`` declares it here with :func:`declare_ruleset` when it
is imported (the Dagster layer, the command line and the tests import it), so that the library
never imports ``validations``. Severities and messages come from the rule registry
(:mod:`clms_etl.rules`) only; labels, units and code lists of the queries from the contract
(:mod:`clms_etl.contract`). Everything here is vectorised polars except building the text of the
queries for the rows that failed.
"""

from __future__ import annotations

import copy
import datetime as dt
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.constants import CHECK_OUTPUT_KEY
from pandera.errors import SchemaErrors

from clms_etl import contract, model, rules
from clms_etl.data_queries import QUERY_SCHEMA
from clms_etl.readers.base import ReadResult
from clms_etl.rules import ERROR, WARNING

ACCOUNTING_SCHEMA = {
    "table": pl.String,
    "rows_read": pl.Int64,
    "rows_accepted": pl.Int64,
    "rows_quarantined": pl.Int64,
}
_EMPTY_REASONS = pl.lit([], dtype=pl.List(pl.String))
_VALUE_LABELS = contract.column_value_labels()  # codes shown in French inside messages


@dataclass(frozen=True)
class Ruleset:
    """What the validate step checks, as ``validations/canonical.py`` declares it.

    A rule (of ``rules`` and ``sample_rules``) has a ``severity`` (ERROR quarantines the row) and
    a French ``message`` template. ``schemas`` are pandera schemas per clinical table, run on the
    frames ``add_context(frames, delivery_date)`` returns; ``children`` are the tables whose rows
    follow their patient into quarantine, ``sample_children`` those that follow their sample.
    """

    schemas: Mapping[str, pa.DataFrameSchema]
    rules: Mapping
    sample_rules: Mapping
    children: tuple[str, ...]
    sample_children: tuple[str, ...]
    filled_by_validation: Mapping[str, tuple[str, ...]]  # columns validation fills; a reader may omit them
    add_context: Callable[[dict[str, pl.DataFrame], dt.date], dict[str, pl.DataFrame]]


_DECLARED: list[Ruleset] = []


def declare_ruleset(ruleset: Ruleset) -> None:
    """Make ``ruleset`` what :func:`validate` checks (a later declaration replaces it)."""
    _DECLARED[:] = [ruleset]


def declared_ruleset() -> Ruleset:
    if not _DECLARED:
        raise RuntimeError("no canonical validation declared: the validations package declares it when "
                           "imported (import validations.canonical before validating a delivery)")
    return _DECLARED[0]


@dataclass
class ValidatedDelivery:
    centre: str
    delivery_date: dt.date
    accepted: dict[str, pl.DataFrame]  # canonical columns + has_warning
    quarantined: dict[str, pl.DataFrame]  # canonical columns + quarantine_reasons (rule ids)
    queries: pl.DataFrame  # QUERY_SCHEMA: the reader's, then validation's, then cascades
    accounting: pl.DataFrame  # table, rows_read, rows_accepted, rows_quarantined
    # (query_id, answer): the centre's answers typed in a query workbook returned with the delivery
    answers: pl.DataFrame | None = None
    from_reader: int = 0  # the first queries, the reader's; validation's and the cascades' follow

    @property
    def balanced(self) -> bool:
        return self.accounting.filter(
            pl.col("rows_read") != pl.col("rows_accepted") + pl.col("rows_quarantined")
        ).is_empty()

    def assert_balanced(self) -> None:
        """Every row read is either accepted or quarantined, never lost nor counted twice."""
        if not self.balanced:
            raise AssertionError(f"{self.centre} {self.delivery_date}: rows lost or doubled\n{self.accounting}")


def validate(result: ReadResult, source_columns: dict[str, dict[str, str]] | None = None) -> ValidatedDelivery:
    """Validate one reader result.

    ``source_columns`` (table -> canonical field -> the column name in the centre's file) lets
    queries name the file's own column; a reader may also set it as ``result.source_columns``.
    Without it a query names the field by its French label in the contract (:mod:`clms_etl.contract`).
    """
    names = source_columns or getattr(result, "source_columns", None) or {}
    ruleset = declared_ruleset()
    frames = {table: _conformed(table, frame, ruleset) for table, frame in result.frames.items()}
    contexts = ruleset.add_context({t: f for t, f in frames.items() if t in ruleset.schemas}, result.delivery_date)
    found = [_failures_to_queries(table, frame, result, names, ruleset) for table, frame in contexts.items()]
    for table, frame in contexts.items():
        frames[table] = frame.select(list(model.TABLES[table]))  # keeps the tumour grade just computed
    read = result.queries_frame()
    checked = pl.concat(found, how="vertical") if found else pl.DataFrame(schema=QUERY_SCHEMA)
    queries = pl.concat([read, _not_explained_by_the_reader(checked, read)], how="vertical")

    # The parents marked first; their quarantine cascades to their children, which are then marked
    # once with the cascade's queries (each row's reasons gathered once, never rewritten).
    parents = {t: f for t, f in frames.items() if t in _PARENTS}
    on_parent = pl.col("table_name").is_in(list(parents))
    marked = _mark(parents, queries.filter(on_parent))
    cascade = pl.concat([_cascade(marked, frames, result, ruleset), _cascade_samples(marked, frames, result, ruleset)],
                        how="vertical")
    marked |= _mark({t: f for t, f in frames.items() if t not in parents},
                    pl.concat([queries.filter(~on_parent), cascade], how="vertical"))
    marked = {table: marked[table] for table in frames}
    accepted, quarantined, counts = {}, {}, []
    for table, frame in marked.items():
        bad = pl.col("quarantine_reasons").list.len() > 0
        columns = list(model.TABLES[table])
        accepted[table] = frame.filter(~bad).select(*columns, "has_warning")
        quarantined[table] = frame.filter(bad).select(*columns, "quarantine_reasons")
        counts.append((table, frame.height, accepted[table].height, quarantined[table].height))
    listed = one_query_per_problem(pl.concat([queries, cascade], how="vertical").with_columns(
        _read=pl.int_range(pl.len()) < read.height))
    delivery = ValidatedDelivery(
        result.centre, result.delivery_date, accepted, quarantined, listed.drop("_read"),
        pl.DataFrame(counts, schema=ACCOUNTING_SCHEMA, orient="row"), from_reader=int(listed["_read"].sum()),
    )
    delivery.assert_balanced()
    return delivery


def _not_explained_by_the_reader(checked: pl.DataFrame, read: pl.DataFrame) -> pl.DataFrame:
    """Validation's queries without those saying a value is missing where the reader already
    raised an error on that very cell (it could not read it: that is why the value is null)."""
    cell = ["file", "sheet", "row", "field"]
    unread = read.filter(pl.col("severity") == ERROR, pl.col("field").is_not_null()).select(cell).unique()
    completeness = [r.id for r in rules.registry().values() if r.category == "completeness"]
    explained = checked.filter(pl.col("rule").is_in(completeness)).join(unread, on=cell, how="semi", nulls_equal=True)
    return checked.join(explained, on=list(checked.columns), how="anti", nulls_equal=True)


def one_query_per_problem(queries: pl.DataFrame) -> pl.DataFrame:
    """The first of the queries that repeat one problem: the same rule on the same canonical row
    (a reader and validation both seeing a blank date), or on the same cell of the centre's file
    (one line of a wide export feeding several canonical rows: its three cascaded children, the
    metastasis rows of one undated site list). Rows are quarantined before, from every query."""
    row = pl.struct("table_name", "row_id", "rule")
    cell = pl.struct("file", "sheet", "row", "field", "rule")
    first_on_row = pl.col("row_id").is_null() | row.is_first_distinct()
    return queries.filter(first_on_row).filter(cell.is_first_distinct())


# --- reader contract ---------------------------------------------------------------------------

def _conformed(table: str, frame: pl.DataFrame, ruleset: Ruleset | None = None) -> pl.DataFrame:
    """The frame in canonical column order; a reader that broke the contract is a bug, not a query."""
    if table not in model.TABLES:
        raise ValueError(f"unknown canonical table {table!r}")
    optional = set((ruleset or declared_ruleset()).filled_by_validation.get(table, ()))
    wrong = [
        f"{c}: {frame.schema.get(c, 'missing')} instead of {t}"
        for c, t in model.TABLES[table].items()
        if (c in frame.columns and frame.schema[c] != t) or (c not in frame.columns and c not in optional)
    ]
    if wrong:
        raise ValueError(f"reader frame {table!r} does not match clms_etl.model: {'; '.join(wrong)}")
    ids = frame["row_id"]
    if ids.null_count() or ids.n_unique() != ids.len():  # n_unique: no per-row mask to build
        raise ValueError(f"reader frame {table!r}: row_id must be unique and never null")
    return model.conform(table, frame)


# --- validation failures -> queries ----------------------------------------------------------

def _failures_to_queries(table: str, frame: pl.DataFrame, result: ReadResult,
                         names: dict[str, dict[str, str]], ruleset: Ruleset) -> pl.DataFrame:
    cases = failure_rows(ruleset.schemas[table], frame)
    if cases is None:
        return pl.DataFrame(schema=QUERY_SCHEMA)
    structural = cases.filter(pl.col("index").is_null())
    if not structural.is_empty():  # dtype or a check that crashed: not the centre's data
        raise ValueError(f"validation of {table!r} could not run: {structural.rows(named=True)}")
    rule_field = pl.col("check").str.split_exact("@", 1)
    failures = (
        cases.select(
            pl.col("index").cast(pl.UInt32),
            rule_field.struct.field("field_0").alias("_rule"),
            pl.when(pl.col("schema_context") == "Column").then(pl.col("column"))
            .otherwise(pl.when(rule_field.struct.field("field_1") != "").then(rule_field.struct.field("field_1")))
            .alias("_field"),
        )
        .unique(maintain_order=True)
        .join(frame.with_row_index("index"), on="index", how="left", maintain_order="left")
        .sort("index", maintain_order=True)
    )
    parts = []
    # One vectorised select per (rule, field): the Python loop runs over rules, not rows.
    for (rule, field), part in failures.group_by("_rule", "_field", maintain_order=True):
        column = contract.TABLES[table].column(field) if field else None
        label = column.label or field if column else None
        shown = _shown_field(names.get(table, {}).get(field), label) if field else pl.lit(None, dtype=pl.String)
        value = _text_expr(field, frame.schema) if field else pl.lit(None, dtype=pl.String)
        slots = {"label": pl.lit(label), "value": value}
        if column and column.allowed:
            slots["allowed"] = pl.lit(", ".join(str(v) for v in column.allowed))
        parts.append(_row_queries(
            part, result, table, rule, shown,
            pl.when(pl.col(field).is_not_null()).then(_with_unit(value, column)) if field else value, slots,
        ))
    return pl.concat(parts, how="vertical").cast(QUERY_SCHEMA)


def schema_failure_cases(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> pl.DataFrame | None:
    """pandera's failure cases of ``schema`` on ``frame`` (``SchemaErrors.failure_cases``), None if valid.

    pandera runs each check (and each column's dtype and null checks) as its own query, with a
    fixed cost of some 50 ms per table whatever its size, while a delivery usually passes. So the
    checks' own functions are first evaluated together, in one polars query; when none fails,
    pandera has nothing to report. When some do, pandera runs on the whole frame as before, but
    with only the checks that failed (and only the columns that carry them): the checks that
    passed and the dtypes already compared would add nothing to its report but their cost.
    Its failure cases are the result, numbered as the whole schema numbers its checks: pandera
    stays the engine that decides and reports, the shortcut only spares it what cannot fail.
    """
    verdicts = _check_verdicts(schema, frame)
    if verdicts is not None and all(verdicts.values()):
        return None
    failing = None if verdicts is None else [key for key, ok in verdicts.items() if not ok]
    try:
        (schema if failing is None else _failing_only(schema, failing)).validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return None
    return cases if failing is None else _numbered_as(schema, failing, cases)


FAILURE_ROWS = ("schema_context", "column", "check", "index")


def failure_rows(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> pl.DataFrame | None:
    """The ``schema_context``, ``column``, ``check`` and ``index`` columns of
    :func:`schema_failure_cases` (what the queries are built from), None if valid.

    When every failing check is one the shortcut runs as one select (the canonical checks), the
    failing rows are read from its own verdict, row by row, in pandera's order (the columns' checks
    in the schema's order, then the frame's, each check's rows in order): pandera would only
    evaluate the same expressions again and build its report (some 5 ms a table). Anything
    else — a check pandera runs its own way, one that does not answer row by row, a limit on its
    failure cases — goes through :func:`schema_failure_cases`."""
    rows: dict[CheckKey, tuple[pa.Check, pl.Expr, pl.Expr]] = {}
    verdicts = _check_verdicts(schema, frame, rows)
    if verdicts is not None and all(verdicts.values()):
        return None
    failing = [] if verdicts is None else [key for key, ok in verdicts.items() if not ok]
    # pandera reports the columns' checks first (schema order), then the frame's
    order = {name: n for n, name in enumerate(schema.columns)}
    failing.sort(key=lambda key: (key[0] is None, order.get(key[0], 0), key[1]))
    parts = None if verdicts is None else []  # (None: the shortcut cannot tell, pandera does)
    for key in failing:
        if key not in rows or rows[key][0].n_failure_cases is not None or frame.height < 2:
            parts = None
            break
        check, out, row_ok = rows[key]
        verdict = frame.lazy().select(out).select(row_ok).collect().to_series()
        if verdict.len() != frame.height:  # an aggregate, not a verdict per row: pandera reports it
            parts = None
            break
        name, _ = key
        parts.append(pl.DataFrame({
            "schema_context": "DataFrameSchema" if name is None else "Column",
            "column": schema.name if name is None else name,
            "check": check.error if check.error is not None else check.name if check.name is not None else str(check),
            "index": (~verdict).arg_true().cast(pl.Int32),
        }, schema={"schema_context": pl.String, "column": pl.String, "check": pl.String, "index": pl.Int32}))
    if parts is None:
        cases = schema_failure_cases(schema, frame)
        return None if cases is None else cases.select(FAILURE_ROWS)
    return pl.concat(parts, how="vertical")


def _passes(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> bool:
    """True when pandera is certain to accept ``frame``: every column present with its exact
    dtype, and every check's output true (or null, when the check ignores nulls) on every row,
    each check applied by pandera's own polars check backend. False means "ask pandera", never
    "invalid"."""
    verdicts = _check_verdicts(schema, frame)
    return verdicts is not None and all(verdicts.values())


# (column name, or None for a dataframe-level check; the check's position in its list)
CheckKey = tuple[str | None, int]


def _check_verdicts(schema: pa.DataFrameSchema, frame: pl.DataFrame,
                    rows: dict[CheckKey, tuple[pa.Check, pl.Expr, pl.Expr]] | None = None) -> dict[CheckKey, bool] | None:
    """Each check of ``schema`` -> whether it holds on every row of ``frame``, all evaluated in one
    polars query; None when the shortcut cannot tell (a column missing or of another dtype, a
    schema feature it does not mirror, a check that cannot run here): pandera is then asked.
    ``rows``, when given, receives each one-select check and its row-wise verdict expression."""
    if (schema.strict or schema.unique or schema.coerce or schema.ordered or schema.add_missing_columns
            or schema.drop_invalid_rows or schema.unique_column_names or schema.dtype is not None
            or schema.parsers):
        return None
    keyed = [("*", (None, i), check) for i, check in enumerate(schema.checks)]
    for name, column in schema.columns.items():
        if (column.regex or not column.required or not column.nullable or column.unique or column.coerce
                or column.default is not None or column.drop_invalid_rows or column.parsers
                or column.dtype is None or frame.schema.get(name) != column.dtype.type):
            return None
        keyed.extend((column.selector, (name, i), check) for i, check in enumerate(column.checks))
    lf = frame.lazy()
    schema.get_backend(frame)  # registers pandera's polars backends and built-in checks, as validate() does
    verdicts: dict[CheckKey, bool] = {}
    pending: dict[CheckKey, pl.LazyFrame] = {}
    selected: dict[CheckKey, tuple[pl.Expr, pl.Expr]] = {}  # checks that select one expression: one query
    try:
        for key, where, check in keyed:
            if check.groupby is not None:
                return None
            # As Check.__call__: a built-in check takes the function registered for polars.
            builtin = getattr(check._check_fn, "__name__", None)
            if builtin is not None and check.is_builtin_check(builtin):
                check._check_fn = check.get_builtin_check_fn(builtin)
            backend = check.get_backend(lf)(check)
            if not isinstance(backend, PolarsCheckBackend):  # another pandera backend: its own semantics
                return None
            if (out := _selected(backend, key)) is None:
                out = backend.apply(PolarsData(lf, key))
            if isinstance(out, bool):
                verdicts[where] = out
                continue
            name = CHECK_OUTPUT_KEY if isinstance(out, pl.LazyFrame) else f"selected_{len(selected)}"
            ok = pl.col(name)  # as PolarsCheckBackend.postprocess_lazyframe_output
            ok = ((ok | ok.is_null()) if check.ignore_na else ok.fill_null(False)).all()
            if isinstance(out, pl.Expr):
                selected[where] = (out.alias(name), ok.alias(name))
                if rows is not None:
                    row_ok = pl.col(name)
                    row_ok = (row_ok | row_ok.is_null()) if check.ignore_na else row_ok.fill_null(False)
                    rows[where] = (check, out.alias(name), row_ok)
            else:
                pending[where] = out.select(ok.alias(f"check_{len(pending)}"))
        # the selected checks in one query: each check's column once, then each column's verdict
        parts = [lf.select([e for e, _ in selected.values()]).select([ok for _, ok in selected.values()])] \
            if selected else []
        if parts or pending:
            verdicts.update(zip([*selected, *pending], pl.concat([*parts, *pending.values()], how="horizontal")
                                .collect().row(0)))
    except Exception:  # a check that cannot run here: pandera runs and reports it
        return None
    return {where: bool(verdicts[where]) for _, where, _ in keyed}


class _OneSelect:
    """Stands for the frame a check is given: a check that only selects one expression of it
    (``data.lazyframe.select(expr)``, as the canonical and pandera's built-in checks do) hands
    over that expression, and all such checks run in one ``select`` instead of a query each."""

    def select(self, *exprs, **named):
        if len(exprs) != 1 or named or not isinstance(exprs[0], pl.Expr):
            raise TypeError("not one expression")
        return exprs[0]


def _selected(backend: PolarsCheckBackend, key: str | None) -> pl.Expr | None:
    """The one expression ``backend``'s check selects, or None (then it runs as pandera runs it)."""
    if backend.check.element_wise:
        return None
    try:
        out = backend.check_fn(PolarsData(_OneSelect(), key))
    except Exception:  # it does more with the frame than one select
        return None
    return out if isinstance(out, pl.Expr) and not out.meta.has_multiple_outputs() else None  # (pandera folds those)


def _failing_only(schema: pa.DataFrameSchema, failing: list[CheckKey]) -> pa.DataFrameSchema:
    """``schema`` reduced to the ``failing`` checks and the columns that carry them (shallow
    copies: the checks themselves are the schema's own)."""
    columns: dict[str, pa.Column] = {}
    for name, i in failing:
        if name is not None:
            if name not in columns:
                columns[name] = copy.copy(schema.columns[name])
                columns[name].checks = []
            columns[name].checks.append(schema.columns[name].checks[i])
    reduced = copy.copy(schema)
    reduced.columns = {name: columns[name] for name in schema.columns if name in columns}  # schema order
    reduced.checks = [schema.checks[i] for name, i in failing if name is None]
    return reduced


def _numbered_as(schema: pa.DataFrameSchema, failing: list[CheckKey], cases: pl.DataFrame) -> pl.DataFrame:
    """``cases`` of the schema reduced to the ``failing`` checks (:func:`_failing_only`), each
    check numbered as in ``schema``: the j-th failing check of a list is the j-th kept there."""
    kept: dict[str | None, list[int]] = {}
    for name, i in failing:
        kept.setdefault(name, []).append(i)
    renumber = [("DataFrameSchema" if name is None else "Column", schema.name if name is None else name, j, i)
                for name, numbers in kept.items() for j, i in enumerate(numbers)]
    numbers = pl.DataFrame(renumber, schema={"schema_context": pl.String, "column": pl.String,
                                             "check_number": cases.schema["check_number"], "_number": pl.Int64},
                           orient="row")
    return (cases.join(numbers, on=["schema_context", "column", "check_number"], how="left", maintain_order="left",
                       nulls_equal=True)
            .with_columns(check_number=pl.coalesce("_number", "check_number").cast(cases.schema["check_number"]))
            .drop("_number"))


def _shown_field(source, label: str | None) -> pl.Expr:
    """The column name the centre knows: one name, or (wide formats writing each event kind
    in its own column) a mapping event kind -> column name; the canonical label otherwise."""
    if isinstance(source, dict):
        return pl.col("event_kind").replace_strict(source, default=label, return_dtype=pl.String)
    return pl.lit(source or label, dtype=pl.String)


def _with_unit(text: pl.Expr, column: contract.Column) -> pl.Expr:
    return text + pl.lit(f" {column.unit_label}") if column.unit_label else text


def _template_expr(template: str, slots: dict[str, pl.Expr], schema: pl.Schema) -> pl.Expr:
    """A ``str.format`` template as one expression: a slot is given, or a column shown as text."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(pl.lit(literal))
        if name:
            parts.append(slots[name] if name in slots else _text_expr(name, schema))
    return pl.concat_str(parts)


def _text_expr(column: str, schema: pl.Schema) -> pl.Expr:
    """A column the way a French data manager reads it: 3,0 / 12/03/2014 / 03/2014 / < 5 / oui."""
    col = pl.col(column)
    dtype = schema[column]
    if column in _VALUE_LABELS:
        text = col.replace_strict(_VALUE_LABELS[column], default=col, return_dtype=pl.String)
    elif dtype == pl.Boolean:
        text = pl.when(col).then(pl.lit("oui")).otherwise(pl.lit("non"))
    elif dtype == pl.Date:
        precision = pl.col(f"{column}_precision") if f"{column}_precision" in schema else pl.lit("day")
        text = (
            pl.when(precision == "year").then(col.dt.strftime("%Y"))
            .when(precision == "month").then(col.dt.strftime("%m/%Y"))
            .otherwise(col.dt.strftime("%d/%m/%Y"))
        )
    elif dtype.is_float():
        text = col.round(2).cast(pl.String).str.replace(".", ",", literal=True)
    elif column == "mitoses_per_10hpf":
        text = pl.when(pl.col("mitoses_is_upper_bound").fill_null(False)).then(pl.lit("< ")).otherwise(pl.lit("")) \
            + col.cast(pl.String)
    else:
        text = col.cast(pl.String)
    return pl.when(col.is_null()).then(pl.lit("non renseigné")).otherwise(text)


# --- accepted / quarantined --------------------------------------------------------------------

def _mark(frames: dict[str, pl.DataFrame], queries: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Each frame with ``quarantine_reasons`` (ERROR rule ids, sorted) and ``has_warning``."""
    # Vectorised: distinct (row, rule) pairs sorted by rule, then gathered per row (a group keeps
    # its rows' order), rather than a sort and a unique inside every one of thousands of groups.
    concerned = queries.lazy().filter(pl.col("row_id").is_not_null() & pl.col("table_name").is_not_null())
    errors = (
        concerned.filter(pl.col("severity") == ERROR)
        .select("table_name", "row_id", "rule")
        .unique()
        .sort("rule", nulls_last=False)
        .group_by("table_name", "row_id")
        .agg(pl.col("rule").alias("quarantine_reasons"))
    )
    warned = (
        concerned.filter(pl.col("severity") == WARNING)
        .select("table_name", "row_id")
        .unique()
        .with_columns(has_warning=pl.lit(True))
    )
    errors, warned = errors.collect(), warned.collect()
    out, lookups = {}, {}
    for table, frame in frames.items():
        mine_e = errors.filter(pl.col("table_name") == table).drop("table_name")
        mine_w = warned.filter(pl.col("table_name") == table).drop("table_name")
        if mine_e.is_empty() and mine_w.is_empty():  # nothing concerns this table's rows
            out[table] = frame.with_columns(quarantine_reasons=_EMPTY_REASONS, has_warning=pl.lit(False))
            continue
        # Joined on the row ids alone, then put beside the frame: no copy of its other columns.
        lookups[table] = (
            frame.lazy().select("row_id")
            .join(mine_e.lazy(), on="row_id", how="left", maintain_order="left")
            .join(mine_w.lazy(), on="row_id", how="left", maintain_order="left")
            .select(
                pl.col("quarantine_reasons").fill_null(_EMPTY_REASONS),
                pl.col("has_warning").fill_null(False),
            )
        )
    for table, extra in lookups.items():
        out[table] = frames[table].hstack(extra.collect().get_columns())
    return {table: out[table] for table in frames}


def _held_parents(parents: pl.DataFrame, key: str, *carried: str) -> tuple[pl.Series, pl.DataFrame]:
    """The ``key`` values with an accepted parent row, and one row per ``key`` with none (only
    quarantined rows): ``parent_reasons`` (their rule ids), ``parent_where`` (the first one's sheet
    or file and row) and the first value of each ``carried`` column."""
    parents = parents.filter(pl.col(key).is_not_null())
    bad = pl.col("quarantine_reasons").list.len() > 0
    kept = parents.filter(~bad)[key].implode()
    held = (
        parents.filter(bad & ~pl.col(key).is_in(kept))  # an accepted copy keeps the parent
        .group_by(key, maintain_order=True)
        .agg(
            pl.col("quarantine_reasons").list.explode(keep_nulls=False, empty_as_null=False).unique().sort()
            .str.join(", ").alias("parent_reasons"),
            pl.concat_str(
                pl.coalesce("source_sheet", "source_file"), pl.lit(", ligne "), pl.col("source_row").cast(pl.String)
            ).first().alias("parent_where"),
            *(pl.col(c).first() for c in carried),
        )
    )
    return kept, held


def _row_queries(frame: pl.DataFrame, result: ReadResult, table: str, rule: str,
                 field: pl.Expr, value: pl.Expr, slots: dict[str, pl.Expr] | None = None) -> pl.DataFrame:
    """One query per row of ``frame`` (rows of canonical ``table``) under ``rule``, at the row's own place."""
    return frame.select(
        pl.lit(result.centre).alias("centre"),
        pl.lit(result.delivery_date, dtype=pl.Date).alias("delivery_date"),
        pl.col("source_file").alias("file"),
        pl.col("source_sheet").alias("sheet"),
        pl.col("source_row").alias("row"),
        pl.lit(table).alias("table_name"),
        "row_id",
        "patient_id",
        field.alias("field"),
        value.alias("value"),
        pl.lit(rule).alias("rule"),
        pl.lit(rules.severity(rule)).alias("severity"),
        _template_expr(rules.rule(rule).message_fr, slots or {}, frame.schema).alias("message"),
    )


_PARENTS = ("patient", "molecular_sample")  # the tables whose quarantine cascades (_cascade, _cascade_samples)


def _cascade(marked: dict[str, pl.DataFrame], frames: dict[str, pl.DataFrame], result: ReadResult,
             ruleset: Ruleset) -> pl.DataFrame:
    """A query quarantining each row (of ``frames``) of a patient with no accepted patient row
    (of ``marked``)."""
    if "patient" not in marked:
        return pl.DataFrame(schema=QUERY_SCHEMA)
    _, held = _held_parents(marked["patient"], "patient_id")
    queries = []
    if held.is_empty():  # no patient held back: nothing cascades
        return pl.DataFrame(schema=QUERY_SCHEMA)
    for table in ruleset.children:
        if table not in frames:
            continue
        # the held patients' rows found by their id, and only those joined to their patient
        frame = frames[table]
        hit = frame["patient_id"].is_in(held.filter(pl.col("parent_where").is_not_null())["patient_id"].implode())
        none = pl.lit(None, dtype=pl.String)
        queries.append(_row_queries(frame.filter(hit.fill_null(False)).join(held, on="patient_id", how="left",
                                                                            maintain_order="left"),
                                    result, table, "parent_quarantined", none, none))
    return pl.concat([pl.DataFrame(schema=QUERY_SCHEMA), *queries], how="vertical").cast(QUERY_SCHEMA)


def _cascade_samples(marked: dict[str, pl.DataFrame], frames: dict[str, pl.DataFrame], result: ReadResult,
                     ruleset: Ruleset) -> pl.DataFrame:
    """A query quarantining each segment, variant and fusion (of ``frames``) of a sample with no
    accepted manifest row (of ``marked``), under the ruleset's ``sample_rules``, naming its own
    file and line and, for a quarantined case, the manifest line and its reasons."""
    if "molecular_sample" not in marked:
        return pl.DataFrame(schema=QUERY_SCHEMA)
    kept, held = _held_parents(marked["molecular_sample"], "sample_id", "patient_id")
    queries = []
    for table in ruleset.sample_children:
        if table not in frames or frames[table].is_empty():
            continue
        frame = frames[table].join(held, on="sample_id", how="left", maintain_order="left").with_columns(
            pl.when(pl.col("parent_where").is_not_null()).then(pl.lit("sample_quarantined"))
            .when(~pl.col("sample_id").is_in(kept)).then(pl.lit("sample_not_in_manifest"))
            .alias("_cascade")
        )
        for rule in ruleset.sample_rules:
            part = frame.filter(pl.col("_cascade") == rule)
            if not part.is_empty():
                queries.append(_row_queries(part, result, table, rule, pl.lit("sample_id"),
                                                pl.col("sample_id")))
    return pl.concat([pl.DataFrame(schema=QUERY_SCHEMA), *queries], how="vertical").cast(QUERY_SCHEMA)
