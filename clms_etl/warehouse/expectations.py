"""Great Expectations on the warehouse: one suite per table, run after each load, Data Docs written.

The suites are data: ``validations/expectations/<table>.json``, each a list of GE expectation
configurations (``type``, ``kwargs``, optional ``severity`` and ``notes``). Placeholders keep
them in step with the code: ``{"$columns": "<table>"}`` is the table's declared column list,
``{"$vocabulary": "<NAME>"}`` a code list (:data:`VOCABULARIES`; ``CENTRES`` and ``SOURCES`` come
from the centre registry, a drop folder's ``centres.toml`` included, never from a list written
here: :func:`registry_vocabularies`), ``{"$min": "<table>.<column>"}`` / ``{"$max": ...}`` a bound
of the column's range in the contract (:mod:`clms_etl.contract`). Checks spanning tables —
referential integrity, counts agreeing with ``delivery_count``, one current delivery per source —
are ``unexpected_rows_expectation`` queries written in SQL both backends read alike. Severity
``critical`` (the default) fails the run; ``warning`` flags a plausibility problem (e.g. the
share of men of a centre) without failing it.

**Backends.** Validation runs in SQL, in the warehouse, through GE's SQL datasource:

* PostgreSQL: GE 1.24's SQL datasource works as is (``postgresql+psycopg://``).
* DuckDB: through duckdb-engine 0.17 every expectation errors in GE 1.24 (``IndexError`` in
  ``resolve_metric_bundle``): GE reads a result after returning its connection to the pool, and
  duckdb-engine's cursor *is* the connection, so the rows are gone (``[]``). The fix is at the
  driver level, not in GE: :mod:`clms_etl.warehouse.duckdb_buffered` registers the SQLAlchemy
  dialect ``duckdb+clms_buffered``, a duckdb-engine subclass whose execution context fetches
  every row-returning result into memory before the connection is released (SQLAlchemy's own
  ``FullyBufferedCursorFetchStrategy``, what ``Result.freeze()`` does). GE is pointed at
  ``duckdb+clms_buffered:///<file>``; results are identical to PostgreSQL's (the tests run the
  same suites on both). Expectations whose SQL GE only knows for named dialects (regex, LIKE)
  are not used: pseudonym shapes are checked with portable SQL instead.

**Views read once.** A query of the result tables' suites that reads an ``analytics`` view
(``analytics.survival``, ``analytics.patient_summary``: the survival population, the patients) made
the database compute the view again, twice per expectation (GE ran ``unexpected_rows_query`` once for
its rows and once for their count; now once, :mod:`~clms_etl.warehouse.counted_query`): 26 evaluations
of the same views, three quarters of the check's CPU at 300,000 patients on DuckDB, 125 of the check's
134 s at 1,000,000 on PostgreSQL. The views the chosen suites read are copied once, before the
checkpoint (``CREATE TABLE AS SELECT *``: the view's rows and column types), from the warehouse the
validation reads (on DuckDB nobody writes meanwhile: the check holds the file's read lock,
:mod:`~clms_etl.warehouse.file_lock`; on PostgreSQL, what is committed when the run starts), so every
query returns what it returned on the view: same expectations, verdicts and observed values.

* DuckDB: into an in-memory catalog attached to the warehouse (:data:`VIEWS_SNAPSHOT`) that GE's
  connections search first for schema ``analytics`` (``search_path``); every other name resolves as
  before and the queries' text is unchanged. Detached when the run ends.
* PostgreSQL: into temporary tables of one of the warehouse's connections, which GE's engines then
  share (a ``StaticPool`` over it: no other session sees a temporary table). A schema-qualified name
  cannot resolve to a temporary table, so the queries the suites run read ``pg_temp.<view>``, and the
  Data Docs show that text (the descriptions keep the view's name). A view built on one copied before
  it is computed from that copy (:func:`~clms_etl.warehouse.analytics.view_select`); one whose rows each
  come from a row of that copy (``survival`` on ``patient_summary``, ``View.rows_from``) is a temporary
  view over it, not a copy: the suites count one endpoint of it.
  Dropped with the connection when the run ends. Without the TEMPORARY right (the analyst role) GE
  reads the views.

**Unexpected values fetched where there are some.** Under the checkpoint's ``SUMMARY`` result format GE
fetches the first values that broke each column expectation (``partial_unexpected_list``) in a query of
its own, whether the expectation found any or not, and a database cannot stop such a query early when
no row matches: 43 scans of whole tables, 4.4 s of the server in the 1,000,000-patient PostgreSQL night,
for expectations that passed. The checkpoint counts only (:data:`COUNTED_ONLY`); the expectations whose
count is above 0 are validated again with :data:`SUMMARY`, and their results replace the first ones
before the results are stored again and the Data Docs built: the stored results and pages are those of
one ``SUMMARY`` run (the tests compare them).

**Data Docs** (HTML): one site, ``<warehouse dir>/data_docs/`` (DuckDB: next to the ``.duckdb``
file; PostgreSQL: ``$CLMS_OUTPUTS/data_docs``), for the base tables and every analysis' result
tables alike. Its index lists every validation kept: GE's expectation suites and validation
results are stored as JSON in the site's ``.store/`` (a filesystem store, not GE's in-memory one,
so each run adds to what the others wrote), the last :data:`KEPT_RUNS` runs of each suite (older
results and their pages are removed before a run). Each run has a name saying what ran it
(``run_name``: the Dagster run, the delivery loaded), never GE's ``__none__``. The pages load their
CSS and JavaScript from the site itself (:mod:`clms_etl.warehouse.data_docs`): they work with no
network.

**Result tables** (``scope="results"``). The analyses' result tables of schema ``analytics``
(:data:`clms_etl.warehouse.schema.RESULT_TABLES`) have their suites in
``validations/expectations/analytics/<table>.json`` (``"schema": "analytics"`` in the document;
``{"$columns": "analytics.<table>"}`` is the result table's column list, ``run_id`` included).
Their code lists (endpoints, CI transforms, profile classes, ...) are declared with the tables
(:func:`clms_etl.warehouse.schema.declare_results`, by :mod:`clms_etl.analyses`) and computed only
when these suites are loaded, so that the load of a delivery never imports the analyses. Each analysis gates its own tables (its asset's check); their
validations go to the same Data Docs site as the base tables'.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from clms_etl import contract, model
from clms_etl.files import make_private, private_dir
from clms_etl.warehouse import schema

CHROMOSOMES = tuple(str(i) for i in range(1, 23)) + ("X", "Y")
VOCABULARIES: dict[str, tuple] = {
    **contract.VOCABULARIES,
    **{name: getattr(schema, name) for name in ("QUERY_SEVERITIES", "CN_EVENTS", "CN_COVERAGES")},
    "CHROMOSOMES": CHROMOSOMES,
    "CANONICAL_TABLE_NAMES": tuple(model.TABLES),
    "DATA_TABLE_NAMES": (*model.TABLES, "gene_status"),
}
CRITICAL, WARNING = "critical", "warning"
BASE, RESULTS = "base", "results"  # the scopes of the suites: base tables, analyses' result tables
RESULTS_SUBDIR = "analytics"  # validations/expectations/analytics/: the result tables' suites
KEPT_RUNS = 14  # runs of each suite the Data Docs keep: two weeks of nights
SUMMARY = {"result_format": "SUMMARY", "partial_unexpected_count": 5}  # verdicts, counts and the first values
COUNTED_ONLY = {**SUMMARY, "partial_unexpected_count": 0}  # the checkpoint's: no value fetched (module docstring)
STORE_SUBDIR = ".store"  # in the Data Docs site: GE's expectation suites and validation results, as JSON
QUERY = "unexpected_rows_query"  # the SQL of an unexpected_rows_expectation
VIEWS_SNAPSHOT = "clms_gx_views"  # DuckDB: the in-memory catalog holding the views the suites read (docstring)


def registry_vocabularies(drop_folder: Path | None = None) -> dict[str, tuple]:
    """The centres (``CENTRES``) and every source (``SOURCES``: the centres and the laboratory) of
    the registry: ``clms_etl/data/centres.toml``, then ``<drop_folder>/centres.toml`` on top
    (default: the configured drop folder, as the Dagster partitions read it)."""
    from clms_etl.centres import load_registry
    from clms_etl.config import Settings

    registry = load_registry(Settings.from_env().incoming if drop_folder is None else Path(drop_folder))
    return {"CENTRES": tuple(n for n, c in registry.items() if not c.laboratory), "SOURCES": tuple(registry)}


@dataclass
class ExpectationOutcome:
    table: str
    expectation: str  # GE expectation type
    column: str | None
    description: str | None
    severity: str
    success: bool
    observed: Any = None
    error: str | None = None  # GE raised while evaluating (counts as a failure)

    def __str__(self) -> str:
        what = self.description or f"{self.expectation}({self.column or ''})"
        detail = f"error: {self.error}" if self.error else f"observed: {self.observed}"
        return f"[{self.severity}] {self.table}: {what} — {detail}"


@dataclass
class ExpectationsReport:
    backend: str
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    data_docs_index: Path | None = None
    run_name: str | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.failures if o.severity == CRITICAL]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.failures if o.severity != CRITICAL]

    @property
    def errors(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.error]

    @property
    def success(self) -> bool:
        """No critical expectation failed or errored (warnings do not fail the run)."""
        return not self.critical_failures

    def summary(self) -> str:
        lines = [f"{len(self.outcomes)} expectations on {self.backend}: "
                 f"{len(self.critical_failures)} critical failure(s), {len(self.warnings)} warning(s)"]
        lines += [f"  {o}" for o in self.failures]
        return "\n".join(lines)


def suites_dir() -> Path:
    try:
        path = Path(str(resources.files("validations") / "expectations"))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "validations" / "expectations"


def load_suites(directory: Path | None = None, *, scope: str = BASE, drop_folder: Path | None = None) -> dict[str, dict]:
    """table -> suite document, placeholders resolved.

    ``scope``: ``"base"`` (default) the base tables' suites, ``"results"`` the result tables'
    (``<suites dir>/analytics/``); ``directory`` overrides where they are read from;
    ``drop_folder``: whose ``centres.toml`` extends the registry (default: the configured one).
    """
    if scope not in (BASE, RESULTS):
        raise ValueError(f"unknown scope {scope!r}: {BASE!r} or {RESULTS!r}")
    directory = directory or (suites_dir() / RESULTS_SUBDIR if scope == RESULTS else suites_dir())
    vocabularies = {**VOCABULARIES, **registry_vocabularies(drop_folder)}
    if scope == RESULTS:
        vocabularies.update(schema.result_vocabularies())
    suites = {}
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["expectations"] = [_resolve(e, vocabularies) for e in doc["expectations"]]
        suites[doc["table"]] = doc
    return suites


def _columns(name: str) -> list[str]:
    if "." in name:  # a result table, schema-qualified: analytics.<table>
        return [c.name for c in schema.results_metadata.tables[name].columns]
    return schema.column_names(name)


def _resolve(value, vocabularies: dict[str, tuple] = VOCABULARIES):
    if isinstance(value, dict):
        if set(value) == {"$columns"}:
            return _columns(value["$columns"])
        if set(value) == {"$vocabulary"}:
            return list(vocabularies[value["$vocabulary"]])
        if set(value) in ({"$min"}, {"$max"}):  # a bound of the contract's range: "<table>.<column>"
            (bound, where), = value.items()
            table, column = where.split(".")
            return getattr(contract.TABLES[table].column(column), bound[1:])
        return {k: _resolve(v, vocabularies) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, vocabularies) for v in value]
    return value


def run_name_of(*parts: object) -> str:
    """A Data Docs run name from what ran the validation (job and run id, centre and delivery date):
    the parts joined by ``-``, reduced to what a folder name and a link keep as they are."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(str(p) for p in parts if p not in (None, "")))


