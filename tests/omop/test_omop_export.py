"""The registry as OMOP CDM v5.4: on the twin, counted independently from the warehouse's tables,
loaded into schemas created from OHDSI's official DDL on DuckDB and PostgreSQL, with the Data
Quality Dashboard's checks passing (and each one failing on a planted defect)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import sqlalchemy as sa

from clms_etl.omop import build as omop_build
from clms_etl.omop import cdm, mapping, quality
from clms_etl.omop.export import (DEFAULT_SCHEMA, DUCKDB_FILE, TargetRefused, build_tables, export_omop, read_sources,
                                  sources_folder, write_database)
from clms_etl.warehouse import Warehouse
from tests.report.conftest import load_imports, report_imports, report_warehouse  # noqa: F401  (deliveries with defects)
from tests.warehouse.conftest import pg_admin_url, pg_databases, pg_url  # noqa: F401  (PostgreSQL fixtures)
from tests.warehouse.helpers import TEST_KEY, load_twin


@pytest.fixture(scope="module")
def twin_warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("omop_wh")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLMS_PSEUDONYM_KEY", TEST_KEY.decode())
        with Warehouse(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
            wh.create()
            load_twin(wh, root)
            yield wh


@pytest.fixture(scope="module")
def exported(twin_warehouse, tmp_path_factory):
    folder = tmp_path_factory.mktemp("omop_out") / "omop"
    return export_omop(twin_warehouse, folder, dates="shifted", key=TEST_KEY)


def _omop(result, sql: str) -> pl.DataFrame:
    engine = sa.create_engine(f"duckdb:///{result.files['duckdb']}", connect_args={"read_only": True})
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(sql.format(s=DEFAULT_SCHEMA)))
            return pl.DataFrame([tuple(r) for r in rows], schema=list(rows.keys()), orient="row")
    finally:
        engine.dispose()


def test_one_person_per_patient_with_the_pseudonym_as_source_value(twin_warehouse, exported):
    patients = twin_warehouse.table("patient")
    persons = _omop(exported, "SELECT person_id, person_source_value, year_of_birth FROM {s}.person")
    assert persons.height == patients.height == 79
    assert set(persons["person_source_value"]) == set(patients["patient_id"])
    assert persons["person_id"].n_unique() == persons.height


@pytest.mark.parametrize("block_patients", [1, 7])
def test_an_export_built_in_blocks_of_patients_is_the_export_built_at_once(twin_warehouse, exported, tmp_path,
                                                                           block_patients):
    # a registry is built and written a block of patients at a time, so that memory follows the block
    # (bench/README.md): the ids, the rows, the files and what is reported must not change
    blocked = export_omop(twin_warehouse, tmp_path / "omop", dates="shifted", key=TEST_KEY,
                          block_patients=block_patients)
    csv = {name: path for name, path in exported.files.items() if path.parent.name == "csv"}
    assert len(csv) >= 10
    for name, path in csv.items():
        assert blocked.files[name].read_bytes() == path.read_bytes(), name
    assert blocked.rows == exported.rows and blocked.passed
    assert blocked.unmapped.equals(exported.unmapped)
    assert blocked.excluded.sort(pl.all()).equals(exported.excluded.sort(pl.all()))
    assert _omop(blocked, "SELECT * FROM {s}.measurement ORDER BY measurement_id").equals(
        _omop(exported, "SELECT * FROM {s}.measurement ORDER BY measurement_id"))


@pytest.mark.postgres
def test_a_postgresql_warehouse_exported_in_blocks_gives_the_files_of_one_block(pg_url, report_imports, tmp_path,
                                                                                 monkeypatch):  # noqa: F811
    # PostgreSQL compares the pseudonyms of a block's bounds in its own collation unless told "C"
    monkeypatch.setenv("CLMS_PSEUDONYM_KEY", TEST_KEY.decode())
    with Warehouse(pg_url) as wh:
        load_imports(wh, report_imports)
        whole = export_omop(wh, tmp_path / "whole", dates="shifted", key=TEST_KEY)
        blocked = export_omop(wh, tmp_path / "blocked", dates="shifted", key=TEST_KEY, block_patients=6)
    assert whole.rows["person"] > 6 and blocked.rows == whole.rows
    for name, path in whole.files.items():
        if path.parent.name == "csv":
            assert blocked.files[name].read_bytes() == path.read_bytes(), name


@pytest.mark.parametrize("block_patients", [7, 50_000])
def test_an_export_of_the_rows_read_first_is_the_same_export_without_the_warehouse(exported, tmp_path, monkeypatch,
                                                                                    block_patients):
    # The asset reads its rows, lets the warehouse go, then builds: a DuckDB file's reader keeps its writers
    # (the survival analysis) out. Built with the warehouse file gone, the export must not change a byte.
    monkeypatch.setenv("CLMS_PSEUDONYM_KEY", TEST_KEY.decode())
    database = tmp_path / "warehouse.duckdb"
    with Warehouse(f"duckdb:///{database}") as wh:
        wh.create()
        load_twin(wh, tmp_path)
    with Warehouse(f"duckdb:///{database}", read_only=True) as wh:
        sources = read_sources(wh, tmp_path / "sources", block_patients)
    database.unlink()
    assert len(sources.blocks) == -(-79 // block_patients)
    assert oct((tmp_path / "sources").stat().st_mode & 0o777) == oct(0o700)  # pseudonymised rows: owner only
    built = export_omop(sources, tmp_path / "omop", dates="shifted", key=TEST_KEY, block_patients=block_patients)
    csv = {name: path for name, path in exported.files.items() if path.parent.name in ("csv", "omop")
           and name not in ("duckdb", "quality")}
    assert {"person", "unmapped", "excluded", "cdm_source"} <= set(csv)
    for name, path in csv.items():
        assert built.files[name].read_bytes() == path.read_bytes(), name
    assert built.rows == exported.rows and built.passed


@pytest.mark.parametrize("block_patients", [1, 7, 1000])
def test_the_rows_read_first_are_each_block_s_rows_as_the_block_query_reads_them(tmp_path, monkeypatch,
                                                                                  block_patients):
    # read_sources reads each table once and cuts it into the blocks; each block must hold the rows, in
    # the order, that the block's own query reads -- a sample no patient was linked to included (first block)
    from clms_etl.omop.export import _block_source

    monkeypatch.setenv("CLMS_PSEUDONYM_KEY", TEST_KEY.decode())
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        load_twin(wh, tmp_path)
        samples = wh.table("molecular_sample")
        if samples.height:
            with wh.engine.begin() as conn:  # a sample the laboratory could not link to a patient
                conn.execute(sa.text("UPDATE molecular_sample SET patient_id = NULL WHERE sample_id = :s"),
                             {"s": samples["sample_id"][-1]})
        sources = read_sources(wh, tmp_path / "sources", block_patients)
        ranges = wh.patient_blocks(block_patients)
        assert len(sources.blocks) == len(ranges) == -(-79 // block_patients)
        rows = 0
        for (low, high), block in zip(ranges, sources, strict=True):
            expected = _block_source(wh, low, high)
            assert list(block) == list(expected)
            for name, frame in expected.items():
                assert block[name].equals(frame), (low, name)
                rows += frame.height
        assert rows == sum(wh.table(name).height for name in expected)  # every row in one block


def test_one_clms_condition_per_patient_with_its_icdo3_topography(twin_warehouse, exported):
    conditions = _omop(exported, "SELECT p.person_source_value AS patient_id, c.condition_source_value "
                                 "FROM {s}.condition_occurrence c JOIN {s}.person p USING (person_id)")
    assert conditions.height == twin_warehouse.table("patient").height
    assert conditions["patient_id"].n_unique() == conditions.height
    tumour = twin_warehouse.table("tumour").select("patient_id", "site")
    expected = {"trunk": "8890/3-C44.5", "upper_limb": "8890/3-C44.6", "lower_limb": "8890/3-C44.7",
                "head_neck": "8890/3-C44.9", None: "8890/3-C44.9"}
    joined = conditions.join(tumour, on="patient_id", how="left")
    assert all(expected[site] == code for site, code in joined.select("site", "condition_source_value").iter_rows())


def test_one_death_per_dead_patient_with_its_cause(twin_warehouse, exported):
    deaths = _omop(exported, "SELECT p.person_source_value AS patient_id, d.cause_source_value "
                             "FROM {s}.death d JOIN {s}.person p USING (person_id)")
    dead = twin_warehouse.read_sql("SELECT patient_id, min(death_cause) AS cause FROM event "
                                "WHERE event_kind = 'death' GROUP BY patient_id")
    assert dead.height > 0
    assert sorted(deaths.rows()) == sorted(dead.rows())


def test_an_episode_for_every_recurrence_and_metastasis(twin_warehouse, exported):
    episodes = _omop(exported, "SELECT episode_source_value, count(*) AS n FROM {s}.episode GROUP BY 1")
    n = dict(episodes.rows())
    recurrences = twin_warehouse.read_sql("SELECT count(*) AS n FROM event WHERE event_kind = 'local_recurrence'")["n"][0]
    metastases = twin_warehouse.read_sql("SELECT count(DISTINCT patient_id || event_date) AS n FROM event "
                                      "WHERE event_kind = 'metastasis'")["n"][0]
    sites = twin_warehouse.read_sql("SELECT count(*) AS n FROM event WHERE event_kind = 'metastasis'")["n"][0]
    assert recurrences > 0 and metastases > 0
    assert n["local_recurrence"] == recurrences
    assert n["metastasis"] == metastases
    assert n["disease_episode"] == n["first_occurrence"] == 79
    linked_sites = _omop(exported, "SELECT count(*) AS n FROM {s}.episode_event ee JOIN {s}.episode e USING (episode_id) "
                                   "JOIN {s}.measurement m ON m.measurement_id = ee.event_id "
                                   "WHERE e.episode_source_value = 'metastasis'")["n"][0]
    assert linked_sites == sites  # every site of every metastatic occurrence


def test_shifted_dates_move_each_patient_back_by_one_constant_and_keep_intervals(twin_warehouse):
    exact, _ = build_tables(twin_warehouse, dates="exact", key=None)
    shifted, _ = build_tables(twin_warehouse, dates="shifted", key=TEST_KEY)
    other, _ = build_tables(twin_warehouse, dates="shifted", key=b"another-key-for-the-omop-shift-0123456789")

    def gaps(tables):
        return (tables["condition_occurrence"].join(tables["observation_period"], on="person_id")
                .select("person_id", (pl.col("condition_start_date") - pl.col("observation_period_start_date")).alias("a"),
                        (pl.col("observation_period_end_date") - pl.col("condition_start_date")).alias("b"))
                .sort("person_id"))

    assert gaps(exact).equals(gaps(shifted))
    moved = exact["condition_occurrence"].join(shifted["condition_occurrence"], on="person_id").select(
        (pl.col("condition_start_date") - pl.col("condition_start_date_right")).dt.total_days().alias("days"))["days"]
    assert moved.min() >= 1 and moved.max() <= omop_build.MAX_SHIFT_DAYS
    assert moved.n_unique() > 10  # per person, not one shift for all
    again, _ = build_tables(twin_warehouse, dates="shifted", key=TEST_KEY)
    assert again["condition_occurrence"].equals(shifted["condition_occurrence"])  # deterministic from the key
    assert not other["condition_occurrence"].equals(shifted["condition_occurrence"])


def test_unmapped_values_keep_their_source_value_and_are_reported(exported):
    unmapped = pl.read_csv(exported.files["unmapped"])
    assert {"table", "concept_field", "source_value", "rows"} == set(unmapped.columns)
    assert ("procedure_occurrence", "procedure_concept_id", "primary_excision") in {
        r[:3] for r in unmapped.iter_rows()}
    zero = _omop(exported, "SELECT count(*) AS n FROM {s}.procedure_occurrence WHERE procedure_concept_id = 0 "
                           "AND procedure_source_value IS NOT NULL")["n"][0]
    assert zero == unmapped.filter(pl.col("table") == "procedure_occurrence")["rows"].sum()
    grades = _omop(exported, "SELECT DISTINCT measurement_concept_id FROM {s}.measurement "
                             "WHERE measurement_source_value LIKE 'fnclcc_grade:%'")["measurement_concept_id"]
    assert set(grades) <= {mapping.concept_id("measurement", f"fnclcc_grade:{g}") for g in (1, 2, 3)}
    assert 0 not in set(grades)


def test_every_concept_entry_names_its_source_and_whether_it_was_confirmed():
    table = mapping.concepts()
    assert table["source"].null_count() == 0
    assert set(table["confirmed"]) <= {"yes", "no"}
    assert set(table["match"]) <= {"exact", "broader", "unmapped"}
    assert table.filter(pl.col("match") == "unmapped")["concept_id"].to_list() == [0] * table.filter(
        pl.col("match") == "unmapped").height
    assert table.select("source_domain", "source_code").is_duplicated().sum() == 0


def test_csv_files_have_the_ddl_columns_in_order(exported):
    for table, path in exported.files.items():
        if table in cdm.tables():
            assert pl.read_csv(path, n_rows=0).columns == [c.name for c in cdm.tables()[table]]


def test_the_duckdb_schema_is_the_official_ddl_with_its_primary_keys_respected(exported):
    keys = _omop(exported, "SELECT table_name FROM information_schema.table_constraints "
                           "WHERE table_schema = '{s}' AND constraint_type = 'PRIMARY KEY'")["table_name"]
    assert {"person", "observation_period", "condition_occurrence", "procedure_occurrence", "measurement",
            "observation", "specimen", "episode", "metadata"} <= set(keys)
    assert len(cdm.tables()) == _omop(exported, "SELECT count(*) AS n FROM information_schema.tables "
                                                "WHERE table_schema = '{s}'")["n"][0]
    engine = sa.create_engine(f"duckdb:///{exported.files['duckdb']}")
    try:
        with pytest.raises(sa.exc.DBAPIError, match="(?i)primary key|duplicate"), engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {DEFAULT_SCHEMA}.person SELECT * FROM {DEFAULT_SCHEMA}.person LIMIT 1"))
    finally:
        engine.dispose()


def test_the_primary_keys_are_built_once_the_rows_are_in(twin_warehouse, tmp_path, monkeypatch):
    """Every block is inserted into tables without their keys (an index maintained block by block, and
    written at each block's commit, cost more than building it once); the official keys are there after."""
    from clms_etl.omop import export

    keyed_while_inserting = []
    insert = cdm.insert

    def watched(conn, schema, frames):
        keyed_while_inserting.append(conn.execute(sa.text(
            "SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'")).scalar())
        return insert(conn, schema, frames)

    monkeypatch.setattr(export.cdm, "insert", watched)
    result = export_omop(twin_warehouse, tmp_path / "omop", key=TEST_KEY, block_patients=30)
    assert len(keyed_while_inserting) == 4 and set(keyed_while_inserting) == {0}  # three blocks of patients, then cdm_source
    assert result.passed
    keys = _omop(result, "SELECT count(*) AS n FROM information_schema.table_constraints "
                         "WHERE table_schema = '{s}' AND constraint_type = 'PRIMARY KEY'")["n"][0]
    assert keys == 28  # every primary key of the official file


def test_the_dqd_checks_pass_on_the_twin(exported):
    assert exported.passed, exported.failures()
    names = set(exported.quality["check"])
    assert {"isRequired", "isPrimaryKey", "isForeignKey", "plausibleValueLow", "plausibleValueHigh",
            "plausibleTemporalAfter", "plausibleStartBeforeEnd", "plausibleAfterBirth", "plausibleBeforeDeath",
            "measureObservationPeriodOverlap", "withinObservationPeriod"} <= names


@pytest.mark.postgres
def test_postgresql_takes_the_export_in_an_official_schema_and_refuses_to_mix_two(twin_warehouse, pg_url):
    result = export_omop(twin_warehouse, pg_url, key=TEST_KEY)
    assert result.passed, result.failures()
    assert result.rows["person"] == 79
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            keys = conn.execute(sa.text("SELECT count(*) FROM information_schema.table_constraints WHERE "
                                        "table_schema = 'omop' AND constraint_type = 'PRIMARY KEY'")).scalar()
            assert keys == 28  # every primary key of the official file
            assert conn.execute(sa.text("SELECT count(*) FROM omop.episode")).scalar() == result.rows["episode"]
        with pytest.raises(TargetRefused):
            export_omop(twin_warehouse, pg_url, key=TEST_KEY)
        again = export_omop(twin_warehouse, pg_url, key=TEST_KEY, replace=True)
        assert again.rows == result.rows
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO omop.person SELECT * FROM omop.person LIMIT 1"))
    finally:
        engine.dispose()


# ---- each check fails on a planted defect -------------------------------------------------------
# (check, table, field, statements) on a schema without primary keys and NOT NULL, as a site loading
# the CSV files by hand might have it: the checks must catch what the DDL would have refused too.
DEFECTS = [
    ("isRequired", "person", "year_of_birth", ["UPDATE {s}.person SET year_of_birth = NULL WHERE person_id = 1"]),
    ("isPrimaryKey", "measurement", "measurement_id",
     ["INSERT INTO {s}.measurement SELECT * FROM {s}.measurement WHERE measurement_id = 1"]),
    ("isForeignKey", "death", "person_id", ["UPDATE {s}.death SET person_id = 99999 WHERE person_id IN "
                                            "(SELECT min(person_id) FROM {s}.death)"]),
    ("isForeignKey", "episode_event", "episode_id", ["UPDATE {s}.episode_event SET episode_id = 99999 "
                                                     "WHERE episode_id = 1"]),
    ("plausibleValueLow", "person", "year_of_birth", ["UPDATE {s}.person SET year_of_birth = 1800 WHERE person_id = 2"]),
    ("plausibleValueHigh", "measurement", "measurement_date",
     ["UPDATE {s}.measurement SET measurement_date = CURRENT_DATE + 30 WHERE measurement_id = 1"]),
    ("plausibleTemporalAfter", "observation_period", "observation_period_end_date",
     ["UPDATE {s}.observation_period SET observation_period_end_date = observation_period_start_date - 10 "
      "WHERE person_id = 3"]),
    ("plausibleStartBeforeEnd", "episode", "episode_start_date",
     ["UPDATE {s}.episode SET episode_end_date = episode_start_date - 1 WHERE episode_id = 1"]),
    ("plausibleAfterBirth", "death", "death_date",  # death before birth
     ["UPDATE {s}.death SET death_date = make_date(CAST(p.year_of_birth AS INTEGER) - 1, 12, 1) FROM {s}.person p "
      "WHERE p.person_id = {s}.death.person_id"]),
    ("plausibleAfterBirth", "condition_occurrence", "condition_start_date",
     ["UPDATE {s}.condition_occurrence SET condition_start_date = make_date(CAST(p.year_of_birth AS INTEGER) - 1, 1, 1) "
      "FROM {s}.person p WHERE p.person_id = {s}.condition_occurrence.person_id AND p.person_id = 4"]),
    ("plausibleBeforeDeath", "procedure_occurrence", "procedure_date",
     ["UPDATE {s}.procedure_occurrence SET procedure_date = d.death_date + 100 FROM {s}.death d "
      "WHERE d.person_id = {s}.procedure_occurrence.person_id"]),
    ("measureObservationPeriodOverlap", "observation_period", "observation_period_start_date",
     ["INSERT INTO {s}.observation_period SELECT observation_period_id + 100000, person_id, "
      "observation_period_start_date, observation_period_end_date, period_type_concept_id "
      "FROM {s}.observation_period WHERE person_id = 5"]),
    ("withinObservationPeriod", "measurement", "measurement_date",
     ["UPDATE {s}.measurement SET measurement_date = o.observation_period_start_date - 5 FROM {s}.observation_period o "
      "WHERE o.person_id = {s}.measurement.person_id AND {s}.measurement.measurement_id = 2"]),
]


@pytest.fixture(scope="module")
def twin_tables(twin_warehouse):
    return build_tables(twin_warehouse, dates="shifted", key=TEST_KEY)[0]


@pytest.mark.parametrize(("check", "table", "field", "statements"), DEFECTS,
                         ids=[f"{d[0]}-{d[1]}.{d[2]}" for d in DEFECTS])
def test_each_check_fails_on_a_planted_defect(twin_tables, tmp_path, check, table, field, statements):
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'defect.duckdb'}")
    try:
        write_database(engine, "cdm", twin_tables, primary_keys=False)
        with engine.begin() as conn:
            assert quality.run_checks(conn, "cdm")["passed"].all()  # clean before the defect
            for column in cdm.tables()[table]:  # as loose as a hand-made schema
                conn.execute(sa.text(f"ALTER TABLE cdm.{table} ALTER COLUMN {column.name} DROP NOT NULL"))
            for statement in statements:
                assert conn.execute(sa.text(statement.format(s="cdm"))).rowcount >= 1
            checked = quality.run_checks(conn, "cdm")
    finally:
        engine.dispose()
    failed = checked.filter(~pl.col("passed"))
    assert (check, table, field) in {r[:3] for r in failed.iter_rows()}, failed


