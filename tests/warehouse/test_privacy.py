"""No identifier anywhere in the warehouse; the pseudonym key comes from the deployment."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from clms_etl import keys
from clms_etl.synth.generate import generate
from clms_etl.synth.twin import build_twin
from clms_etl.warehouse import Warehouse, schema
from clms_etl.warehouse.analytics import VIEWS
from tests.warehouse.helpers import DAY1, queries_frame, twin


def identifiers() -> dict[str, set[str]]:
    """Every direct identifier the synthetic deliveries carry."""
    people = build_twin(0).patient
    births = people["birth_date"].to_list()
    return {
        "name": set(people["last_name"].to_list()) | set(people["first_name"].to_list()),
        "local_id": set(people["local_id"].to_list()),
        "birth_date": {d.isoformat() for d in births} | {d.strftime("%d/%m/%Y") for d in births},
    }


def scan_values(values: list[str], found: dict[str, set[str]]) -> dict[str, set[str]]:
    """Identifiers found in text values: names as whole words, ids and dates as substrings."""
    text = "\n".join(values)
    words = set(re.findall(r"\w+", text))
    hits: dict[str, set[str]] = {}
    for kind, items in found.items():
        if kind == "name":
            got = {n for n in items if all(part in words for part in re.findall(r"\w+", n))}
        else:
            got = {i for i in items if i in text}
        if got:
            hits[kind] = got
    return hits


def all_values(wh: Warehouse) -> list[str]:
    values = []
    relations = list(schema.metadata.tables) + [v.qualified for v in VIEWS]
    for name in relations:
        frame = wh.read_sql(f"SELECT * FROM {name}")
        for column in frame.columns:
            values += [str(v) for v in frame[column].drop_nulls().to_list()]
    return values


def load_with_real_files(wh: Warehouse, root: Path, planted: str | None = None) -> None:
    """The twin's real synthetic delivery files (for their names and SHA-256) and canonical rows."""
    result = generate(root / "incoming", seed=0, delivery_date=DAY1)
    for centre, delivery in twin().items():
        files = [f for f in result.files if f.relative_to(root / "incoming").parts[0] == centre]
        accepted = dict(delivery.accepted)
        queries = pl.DataFrame(schema=delivery.queries.schema)
        if centre != "molecular":
            pid = accepted["patient"]["patient_id"][0]
            queries = queries_frame([
                {"centre": centre, "delivery_date": DAY1, "file": files[0].name, "row": 3, "table_name": "patient",
                 "row_id": "patient:2", "patient_id": pid, "field": "Nom", "value": "<identifiant masqué>",
                 "rule": "identifier_in_text", "severity": "warning", "message": "Identifiant masqué."},
                {"centre": centre, "delivery_date": DAY1, "file": files[0].name, "row": 4, "table_name": "tumour",
                 "row_id": "tumour:3", "patient_id": pid, "field": "Taille", "value": "1,5 cm ?",
                 "rule": "unparsable_number", "severity": "error", "message": "Taille « 1,5 cm ? » illisible."},
            ])
            if planted and centre == "nice":
                accepted["event"] = accepted["event"].with_columns(
                    pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(planted)).otherwise(pl.col("treatment"))
                    .alias("treatment"))
        d = type(delivery)(centre, DAY1, accepted, queries=queries)
        wh.load_delivery(centre, DAY1, files, d, "privacy", expectations=False)


def raw_hits(kind: str, items: set[str], raw: bytes) -> set[str]:
    """The identifiers found in the raw bytes of a warehouse file (names of 4 letters or more), once the
    product's own declared texts are taken out: the table and column comments of the catalog are not
    data ("Benjamin" inside the comment "... Benjamini-Hochberg ..." is no patient)."""
    from clms_etl.warehouse import schema

    for table in (*schema.metadata.tables.values(), *schema.results_metadata.tables.values()):
        for text in (table.comment, *(c.comment for c in table.columns)):
            if text:
                raw = raw.replace(text.encode("utf-8"), b"")
    return {i for i in items if i.encode("utf-8") in raw and (kind != "name" or len(i) >= 4)}


def test_no_identifier_in_any_column_of_any_table(warehouse_url, tmp_path):
    ids = identifiers()
    assert len(ids["name"]) > 100 and len(ids["local_id"]) == 79 and len(ids["birth_date"]) >= 150
    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_with_real_files(wh, tmp_path)
        values = all_values(wh)
        assert len(values) > 5000
        assert scan_values(values, ids) == {}


def test_the_duckdb_file_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with Warehouse(f"duckdb:///{path}") as wh:
        wh.create()
    assert path.stat().st_mode & 0o777 == 0o600


def test_no_identifier_in_the_raw_bytes_of_the_duckdb_file(tmp_path):
    ids = identifiers()
    path = tmp_path / "warehouse.duckdb"
    with Warehouse(f"duckdb:///{path}") as wh:
        wh.create()
        load_with_real_files(wh, tmp_path)
        with wh.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("warehouse.duckdb*"))
    assert len(raw) > 100_000
    for kind, items in ids.items():
        assert raw_hits(kind, items, raw) == set(), kind


