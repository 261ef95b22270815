"""Scan every byte a run wrote for a delivery's identifiers and for the pseudonym key.

Files are read as bytes and decoded as UTF-8, Latin-1 and UTF-16; containers are opened and
their members scanned too (zip — xlsx —, gzip, zlib blobs in SQLite — Dagster's snapshots —,
Parquet, SQLite and DuckDB databases dumped value by value), so nothing hides by compression.
Binary bytes (a database's pages, its WAL) are read only where they hold a run of text long
enough to be written by a person or a program: compressed bytes spell random short words.

Identifiers are matched the way they could leak: names as whole words (case and accents
ignored), hospital numbers as their whole words, birth dates in the spellings a French chart uses.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import re
import shutil
import sqlite3
import tempfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

MONTHS_FR = ["janvier", "fevrier", "mars", "avril", "mai", "juin", "juillet", "aout", "septembre", "octobre",
             "novembre", "decembre"]  # folded: no accents
MONTH_NUMBER = {name: i for i, name in enumerate(MONTHS_FR, 1)} | {
    "janv": 1, "fevr": 2, "fev": 2, "avr": 4, "juil": 7, "sept": 9, "oct": 10, "nov": 11, "dec": 12}
DATE_CANDIDATES = [
    (re.compile(r"(?<!\d)(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?!\d)"), "dmy"),
    (re.compile(r"(?<!\d)(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?!\d)"), "ymd"),
    (re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"), "ymd"),
    (re.compile(r"(?<!\d)(\d{1,2})(?:er)? ([a-z]+)\.? (\d{4})(?!\d)"), "d month y"),
]


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def dates_in(folded: str) -> set[dt.date]:
    """Every calendar date written in ``folded`` text, in the spellings a French chart uses."""
    found = set()
    for pattern, order in DATE_CANDIDATES:
        for m in pattern.finditer(folded):
            a, b, c = m.groups()
            try:
                if order == "dmy":
                    found.add(dt.date(int(c), int(b), int(a)))
                elif order == "ymd":
                    found.add(dt.date(int(a), int(b), int(c)))
                elif b in MONTH_NUMBER:
                    found.add(dt.date(int(c), MONTH_NUMBER[b], int(a)))
            except ValueError:
                pass
    return found


@dataclass
class Secrets:
    """What must never be found: a delivery's identifiers and the pseudonym key."""

    names: set[str] = field(default_factory=set)
    local_ids: set[str] = field(default_factory=set)
    birth_dates: set[dt.date] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)

    def words(self) -> dict[str, list[tuple[tuple[str, ...], str, str]]]:
        """First folded word -> [(the following words, kind, identifier)] for names and hospital
        numbers. A one-word name matches alone; a name of several words (``Dos Santos``, ``Le
        Gall``) matches as the whole sequence, since its parts alone are ordinary words."""
        out: dict = {}
        for name in self.names:
            parts = tuple(re.findall(r"\w+", fold(name)))
            if parts and (len(parts) > 1 or len(parts[0]) >= 3):
                out.setdefault(parts[0], []).append((parts[1:], "name", name))
        for local_id in self.local_ids:  # as words too: a hyphen or a space splits ``NIC-004217``
            parts = tuple(re.findall(r"\w+", fold(local_id)))
            if parts:
                out.setdefault(parts[0], []).append((parts[1:], "local_id", local_id))
        return out

    def key_spellings(self) -> set[str]:
        out = set()
        for key in self.keys:
            raw = key.encode()
            out |= {fold(s) for s in (key, raw.hex(), base64.b64encode(raw).decode(),
                                      base64.urlsafe_b64encode(raw).decode().rstrip("="))}
        return out


@dataclass(frozen=True)
class Hit:
    where: str
    kind: str
    what: str
    context: str


def find(where: str, text: str, secrets: Secrets, words: dict | None = None,
         keys: set[str] | None = None) -> list[Hit]:
    folded = fold(text)
    words = secrets.words() if words is None else words
    keys = secrets.key_spellings() if keys is None else keys
    hits = []
    tokens = list(re.finditer(r"\w+", folded))
    for i, m in enumerate(tokens):
        for rest, kind, what in words.get(m.group(), ()):
            if all(i + j + 1 < len(tokens) and tokens[i + j + 1].group() == part for j, part in enumerate(rest)):
                hits.append(Hit(where, kind, what, folded[max(0, m.start() - 60):m.end() + 60]))
    for day in dates_in(folded) & secrets.birth_dates:
        hits.append(Hit(where, "birth_date", day.isoformat(), ""))
    for key in keys:
        if key in folded:
            hits.append(Hit(where, "key", "<the pseudonym key>", ""))
    return hits


# Text is read whole (a name alone in a database cell is still a name). Binary bytes (compressed
# pages, numbers) decoded as Latin-1 are full of random short "words": in a night's runs.db, "h~leon>¶t§e," spelled a twin's first name. In binary data only runs of
# 32+ characters of text are read, and only text characters count: ASCII, whole UTF-8 sequences,
# Latin-1 letters (not its symbols). Random bytes almost never make such a run (Latin-1, the
# widest: 0.625^32, one run in 10 MB); JSON, log lines and messages in a page always do.
BINARY = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")  # (ESC is text: coloured logs)
TEXT_RUN_UTF8 = re.compile(
    rb"(?:[\t\n\r\x20-\x7e]|[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}){32,}")