def ge_connection_string(url: str, search_path: str | None = None, read_only: bool = False) -> str:
    """The URL GE's SQL datasource gets: DuckDB through the buffered dialect (module docstring);
    ``search_path`` (DuckDB): set on each of GE's connections (:mod:`~clms_etl.warehouse.duckdb_buffered`);
    ``read_only`` (DuckDB): its connections open the file as the read-only warehouse that runs it does
    (one process opens a DuckDB file in one mode)."""
    sa_url = sa.engine.make_url(url)
    if sa_url.get_backend_name() == "duckdb":
        from clms_etl.warehouse import duckdb_buffered

        duckdb_buffered.register()
        sa_url = sa_url.set(drivername=duckdb_buffered.DRIVERNAME)
        if search_path:
            sa_url = sa_url.update_query_dict({duckdb_buffered.SEARCH_PATH: search_path})
        if read_only:
            sa_url = sa_url.update_query_dict({duckdb_buffered.READ_ONLY: "true"})
    return sa_url.render_as_string(hide_password=False)


def views_read(suites: dict[str, dict], tables: list[str]) -> list[str]:
    """The ``analytics`` views the suites of ``tables`` read, in their declaration order (a view
    before the views built on it)."""
    from clms_etl.warehouse.analytics import VIEWS

    text = json.dumps([suites[t]["expectations"] for t in tables])
    return [v.name for v in VIEWS if re.search(rf"\b{schema.ANALYTICS_SCHEMA}\.{v.name}\b", text)]