def test_the_scans_do_find_a_planted_identifier(tmp_path):
    """Positive control: a name slipped into a free-text column is caught by both scans."""
    ids = identifiers()
    victim = sorted(n for n in ids["name"] if len(n) >= 6)[0]
    path = tmp_path / "warehouse.duckdb"
    with Warehouse(f"duckdb:///{path}") as wh:
        wh.create()
        load_with_real_files(wh, tmp_path, planted=f"vu par {victim}")
        assert victim in scan_values(all_values(wh), ids)["name"]
        with wh.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("warehouse.duckdb*"))
    assert victim in raw_hits("name", {victim}, raw)  # (a planted value is not a declared text)


# -- the pseudonym key ---------------------------------------------------------------------------


def test_postgresql_without_a_key_is_refused(monkeypatch):
    monkeypatch.delenv(keys.ENV_KEY)
    with pytest.raises(keys.PseudonymKeyError, match="Refusing to run against a postgresql warehouse without a pseudonym key"):
        Warehouse("postgresql://postgres@127.0.0.1:5432/never_connected")
    with pytest.raises(keys.PseudonymKeyError, match="CLMS_PSEUDONYM_KEY"):
        keys.pseudonym_key("postgresql+psycopg://x@h/db", env={})


def test_the_key_comes_from_the_environment_or_a_secrets_file(tmp_path):
    from_env = "s3cret-key-from-env-Qx7vT2mL9pW4zR8k"
    assert keys.pseudonym_key("postgresql://h/db", env={keys.ENV_KEY: from_env}) == from_env.encode()
    secret = tmp_path / "pseudonym.key"
    secret.write_text("s3cret-key-from-a-file-Hd83Jf0qLz5Nw\n")
    assert keys.pseudonym_key("postgresql://h/db", env={keys.ENV_KEY_FILE: str(secret)}) == \
        b"s3cret-key-from-a-file-Hd83Jf0qLz5Nw"
    with pytest.raises(keys.PseudonymKeyError, match="cannot read"):
        keys.pseudonym_key("postgresql://h/db", env={keys.ENV_KEY_FILE: str(tmp_path / "missing")})
    with pytest.raises(keys.PseudonymKeyError, match="at least 32"):
        keys.pseudonym_key("duckdb:///w.duckdb", env={keys.ENV_KEY: "short"})


def test_a_hospital_number_cannot_be_stored_as_a_patient_id(tmp_path):
    """The schema itself refuses anything but a pseudonym in patient_id."""
    nice = twin()["nice"]
    leaked = nice.accepted["patient"].with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("12345678")).otherwise(pl.col("patient_id")).alias("patient_id"))
    bad = type(nice)("nice", DAY1, {"patient": leaked})
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "f.txt").write_text("x")
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.create()
        with pytest.raises(Exception, match="(?i)check constraint"):
            wh.load_delivery("nice", DAY1, [folder / "f.txt"], bad, expectations=False)
        assert wh.read_sql("SELECT COUNT(*) AS n FROM patient")["n"][0] == 0



@pytest.fixture(scope="module")
def pipeline_imports(tmp_path_factory):
    """The synthetic deliveries (with planted defects, so that data queries carry values) read and
    validated by the project's own readers and validation, as the pipeline does."""
    from clms_etl.centres import load_registry
    from clms_etl.deliveries import latest_delivery
    from clms_etl.centre_import import read_and_validate

    drop = tmp_path_factory.mktemp("drop") / "incoming"
    generate(drop, seed=0, delivery_date=DAY1, defect_rate=0.1)
    out = []
    for name, centre in load_registry(drop).items():
        delivery = latest_delivery(drop, name)
        imported = read_and_validate(centre, delivery, b"privacy-test-key-0123456789")
        assert imported.validated is not None, imported.failure
        out.append((name, delivery, imported.validated))
    return out


def test_no_identifier_after_the_real_readers_and_validation(pipeline_imports, warehouse_url, tmp_path):
    ids = identifiers()
    with Warehouse(warehouse_url) as wh:
        wh.create()
        for name, delivery, validated in pipeline_imports:
            wh.load_delivery(name, delivery.date, [delivery.path / f for f, _ in delivery.files], validated, "privacy",
                             expectations=False)
        assert wh.read_sql("SELECT COUNT(*) AS n FROM data_query")["n"][0] > 10
        assert scan_values(all_values(wh), ids) == {}
        if wh.backend == "duckdb":
            with wh.engine.connect() as conn:
                conn.exec_driver_sql("CHECKPOINT")
    if warehouse_url.startswith("duckdb"):
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("warehouse.duckdb*"))
        for kind, items in ids.items():
            assert raw_hits(kind, items, raw) == set(), kind