def test_the_ids_do_not_depend_on_the_order_the_database_returns_rows(twin_warehouse):
    # a second tumour of one patient gives two rows with the same (person, date, source value): their
    # ids must follow their values, not the rows' order, which a database does not promise
    from clms_etl.omop.export import SOURCE_TABLES

    source = {name: twin_warehouse.table(name) for name in SOURCE_TABLES}
    tumour = source["tumour"]
    second = tumour.head(1).with_columns(pl.col("size_cm") + 1.5, pl.col("mitoses_per_10hpf") + 3)
    source["tumour"] = pl.concat([tumour, second])
    built = omop_build.build(source, dates="exact")
    again = omop_build.build({name: frame.reverse() for name, frame in source.items()}, dates="exact")
    for name, table in built.tables.items():
        assert again.tables[name].equals(table), name


def test_an_export_of_an_empty_warehouse_is_empty_and_passes(tmp_path):
    with Warehouse(f"duckdb:///{tmp_path / 'empty.duckdb'}") as wh:
        wh.create()
        result = export_omop(wh, tmp_path / "omop", key=TEST_KEY)
    assert result.rows["person"] == 0 and result.passed
    assert (tmp_path / "omop" / DUCKDB_FILE).is_file()
    assert dt.date.today() == pl.read_csv(result.files["cdm_source"], try_parse_dates=True)["cdm_release_date"][0]