@dataclass
class _ViewsCopy:
    """Where GE reads the ``analytics`` views the suites name during one run (module docstring)."""

    search_path: str | None = None  # DuckDB: set on GE's connections, the copies' catalog searched first
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # PostgreSQL: GE's engines on the copies' connection
    copies: dict[str, str] = field(default_factory=dict)  # PostgreSQL: {view: its copy, pg_temp.<view>}

    def queries(self, expectations: list[dict]) -> list[dict]:
        """``expectations`` whose ``unexpected_rows_query`` reads each copied view's copy (PostgreSQL: a
        temporary table cannot stand in for a schema-qualified name; descriptions keep the view's name);
        unchanged elsewhere."""
        from clms_etl.warehouse.analytics import reading_copies

        if not self.copies:
            return expectations
        return [{**e, "kwargs": {**e["kwargs"], QUERY: reading_copies(e["kwargs"][QUERY], self.copies)}}
                if QUERY in e["kwargs"] else e for e in expectations]


@contextmanager
def _views_snapshot(warehouse, views: list[str]) -> Iterator[_ViewsCopy]:
    """``views`` copied once for GE's run (module docstring), dropped on exit; a :class:`_ViewsCopy` that
    says where GE's connections read them: a DuckDB in-memory catalog (:data:`VIEWS_SNAPSHOT`), or
    PostgreSQL temporary tables on one connection that GE's engines then use. Without copies (none to
    make, another backend, no TEMPORARY right on PostgreSQL) GE reads the views.

    On DuckDB the warehouse's own connection stays open meanwhile, copies or not: GE's connections,
    opened by GE's engine, do not take the warehouse's file lock (:mod:`~clms_etl.warehouse.file_lock`);
    this one holds it for them."""
    dialect = warehouse.engine.dialect.name
    if dialect == "postgresql" and views:
        with _postgres_views_copy(warehouse, views) as copy:
            yield copy
        return
    if dialect != "duckdb":
        yield _ViewsCopy()
        return
    analytics = schema.ANALYTICS_SCHEMA
    with warehouse.engine.connect() as conn:
        if not views:
            yield _ViewsCopy()
            return
        # the warehouse's catalog is named after its file: quoted, whatever the name
        database = '"' + conn.exec_driver_sql("SELECT current_database()").scalar().replace('"', '""') + '"'
        # READ_WRITE: a read-only warehouse would make its attachments read-only too
        conn.exec_driver_sql(f"ATTACH ':memory:' AS {VIEWS_SNAPSHOT} (READ_WRITE)")
        try:
            conn.exec_driver_sql(f"CREATE SCHEMA {VIEWS_SNAPSHOT}.{analytics}")
            for view in views:
                conn.exec_driver_sql(f"CREATE TABLE {VIEWS_SNAPSHOT}.{analytics}.{view} AS "
                                     f"SELECT * FROM {database}.{analytics}.{view}")
            conn.commit()
            # unqualified names: the warehouse's main schema first, as before
            yield _ViewsCopy(search_path=f"{database}.main,{VIEWS_SNAPSHOT}.{analytics},{database}.{analytics}")
        finally:
            conn.rollback()
            conn.exec_driver_sql(f"DETACH {VIEWS_SNAPSHOT}")
            conn.commit()


