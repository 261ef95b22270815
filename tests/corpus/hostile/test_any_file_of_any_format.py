"""Hostile files in every format of the registry: a delivery never ends in a traceback.

Each file kind of each centre's twin delivery is replaced, one at a time, by what the world
sends (nothing, half a file, noise, another encoding, a header alone or twice, a line of
megabytes). The import either goes through with every row accounted for, or stops with a
message that names the file — never an exception, never a Rust panic.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from clms_etl.centres import load_registry
from clms_etl.deliveries import delivery_dates, open_delivery
from clms_etl.centre_import import read_and_validate
from tests.conftest import TWIN_DATE
from tests.warehouse.helpers import TEST_KEY

REGISTRY = load_registry()


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    for end in (b"\r\n", b"\n", b"\r"):
        if end in data:
            return data.split(end), end
    return [data], b"\n"


def zero_bytes(data: bytes) -> bytes:
    return b""


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def noise(data: bytes) -> bytes:
    return random.Random(0).randbytes(max(len(data), 64))


def utf16_with_bom(data: bytes) -> bytes:
    for encoding in ("utf-8", "cp1252", "mac_roman"):
        try:
            return "\ufeff".encode("utf-16-le") + data.decode(encoding).encode("utf-16-le")
        except UnicodeDecodeError:
            continue
    return data


def header_only(data: bytes) -> bytes:
    lines, end = _lines(data)
    return lines[0] + end


def header_twice(data: bytes) -> bytes:
    lines, end = _lines(data)
    return end.join([lines[0], *lines])


def huge_line(data: bytes) -> bytes:
    lines, end = _lines(data)
    return end.join([*lines[:2], b"x" * 5_000_000, *lines[2:]])


MUTATIONS = [zero_bytes, truncated, noise, utf16_with_bom, header_only, header_twice, huge_line]


def file_kinds(delivery_path: Path) -> list[Path]:
    """One file of each kind (folder and suffix) in a delivery."""
    seen, out = set(), []
    for path in sorted(p for p in delivery_path.rglob("*") if p.is_file()):
        kind = (path.parent.relative_to(delivery_path).as_posix(), "".join(path.suffixes[-2:]))
        if kind not in seen:
            seen.add(kind)
            out.append(path.relative_to(delivery_path))
    return out




@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("centre", sorted(REGISTRY))
def test_a_hostile_file_ends_in_accounted_rows_or_a_message_naming_it(twin_drop, tmp_path, centre, mutation):
    drop = tmp_path / "drop"
    shutil.copytree(twin_drop / centre, drop / centre)
    [date] = delivery_dates(drop, centre)
    folder = drop / centre / date.isoformat()
    problems = []
    for relative in file_kinds(folder):
        path = folder / relative
        original = path.read_bytes()
        path.write_bytes(mutation(original))
        try:
            imported = read_and_validate(REGISTRY[centre], open_delivery(drop, centre, date), TEST_KEY)
        except BaseException as exc:  # noqa: BLE001 - a panic is exactly what must not escape
            problems.append(f"{relative}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        finally:
            path.write_bytes(original)
        if imported.failure is not None:
            if relative.name not in imported.failure or "Traceback" in imported.failure:
                problems.append(f"{relative}: message does not name the file: {imported.failure[:200]}")
        else:
            acc = imported.validated.accounting
            broken = acc.filter(acc["rows_read"] != acc["rows_accepted"] + acc["rows_quarantined"])
            if not broken.is_empty():
                problems.append(f"{relative}: rows lost {broken.to_dicts()}")
    assert not problems, "\n".join(problems)