def test_rows_without_a_place_in_the_cdm_are_listed_with_their_reason_never_dropped_silently(twin_warehouse):
    source = {name: twin_warehouse.table(name) for name in omop_build.CLINICAL_TABLES + omop_build.MOLECULAR_TABLES}
    ageless = source["patient"]["patient_id"][0]
    source["patient"] = source["patient"].with_columns(
        pl.when(pl.col("patient_id") == ageless).then(None).otherwise(pl.col("age_at_diagnosis_years"))
        .alias("age_at_diagnosis_years"))
    undated = source["event"].filter(pl.col("patient_id") != ageless).row(0, named=True)
    source["event"] = source["event"].with_columns(
        pl.when((pl.col("patient_id") == undated["patient_id"]) & (pl.col("event_no") == undated["event_no"]))
        .then(None).otherwise(pl.col("event_date")).alias("event_date"))
    built = omop_build.build(source, dates="exact")
    assert built.tables["person"].height == source["patient"].height - 1
    assert ageless not in set(built.tables["person"]["person_source_value"])
    reasons = {(t, p): r for t, p, r in built.excluded.iter_rows()}
    assert "no age" in reasons[("patient", ageless)].replace("no diagnosis date or no age", "no age")
    assert reasons[("event", undated["patient_id"])] == "event without a date"
    ageless_events = source["event"].filter(pl.col("patient_id") == ageless).height
    assert ageless_events > 0  # its events go with the person, which is listed