@contextmanager
def _postgres_views_copy(warehouse, views: list[str]) -> Iterator[_ViewsCopy]:
    """PostgreSQL: ``views`` copied into temporary tables of one of the warehouse's connections, which
    GE's engines then share (``StaticPool``: GE's own sessions would not see the copies). The connection
    is discarded on exit (invalidated: GE's engines have closed it), the copies with it."""
    from clms_etl.warehouse.analytics import VIEWS_BY_NAME, view_select
    from clms_etl.warehouse.load import TEMPORARY_RIGHT
    from clms_etl.warehouse.shared_copy import shared_copies

    fairy = warehouse.engine.raw_connection()
    connection = fairy.driver_connection
    try:
        with connection.cursor() as cursor:
            cursor.execute(TEMPORARY_RIGHT)
            allowed = cursor.fetchone()[0]
            copies: dict[str, str] = {}
            if allowed:
                shared = shared_copies(warehouse.engine, views)  # what another step computed already
                for view in views:
                    # a view built on one copied already is computed from that copy (survival: 9.7 -> 2.7 s at 1M);
                    # one whose rows each come from a row of this run's copy stays a view over it (View.rows_from):
                    # the suites count a part of it (PostgreSQL reads one branch of survival's UNION ALL), where a
                    # copy of survival computed and wrote five rows a patient (2.7 s at 1,000,000 patients). Not
                    # over a shared copy: another step may replace that one between two of GE's queries.
                    kind = "VIEW" if VIEWS_BY_NAME[view].rows_from in copies else "TABLE"
                    cursor.execute(f"CREATE TEMPORARY {kind} {view} AS {view_select(view, {**shared, **copies})}")
                    copies[view] = f"pg_temp.{view}"
        connection.commit()  # not left idle in a transaction while GE runs
        if not allowed:  # the analyst role: GE reads the views
            yield _ViewsCopy()
            return
        yield _ViewsCopy(engine_kwargs={"poolclass": sa.pool.StaticPool, "creator": lambda: connection},
                         copies=copies)
    finally:
        fairy.invalidate()


