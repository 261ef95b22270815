"""The identifier scanner itself: it must find a name wherever a person or a program could read it,
and must not report the random letters that compressed or binary bytes decode to (a false alarm
fails the privacy audit as surely as a leak does)."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import zlib

from tests.privacy.scan import Secrets, scan_bytes, scan_files

SECRETS = Secrets(names={"Léon", "Dos Santos"}, local_ids={"NIC-004217"}, birth_dates={dt.date(1961, 3, 7)},
                  keys={"k-secret-key-0123456789"})

# Bytes as they stood in a Dagster runs.db page of a CI night (zlib-compressed snapshots): as
# Latin-1 they read "h~leon>¶t§e," — a whole word "leon" between symbols, in noise.
NOISE_FROM_A_RUNS_DB = bytes.fromhex("00f3e9017e68") + b"h~leon>\xb6t\xa7e,\xbf\xa1zga!\t" + bytes.fromhex("9c00ff1e")


def test_a_name_spelled_by_compressed_noise_is_not_a_hit():
    assert scan_bytes("runs.db", b"\x00" * 64 + NOISE_FROM_A_RUNS_DB + b"\x00" * 64, SECRETS) == []


def test_a_name_in_text_inside_binary_bytes_is_a_hit():
    # a deleted row left in a database's free page: its text among record headers
    page = b"\x00\x00\x0d\x05\x17\x21" + '{"last_name": "Léon", "local_id": "NIC-004217"}'.encode() + b"\x00\x07\x81"
    kinds = {(h.kind, h.what) for h in scan_bytes("index.db", b"\xff\x00" * 500 + page + b"\x00" * 500, SECRETS)}
    assert kinds == {("name", "Léon"), ("local_id", "NIC-004217")}


def test_a_short_name_in_a_live_row_and_a_message_in_a_deleted_row_are_hits(tmp_path):
    db = tmp_path / "index.db"
    con = sqlite3.connect(db)
    con.execute("pragma secure_delete = off")  # SQLite's default: a deleted row stays in its free page
    con.execute("create table patient (last_name text, birth_date text)")
    con.execute("create table event_logs (event text)")
    con.execute("insert into patient values ('Léon', '1961-03-07')")  # read by the value dump
    con.execute("insert into event_logs values (?)", ('{"message": "Row 12 of NIC-004217.csv: bad margin"}',))
    con.commit()
    con.execute("delete from event_logs")  # no longer in the dump: found in the page's bytes
    con.commit()
    con.close()
    kinds = {(h.kind, h.what) for h in scan_files([db], SECRETS)}
    assert kinds == {("name", "Léon"), ("birth_date", "1961-03-07"), ("local_id", "NIC-004217")}


def test_a_name_in_a_zlib_blob_of_a_sqlite_file_is_a_hit(tmp_path):
    db = tmp_path / "runs.db"
    con = sqlite3.connect(db)
    con.execute("create table snapshots (body blob)")
    con.execute("insert into snapshots values (?)", (zlib.compress(b'{"tags": {"patient": "Dos Santos"}}'),))
    con.commit()
    con.close()
    assert {h.what for h in scan_files([db], SECRETS)} == {"Dos Santos"}


def test_a_key_in_binary_bytes_is_a_hit():
    hits = scan_bytes("event_log", b"\x00\x9c" * 50 + b"CLMS_PSEUDONYM_KEY=k-secret-key-0123456789\x00", SECRETS)
    assert {h.kind for h in hits} == {"key"}


def test_megabytes_of_compressed_noise_give_no_hit():
    # the twin's names are short French names: many of them, in 4 MiB of incompressible bytes
    rng = random.Random(20261206)
    names = {"Léon", "Marie", "Jean", "Rémi", "Eva", "Noé", "Lou", "Paul", "Anne", "Hugo", "Inès", "Zoé",
             "Martin", "Bernard", "Petit", "Durand", "Moreau", "Simon", "Michel", "Roux", "Blanc", "Faure"}
    noise = rng.randbytes(4 << 20)
    assert scan_bytes("noise.db", noise, Secrets(names=names)) == []