def test_the_checks_pass_on_deliveries_with_realistic_chart_defects(report_warehouse, tmp_path):  # noqa: F811
    """What validation quarantines (death before diagnosis, event after last news, ...) never reaches
    the CDM, so a night with defective charts still passes the blocking check."""
    from tests.report.conftest import KEY

    result = export_omop(report_warehouse, tmp_path / "omop", key=KEY)
    assert result.rows["person"] == report_warehouse.read_sql("SELECT count(*) AS n FROM patient")["n"][0]
    assert result.passed, result.failures()


def test_revalidation_against_a_vocabulary_flags_each_kind_of_problem_and_suggests_the_icdo3_target(tmp_path):
    """A site's vocabulary in the official DDL's tables: one pinned id fine, one renamed, one deprecated,
    the rest absent; the ICDO3 code of the trunk cLMS maps to a standard concept."""
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'site_vocabulary.duckdb'}")
    male, grade1, lung = (mapping.concept_id("gender", "male"), mapping.concept_id("measurement", "fnclcc_grade:1"),
                          mapping.concept_id("measurement", "metastasis:lung"))
    concept = ("INSERT INTO vocab.concept VALUES (:id, :name, 'X', 'V', 'C', :std, :code, DATE '2000-01-01', "
               "DATE '2099-12-31', :invalid)")
    try:
        with engine.begin() as conn:
            cdm.create_schema(conn, "vocab")
            for row in ({"id": male, "name": "MALE", "std": "S", "code": "M", "invalid": None},
                        {"id": grade1, "name": "FNCLCC grade 1 (renamed)", "std": "S", "code": "g1", "invalid": None},
                        {"id": lung, "name": "Metastasis to Lung", "std": None, "code": "ml", "invalid": "D"},
                        {"id": 900001, "name": "Leiomyosarcoma of skin of trunk", "std": None, "code": "8890/3-C44.5",
                         "invalid": None},
                        {"id": 900002, "name": "Leiomyosarcoma of skin", "std": "S", "code": "x", "invalid": None}):
                conn.execute(sa.text(concept), row)
            conn.execute(sa.text("UPDATE vocab.concept SET vocabulary_id = 'ICDO3' WHERE concept_id = 900001"))
            conn.execute(sa.text("INSERT INTO vocab.concept_relationship VALUES (900001, 900002, 'Maps to', "
                                 "DATE '2000-01-01', DATE '2099-12-31', NULL)"))
            report = mapping.revalidate(conn, "vocab")
    finally:
        engine.dispose()
    status = {(r["source_domain"], r["source_code"]): r for r in report.iter_rows(named=True)}
    assert status[("gender", "male")]["status"] == "ok"
    assert status[("measurement", "fnclcc_grade:1")]["status"] == "renamed"
    assert status[("measurement", "metastasis:lung")]["status"] == "invalid"
    assert status[("gender", "female")]["status"] == "missing"
    assert status[("condition", "8890/3-C44.5")]["status"] == "suggestion"
    assert status[("condition", "8890/3-C44.5")]["suggested_concept_id"] == 900002
    assert status[("condition", "8890/3-C44.7")]["status"] == "no code"