def run_expectations(warehouse, *, tables: list[str] | None = None, data_docs_dir: Path | str | None | bool = None,
                     suites: dict[str, dict] | None = None, scope: str = BASE,
                     drop_folder: Path | None = None, run_name: str | None = None,
                     read_views_once: bool = True) -> ExpectationsReport:
    """Run the suites of ``tables`` (default: all of the scope) against ``warehouse`` (a :class:`Warehouse`).

    ``scope``: ``"base"`` (default) the base tables, ``"results"`` the analyses' result tables of
    schema ``analytics`` (see :func:`load_suites`). ``data_docs_dir``: the Data Docs site (default:
    the warehouse's ``data_docs_dir``; ``False``: none). ``drop_folder``: whose ``centres.toml``
    extends the registry (see :func:`load_suites`). ``run_name``: what ran it (:func:`run_name_of`;
    default: the scope and the time, UTC). ``read_views_once``: on DuckDB, the ``analytics`` views the
    suites read are copied once for the run (module docstring; ``False``: GE reads the views).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    from clms_etl.warehouse.counted_query import COUNTED_TYPE, DECLARED_TYPE

    from clms_etl.warehouse.data_docs import make_offline

    suites = suites or load_suites(scope=scope, drop_folder=drop_folder)
    chosen = [t for t in (tables or list(suites)) if t in suites]
    # GE's site store wants an absolute path (the default warehouse URL is relative).
    docs_dir = None if data_docs_dir is False else Path(data_docs_dir or warehouse.data_docs_dir or "data_docs").resolve()
    now = dt.datetime.now(dt.UTC)
    run_name = run_name or run_name_of(scope, f"{now:%Y-%m-%dT%H%MZ}")

    context = _context(docs_dir)
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    site = "warehouse"
    if docs_dir is not None:
        private_dir(docs_dir)
        _forget_old_runs(context, docs_dir)
        context.add_data_docs_site(site_name=site, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    # the views the suites read, copied once for the run (module docstring)
    with _views_snapshot(warehouse, views_read(suites, chosen) if read_views_once else []) as copies:
        # GE's connections open the file as the warehouse's did (one process, one mode per DuckDB file)
        connection_string = ge_connection_string(warehouse.url, copies.search_path, warehouse.opened_read_only)
        if connection_string.startswith("postgresql"):
            source = context.data_sources.add_postgres("warehouse", connection_string=connection_string,
                                                       kwargs=copies.engine_kwargs)
        else:
            source = context.data_sources.add_sql("warehouse", connection_string=connection_string)
        definitions = []
        stored_suites = {suite.name for suite in context.suites.all()}
        for table in chosen:
            doc = suites[table]
            asset = source.add_table_asset(table, table_name=table, schema_name=doc.get("schema"))
            batch = asset.add_batch_definition_whole_table(f"{table} (whole table)")
            expectations = []
            for conf in copies.queries(doc["expectations"]):
                kwargs = dict(conf["kwargs"])
                expectations.append(ExpectationConfiguration(
                    # a SQL check runs its query once, for the count (clms_etl.warehouse.counted_query)
                    type=COUNTED_TYPE if conf["type"] == DECLARED_TYPE else conf["type"],
                    kwargs=kwargs, description=kwargs.pop("description", None),
                    notes=conf.get("notes"), severity=conf.get("severity", CRITICAL),
                ).to_domain_obj())
            if docs_dir is not None and doc["name"] in stored_suites:
                context.suites.delete(doc["name"])  # stored by an earlier run: this run's version replaces it
            suite = context.suites.add(gx.ExpectationSuite(name=doc["name"], expectations=expectations,
                                                           meta={"description": doc.get("description", "")}))
            definitions.append(context.validation_definitions.add(
                gx.ValidationDefinition(name=f"validate {table}", data=batch, suite=suite)))
        # no UpdateDataDocsAction: it rebuilds the site's index once per suite (17 times a night);
        # the results are stored by the run itself and the site is built once below
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name="warehouse", validation_definitions=definitions, actions=[], result_format=COUNTED_ONLY))
        try:
            result = checkpoint.run(run_id=RunIdentifier(run_name=run_name, run_time=now))
            _fetch_unexpected_values(context, definitions, result)
            if docs_dir is not None:
                context.build_data_docs(site_names=[site], resource_identifiers=[
                    *result.run_results, *(ExpectationSuiteIdentifier(name=r.suite_name) for r in result.run_results.values())])
        finally:
            # release GE's own connections (for DuckDB, its handle on the warehouse file): the
            # datasource's engine and the one its execution engine built, which the checkpoint used
            # and which otherwise keeps a pooled connection — the file stays locked (other processes)
            # or bound to GE's configuration (this process) until the interpreter exits
            source.get_engine().dispose()
            for datasource in {id(s): s for s in (source, context.data_sources.get("warehouse"))}.values():
                execution_engine = datasource.execution_engine
                if execution_engine is not None and execution_engine.engine is not None:
                    execution_engine.engine.dispose()

    report = ExpectationsReport(backend=sa.engine.make_url(warehouse.url).get_backend_name(), run_name=run_name)
    for run in result.run_results.values():
        table = run.suite_name.split(".", 1)[-1]
        for r in run.results:
            config = r.expectation_config
            info = _exception_info(r.exception_info)
            raised = info.get("raised_exception")
            report.outcomes.append(ExpectationOutcome(
                table=table, expectation=config.type, column=config.kwargs.get("column"),
                description=config.description,
                severity=str(getattr(config, "severity", None) or CRITICAL).split(".")[-1].lower(),
                success=bool(r.success) and not raised,
                observed=_observed(r.result),
                error=info.get("exception_message") if raised else None,
            ))
    if docs_dir is not None and (docs_dir / "index.html").exists():
        make_offline(docs_dir)
        make_private(docs_dir)  # GE writes with the process umask
        report.data_docs_index = docs_dir / "index.html"
    return report


def _fetch_unexpected_values(context, definitions: list, result) -> None:
    """The checkpoint's ``result`` (run with :data:`COUNTED_ONLY`) made what one :data:`SUMMARY` run gives,
    and stored again: each expectation that counted unexpected values (failed, or passed under ``mostly``)
    validated again with ``SUMMARY`` on the same batch, its result replacing the first; the others given
    the empty ``partial_unexpected_counts`` GE writes when there is nothing to count (module docstring)."""
    from great_expectations.validator.v1_validator import Validator

    by_suite = {definition.suite.name: definition for definition in definitions}
    for key, run in result.run_results.items():
        validator = None
        for i, expectation_result in enumerate(run.results):
            found = expectation_result.result or {}
            if found.get("unexpected_count"):
                if validator is None:
                    validator = Validator(batch_definition=by_suite[run.suite_name].batch_definition,
                                          result_format=SUMMARY)
                run.results[i] = validator.validate_expectation(expectation_result.expectation_config.to_domain_obj())
            elif "partial_unexpected_list" in found:
                found.setdefault("partial_unexpected_counts", [])
        context.validation_results_store.set(key, run)


def _context(docs_dir: Path | None):
    """GE's ephemeral context; with a Data Docs site, its expectation suites and validation results
    stored as files in the site's ``.store/`` so that the index lists every run kept, whichever
    process ran it."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    if docs_dir is None:
        return gx.get_context(mode="ephemeral")
    if any(docs_dir.iterdir()) if docs_dir.is_dir() else docs_dir.exists():
        if not (docs_dir / "index.html").exists() and not (docs_dir / STORE_SUBDIR).exists():
            raise ValueError(f"{docs_dir} is not empty and holds no Data Docs: refusing to write into it")
    defaults = InMemoryStoreBackendDefaults()
    config = DataContextConfig(store_backend_defaults=defaults)
    for name, store, folder in ((defaults.expectations_store_name, "ExpectationsStore", "expectations"),
                                (defaults.validation_results_store_name, "ValidationResultsStore", "validations")):
        config.stores[name] = {"class_name": store, "store_backend": {
            "class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir / STORE_SUBDIR / folder)}}
    return gx.get_context(mode="ephemeral", project_config=config)


def _forget_old_runs(context, docs_dir: Path) -> None:
    """Keep the newest ``KEPT_RUNS - 1`` results of each suite (this run adds one): older ones leave
    the store, and their pages the site."""
    store = context.validation_results_store
    by_suite: dict[str, list] = {}
    for key in store.list_keys():
        by_suite.setdefault(key.expectation_suite_identifier.name, []).append(key)
    for keys in by_suite.values():
        keys.sort(key=lambda k: k.run_id.run_time, reverse=True)
        for key in keys[KEPT_RUNS - 1:]:
            store.remove_key(key)
            for tree, suffix in ((docs_dir, ".html"), (docs_dir / STORE_SUBDIR, ".json")):  # page, result
                file = tree / "validations" / Path(*key.to_tuple()).with_suffix(suffix)
                file.unlink(missing_ok=True)
                for folder in (file.parent, file.parent.parent):  # the run time's, then the run name's
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()


def _exception_info(info: dict | None) -> dict:
    """GE's exception info: flat, or (a metric failed to resolve) one entry per metric configuration."""
    if not info or "raised_exception" in info:
        return info or {}
    return next((v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")), {})


def _observed(result: dict | None):
    if not result:
        return None
    for key in ("observed_value", "unexpected_count"):
        if result.get(key) is not None:
            value = result[key]
            return value if not isinstance(value, list) or len(value) <= 10 else f"{value[:10]}…"
    return None