TEXT_RUN_LATIN1 = re.compile(rb"[\t\n\r\x20-\x7e\xc0-\xd6\xd8-\xf6\xf8-\xff]{32,}")
TEXT_RUN_UTF16 = re.compile(r"[\t\n\r\x20-\x7e\xc0-\xd6\xd8-\xf6\xf8-\u024f]{32,}")


def _texts(data: bytes) -> list[str]:
    if not BINARY.search(data):
        return [data.decode("utf-8", "ignore"), data.decode("latin-1")]
    texts = ["\n".join(m.decode("utf-8", "replace") for m in TEXT_RUN_UTF8.findall(data)),
             "\n".join(m.decode("latin-1") for m in TEXT_RUN_LATIN1.findall(data))]
    if data.count(b"\x00") > len(data) // 8:  # UTF-16 text has a NUL in every other byte
        for encoding in ("utf-16-le", "utf-16-be"):
            texts.append("\n".join(TEXT_RUN_UTF16.findall(data[:len(data) // 2 * 2].decode(encoding, "ignore"))))
    return texts


def _dump_sqlite(path: Path) -> list[tuple[str, bytes]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        shutil.copy(path, copy)
        con = sqlite3.connect(copy)
        try:
            tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
            for table in tables:
                for i, row in enumerate(con.execute(f'select * from "{table}"')):
                    for value in row:
                        if isinstance(value, bytes):
                            out.append((f"{table}[{i}]", value))
                        elif isinstance(value, str):
                            out.append((f"{table}[{i}]", value.encode()))
        finally:
            con.close()
    return out


def _dump_duckdb(path: Path) -> list[tuple[str, bytes]]:
    import duckdb

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        shutil.copy(path, copy)
        con = duckdb.connect(str(copy), read_only=True)
        try:
            tables = con.sql("select table_schema, table_name from information_schema.tables").fetchall()
            for schema, table in tables:
                rows = con.sql(f'select * from "{schema}"."{table}"').fetchall()
                out.append((f"{schema}.{table}", "\n".join(map(repr, rows)).encode()))
        finally:
            con.close()
    return out


# Pictures and fonts: their bytes decode to random letters; only a PNG's text chunks carry text.
OPAQUE = (b"GIF8", b"\xff\xd8\xff", b"OTTO", b"\x00\x01\x00\x00", b"wOFF", b"wOF2", b"\x00\x00\x01\x00")
PNG = b"\x89PNG\r\n\x1a\n"


def _png_text(data: bytes) -> bytes:
    out, at = [], 8
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8]
        body = data[at + 8:at + 8 + length]
        if kind in (b"tEXt", b"iTXt"):
            out.append(body)
        elif kind == b"zTXt":
            out.append(zlib.decompress(body.split(b"\x00", 1)[1][1:]))
        at += 12 + length
    return b"\n".join(out)


def _members(name: str, data: bytes, depth: int = 0) -> list[tuple[str, bytes]]:
    """``data`` and everything it contains, each with where it was found."""
    if data.startswith(OPAQUE):
        return []
    if data.startswith(PNG):
        return [(f"{name}!text", _png_text(data))]
    # A compressed container's own bytes are noise: only what it holds is read (below).
    compressed = data[:4] in (b"PK\x03\x04", b"PAR1") or data[:2] == b"\x1f\x8b" or name.endswith(".duckdb")
    found = [] if compressed else [(name, data)]
    if depth > 3:
        return found
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for member in z.namelist():
                    found += _members(f"{name}!{member}", z.read(member), depth + 1)
        except zipfile.BadZipFile:
            found = [(name, data)]  # not a readable container after all: its bytes as they are
    elif data[:2] == b"\x1f\x8b":
        try:
            found += _members(f"{name}!gunzip", gzip.decompress(data), depth + 1)
        except OSError:
            found = [(name, data)]
    elif data[:1] == b"\x78":  # zlib (Dagster compresses its snapshots)
        try:
            inflated = zlib.decompress(data)
            found = _members(f"{name}!zlib", inflated, depth + 1)  # the compressed bytes themselves are noise
        except zlib.error:
            pass
    elif data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        found.append((f"{name}!rows", repr(table.to_pylist()).encode()))
    return found


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def scan_bytes(where: str, data: bytes, secrets: Secrets) -> list[Hit]:
    words, keys = secrets.words(), secrets.key_spellings()
    hits = []
    for inner, blob in _members(where, data):
        for text in _texts(blob):
            hits += find(inner, text, secrets, words, keys)
    return hits


def scan_files(roots: list[Path], secrets: Secrets) -> list[Hit]:
    """Every hit in every file under ``roots`` (databases also dumped value by value)."""
    hits: list[Hit] = []
    for root in roots:
        for path in files_under(root) if root.is_dir() else [root]:
            data = path.read_bytes()
            hits += scan_bytes(str(path), data, secrets)
            if data[:16] == b"SQLite format 3\x00":
                for where, value in _dump_sqlite(path):
                    hits += scan_bytes(f"{path}:{where}", value, secrets)
            elif path.suffix == ".duckdb":
                for where, value in _dump_duckdb(path):
                    hits += scan_bytes(f"{path}:{where}", value, secrets)
    return _unique(hits)


def scan_text(where: str, text: str, secrets: Secrets) -> list[Hit]:
    return _unique(find(where, text, secrets))


def _unique(hits: list[Hit]) -> list[Hit]:
    seen, out = set(), []
    for h in hits:
        if (h.where, h.kind, h.what) not in seen:
            seen.add((h.where, h.kind, h.what))
            out.append(h)
    return out