def test_a_duckdb_file_named_like_its_schema_takes_the_export(twin_warehouse, tmp_path):
    """DuckDB names a file's catalog after the file: omop.duckdb holding schema omop is ambiguous unless
    every statement names the catalog too."""
    url = f"duckdb:///{tmp_path / 'omop.duckdb'}"
    first = export_omop(twin_warehouse, url, key=TEST_KEY)
    again = export_omop(twin_warehouse, url, key=TEST_KEY, replace=True)
    assert first.passed and again.rows == first.rows and first.rows["person"] == 79


def test_an_empty_schema_made_beforehand_from_the_ddl_takes_the_export(twin_warehouse, tmp_path):
    """A site creates the schema with OHDSI's DDL first; the export fills it (the emptiness check's
    query must not hold the connection the rows are then written through)."""
    url = f"duckdb:///{tmp_path / 'site.duckdb'}"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            cdm.create_schema(conn, "cdm")
    finally:
        engine.dispose()
    result = export_omop(twin_warehouse, url, key=TEST_KEY, schema="cdm")
    assert result.passed and result.rows["person"] == 79


def test_the_checks_on_a_table_s_own_rows_share_one_scan_and_count_what_each_counts_alone(twin_tables, tmp_path):
    """Every planted defect at once: each check's count is the one of its own query run alone, and the
    checks on a table's own rows (required, plausible values, start before end) cost one query per table."""
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'defects.duckdb'}")
    try:
        write_database(engine, "cdm", twin_tables, primary_keys=False)
        with engine.begin() as conn:
            for table in {d[1] for d in DEFECTS}:
                for column in cdm.tables()[table]:
                    conn.execute(sa.text(f"ALTER TABLE cdm.{table} ALTER COLUMN {column.name} DROP NOT NULL"))
            for *_, statements in DEFECTS:
                for statement in statements:
                    conn.execute(sa.text(statement.format(s="cdm")))
        sent: list[str] = []
        listener = lambda conn, cursor, statement, *rest: sent.append(statement)  # noqa: E731
        sa.event.listen(engine, "before_cursor_execute", listener)
        with engine.connect() as conn:
            found = quality.run_checks(conn, "cdm")
        sa.event.remove(engine, "before_cursor_execute", listener)
        with engine.connect() as conn:
            name = cdm.qualified(conn, "cdm")
            alone = [int(conn.execute(sa.text(c.sql.format(s=name))).all()[0][0]) for c in quality.checks()]
    finally:
        engine.dispose()
    assert found["rows"].to_list() == alone
    failing = {(c, t, f) for c, t, f in found.filter(~pl.col("passed")).select("check", "table", "field").iter_rows()}
    assert failing >= {(c, t, f) for c, t, f, _ in DEFECTS}
    own = [c for c in quality.checks() if c.condition is not None]
    assert len(own) > 50
    assert len(sent) == 1 + len(quality.checks()) - len(own) + len({c.table for c in own})  # 1: the catalog's name


def test_the_rows_an_export_killed_mid_way_left_beside_the_cdm_are_removed_by_the_next(tmp_path):
    target = tmp_path / "omop"
    left = target / ".sources-k1ll3d"
    left.mkdir(parents=True)
    (left / "0-patient.arrow").write_bytes(b"rows of the warehouse")
    (target / ".keep").write_text("not ours")
    with sources_folder(target) as folder:
        assert folder.parent == target and folder.is_dir()
        assert not left.exists()
    assert not folder.exists()
    assert (target / ".keep").exists() and not list(target.glob(".sources-*"))
