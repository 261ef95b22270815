"""The pseudonym key's life cycle: strong keys only, the demo key only in the demo, one key per
warehouse (fingerprint), a deliberate re-key, and the audit trail of every change."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl import keys
from clms_etl.keys import pseudonym
from clms_etl.warehouse import DeliveryRefused, Warehouse, schema
from clms_etl.warehouse.load import KeyMismatch
from tests.warehouse.helpers import (DAY1, DAY2, OTHER_KEY, SOURCES, TEST_KEY, assert_same, delivery_files,
                                     load_twin, one_result_row, snapshot, twin, twin_mapping, twin_with)

DEMO = keys.DEMO_KEY.decode()
DUCKDB, POSTGRES = "duckdb:///data/warehouse.duckdb", "postgresql+psycopg://loader@db/clms"


# -- the key rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [DEMO, DEMO + " ", " " + DEMO + "\n", DEMO.lower(), DEMO.upper(),
                                      DEMO.replace(" ", "  "), DEMO.replace(" - ", "_")])
@pytest.mark.parametrize("url", [DUCKDB, POSTGRES])
def test_the_demo_key_is_refused_outside_demo_mode_whatever_its_spelling(spelling, url):
    with pytest.raises(keys.PseudonymKeyError, match="public DEMO key cannot be used"):
        keys.pseudonym_key(url, env={keys.ENV_KEY: spelling})


def test_the_demo_key_is_refused_from_a_key_file_too(tmp_path):
    path = tmp_path / "pseudonym.key"
    path.write_text(DEMO.lower() + "  \n")
    with pytest.raises(keys.PseudonymKeyError, match="public DEMO key"):
        keys.pseudonym_key(DUCKDB, env={keys.ENV_KEY_FILE: str(path)})


def test_the_demo_key_serves_the_duckdb_demo_only():
    demo = {keys.ENV_DEMO: "1"}
    assert keys.pseudonym_key(DUCKDB, env=demo) == keys.DEMO_KEY
    assert keys.pseudonym_key(DUCKDB, env={**demo, keys.ENV_KEY: DEMO.lower() + " "}) == keys.DEMO_KEY
    with pytest.raises(keys.PseudonymKeyError, match="postgresql warehouse without a pseudonym key"):
        keys.pseudonym_key(POSTGRES, env=demo)
    with pytest.raises(keys.PseudonymKeyError, match="public DEMO key cannot be used for a postgresql"):
        keys.pseudonym_key(POSTGRES, env={**demo, keys.ENV_KEY: DEMO})


@pytest.mark.parametrize("weak, reason", [
    ("A" * 16, "at least 32"),
    ("short", "at least 32"),
    ("a" * 40, "repeats 1 character"),
    ("0123456789abcdef" * 3, "repeats 16 character"),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "bits of entropy"),
])
@pytest.mark.parametrize("url", [DUCKDB, POSTGRES])
def test_a_weak_key_is_refused_with_a_clear_message(weak, reason, url):
    with pytest.raises(keys.PseudonymKeyError, match=f"too weak: .*{reason}.*secrets.token_urlsafe"):
        keys.pseudonym_key(url, env={keys.ENV_KEY: weak})


def test_duckdb_has_no_fallback_to_the_demo_key_outside_demo_mode(tmp_path, monkeypatch):
    with pytest.raises(keys.PseudonymKeyError, match="Refusing to run against a duckdb warehouse without a pseudonym key"):
        keys.pseudonym_key(DUCKDB, env={})
    monkeypatch.delenv(keys.ENV_KEY)
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        with pytest.raises(keys.PseudonymKeyError, match=keys.ENV_KEY):
            load_twin(wh, tmp_path, sources=("nice",))
        assert wh.table("patient").height == 0 and wh.key_fingerprint() is None


def test_the_fingerprint_is_salted_slow_and_never_the_key():
    a, b = keys.fingerprint(TEST_KEY), keys.fingerprint(TEST_KEY)
    assert a != b  # a salt per warehouse: no table of precomputed fingerprints
    assert keys.matches(TEST_KEY, a) and keys.matches(TEST_KEY, b) and not keys.matches(OTHER_KEY, a)
    assert a.startswith(f"scrypt${keys.SCRYPT_N}$") and keys.SCRYPT_N >= 2**14
    assert TEST_KEY.decode() not in a and TEST_KEY.hex() not in a


# -- one key per warehouse ---------------------------------------------------------------------


def test_a_load_with_another_key_is_refused_and_nothing_is_written(warehouse_url, tmp_path):
    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        before = snapshot(wh)
        other = twin_with(OTHER_KEY, DAY2)["nice"]
        with pytest.raises(KeyMismatch, match="another key than the warehouse's.*clms-etl warehouse rekey") as refused:
            wh.load_delivery("nice", DAY2, delivery_files(tmp_path, "nice", DAY2), other, "night-2",
                             expectations=False, key=OTHER_KEY)
        assert isinstance(refused.value, DeliveryRefused)  # the Dagster asset fails it without retry
        assert OTHER_KEY.decode() not in str(refused.value) and TEST_KEY.decode() not in str(refused.value)
        with pytest.raises(KeyMismatch):  # the same files as last night, read with another key: said, not "unchanged"
            wh.load_delivery("nice", DAY1, delivery_files(tmp_path, "nice", DAY1), twin_with(OTHER_KEY)["nice"],
                             expectations=False, key=OTHER_KEY)
        assert_same(before, snapshot(wh))  # row counts, deliveries, audit trail: unchanged


def test_the_first_load_records_the_fingerprint_and_the_key_stays_secret(tmp_path):
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        assert wh.key_fingerprint() is None
        load_twin(wh, tmp_path, sources=("nice",))
        stored = wh.key_fingerprint()
        assert keys.matches(TEST_KEY, stored)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("warehouse.duckdb*"))
    assert TEST_KEY not in raw and TEST_KEY.hex().encode() not in raw


def test_the_key_is_checked_against_the_fingerprint_once_per_process_not_once_per_warehouse_object(
        tmp_path, monkeypatch):
    """Every import run opens the warehouse in a long-lived process (the code server's forked run
    workers, ``clms-etl run``): one scrypt per process, not one per opening.
    Another key is still refused (what is remembered is the key that matched, not "checked")."""
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    with Warehouse(url) as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice",))
    scrypts = []
    monkeypatch.setattr(keys, "matches", lambda key, stored, real=keys.matches: scrypts.append(key) or real(key, stored))
    for _ in range(2):  # two runs' loads: two Warehouse objects
        with Warehouse(url) as wh:
            wh.check_key(TEST_KEY, "nice")
    assert len(scrypts) <= 1
    with Warehouse(url) as wh, pytest.raises(KeyMismatch):
        wh.check_key(OTHER_KEY, "nice")


def test_a_warehouse_loaded_before_fingerprints_must_adopt_its_key(tmp_path):
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice",))
        with wh.engine.begin() as conn:  # as a warehouse upgraded from revision 0002 would be
            conn.exec_driver_sql("DELETE FROM warehouse_key")
        with pytest.raises(KeyMismatch, match="adopt-key"):
            load_twin(wh, tmp_path, DAY2, sources=("nice",))
        key_id = wh.adopt_key(TEST_KEY)
        assert wh.audit_log()["action"][0] == "adopt_key" and wh.audit_log()["key_id"][0] == key_id
        assert load_twin(wh, tmp_path, DAY2, sources=("nice",))["nice"].status == "loaded"
        with pytest.raises(KeyMismatch, match="already has a key fingerprint"):
            wh.adopt_key(OTHER_KEY)


# -- re-key ------------------------------------------------------------------------------------


def _links(wh: Warehouse) -> int:
    return wh.read_sql("SELECT COUNT(*) AS n FROM molecular_sample m JOIN patient p USING (patient_id)")["n"][0]


def test_rekey_recomputes_every_pseudonym_consistently(warehouse_url, tmp_path):
    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        excluded = one_result_row(schema.RESULT_TABLES["survival_exclusion"]).with_columns(
            pl.lit(wh.table("patient")["patient_id"][0]).alias("patient_id"))
        wh.replace_results({"survival_exclusion": excluded}, run_id="test")
        before = {t: wh.table(t).height for t in schema.CLINICAL_TABLES + schema.MOLECULAR_TABLES}
        links = _links(wh)
        assert links > 0

        report = wh.rekey(twin_mapping(), TEST_KEY, OTHER_KEY, run_id="rekey-test")

        mapping = twin_mapping()
        expected = {pseudonym(OTHER_KEY, c, i) for c, i in mapping.iter_rows()}
        assert set(wh.table("patient")["patient_id"]) <= expected
        assert set(wh.table("patient")["patient_id"]) == set(twin_with(OTHER_KEY)["nice"].accepted["patient"]["patient_id"]) \
            | set().union(*(twin_with(OTHER_KEY)[c].accepted["patient"]["patient_id"] for c in SOURCES if c != "molecular"))
        assert {t: wh.table(t).height for t in before} == before
        for child in ("tumour", "surgery", "event"):
            orphans = wh.read_sql(f"SELECT COUNT(*) AS n FROM {child} c LEFT JOIN patient p USING (patient_id) "
                               "WHERE p.patient_id IS NULL")["n"][0]
            assert orphans == 0, child
        assert _links(wh) == links  # lab samples keep their patient
        assert set(wh.table("molecular_sample")["patient_id"].drop_nulls()) == \
            set(twin_with(OTHER_KEY)["molecular"].accepted["molecular_sample"]["patient_id"].drop_nulls())
        assert wh.results("survival_exclusion")["patient_id"][0] in expected
        assert keys.matches(OTHER_KEY, wh.key_fingerprint()) and report.new_key_id == keys.key_id(wh.key_fingerprint())
        audit = wh.audit_log()
        assert audit["action"][0] == "rekey" and audit["n_deliveries"][0] == len(SOURCES)
        assert audit["key_id"][0] == report.new_key_id

        # the next night, with the new key: loaded; with the old one: refused
        assert wh.load_delivery("nice", DAY2, delivery_files(tmp_path, "nice", DAY2), twin_with(OTHER_KEY, DAY2)["nice"],
                                expectations=False, key=OTHER_KEY).status == "loaded"
        assert _links(wh) == links
        with pytest.raises(KeyMismatch):
            wh.load_delivery("lyon", DAY2, delivery_files(tmp_path, "lyon", DAY2), twin(DAY2)["lyon"],
                             expectations=False, key=TEST_KEY)


def test_a_rekey_with_an_incomplete_mapping_or_the_wrong_old_key_changes_nothing(tmp_path):
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        load_twin(wh, tmp_path)
        before = snapshot(wh)
        with pytest.raises(KeyMismatch, match="no line in the mapping"):
            wh.rekey(twin_mapping().filter(pl.col("centre") != "lyon"), TEST_KEY, OTHER_KEY)
        with pytest.raises(KeyMismatch, match="old key .* is not the warehouse's key"):
            wh.rekey(twin_mapping(), OTHER_KEY, b"yet-another-key-Hq2Zr8Lp4Wx6Tn0Vb")
        with pytest.raises(keys.PseudonymKeyError, match="too weak"):
            wh.rekey(twin_mapping(), TEST_KEY, b"z" * 40)
        assert_same(before, snapshot(wh))


# -- audit trail -------------------------------------------------------------------------------


def test_each_load_writes_an_audit_row_with_user_key_code_version_and_delivery(tmp_path):
    from clms_etl.version import code_version

    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice", "lyon"))
        load_twin(wh, tmp_path, sources=("nice",))  # unchanged: nothing to audit
        wh.record_refresh("night-1", run_user="someone@chu")
        audit = wh.read_sql("SELECT * FROM audit_log ORDER BY recorded_at")
        assert audit["action"].to_list() == ["load", "load", "refresh"]
        assert set(audit["run_id"]) == {"test", "night-1"} and audit["run_user"].to_list()[-1] == "someone@chu"
        assert audit["os_user"].null_count() == 0
        assert set(audit["key_id"]) == {keys.key_id(wh.key_fingerprint())}
        assert set(audit["code_version"]) == {code_version()}
        deliveries = wh.read_sql("SELECT a.action, d.centre, d.delivery_date, d.content_sha256 FROM audit_delivery d "
                              "JOIN audit_log a USING (audit_id) ORDER BY a.recorded_at, d.centre")
        current = wh.current_deliveries()
        sha = dict(zip(current["centre"], current["content_sha256"]))
        assert deliveries.filter(pl.col("action") == "load")["centre"].to_list() == ["nice", "lyon"]
        assert deliveries.filter(pl.col("action") == "refresh")["centre"].to_list() == ["lyon", "nice"]
        assert all(sha[c] == s for c, s in zip(deliveries["centre"], deliveries["content_sha256"]))
        assert set(deliveries["delivery_date"]) == {DAY1}


# -- the command line --------------------------------------------------------------------------


def test_the_rekey_command_takes_its_keys_from_the_environment_only(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from clms_etl.cli import app

    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    with Warehouse(url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        links = _links(wh)
    mapping = tmp_path / "centres_ids.csv"
    twin_mapping().write_csv(mapping)
    monkeypatch.setenv("CLMS_WAREHOUSE_URL", url)
    monkeypatch.setenv(keys.ENV_KEY, OTHER_KEY.decode())
    runner = CliRunner()
    refused = runner.invoke(app, ["warehouse", "rekey", "--mapping", str(mapping)])
    assert refused.exit_code == 1 and keys.ENV_OLD_KEY in refused.output and "Traceback" not in refused.output
    old_file = tmp_path / "old.key"
    old_file.write_text(TEST_KEY.decode() + "\n")
    monkeypatch.setenv(keys.ENV_OLD_KEY_FILE, str(old_file))
    done = runner.invoke(app, ["warehouse", "rekey", "--mapping", str(mapping)])
    assert done.exit_code == 0, done.output
    assert TEST_KEY.decode() not in done.output and OTHER_KEY.decode() not in done.output
    with Warehouse(url) as wh:
        assert keys.matches(OTHER_KEY, wh.key_fingerprint())
        assert _links(wh) == links
        assert wh.audit_log()["run_id"][0] == "cli"
    again = runner.invoke(app, ["warehouse", "rekey", "--mapping", str(mapping)])  # the old key is no longer it
    assert again.exit_code == 1 and "is not the warehouse's key" in again.output


@pytest.mark.parametrize("key", [b"k" * 20, b"long key " * 10])  # a short key padded, a long one hashed (RFC 2104)
def test_the_batch_hmac_equals_hmac_for_every_message_of_a_generator(key):
    import hashlib
    import hmac

    messages = [f"NIC-{i:06d}".encode() for i in range(500)] + [b"", "Nîmes-é".encode()]
    digests = keys.hmac_sha256_each(key, (m for m in messages), prefix=b"nice:")
    assert digests == [hmac.new(key, b"nice:" + m, hashlib.sha256).digest() for m in messages]
    assert keys.hmac_sha256_each(key, iter(())) == []
