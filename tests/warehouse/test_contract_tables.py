"""The warehouse's canonical tables, created on each backend, are the contract's: the catalog gives
back its comments and one CHECK per code list, range and pseudonym, and the database refuses a
value outside them (the last guard when a reader or validation bug lets one through)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from clms_etl import contract
from clms_etl.warehouse import Warehouse, schema
from tests.warehouse.test_schema import _comments

PSEUDONYM = "P" + "0" * 20


def _expected_checks(spec: contract.Table) -> dict[str, str]:
    """Constraint name -> its column(s), as the naming convention ck_<table>_<name> spells them."""
    out = {}
    for column in spec.columns:
        for kind, present in (("code", column.allowed), ("range", column.has_range), ("pseudonym", column.pseudonym)):
            if present:
                out[f"ck_{spec.name}_{column.name}_{kind}"] = column.name
    out.update({f"ck_{spec.name}_{name}": condition for name, condition in spec.checks})
    return out


def _catalog_checks(wh: Warehouse, table: str) -> list[tuple[str, str]]:
    """(name, condition) of every CHECK constraint of ``table`` as the backend's catalog holds it."""
    if wh.backend == "duckdb":  # DuckDB keeps no constraint names: its own, with the expression
        sql = ("SELECT constraint_name, expression FROM duckdb_constraints() "
               f"WHERE constraint_type = 'CHECK' AND table_name = '{table}'")
    else:
        sql = ("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
               f"WHERE contype = 'c' AND conrelid = 'public.{table}'::regclass")
    return list(wh.read_sql(sql).iter_rows())


def _value(column: contract.Column):
    """A value the column accepts."""
    if column.pseudonym:
        return PSEUDONYM
    if column.allowed:
        return column.allowed[0]
    return {sa.Text: "x", sa.Date: dt.date(2020, 1, 1), sa.Boolean: True}.get(
        schema._SA_TYPES[column.dtype], 1 if column.min is None else column.min + (1 if column.min_exclusive else 0))


def _row(spec: contract.Table) -> dict:
    """The smallest row the table accepts: its keys and NOT NULL columns (its parent's key where it
    has a parent), and its delivery."""
    row = {c.name: _value(c) for c in spec.columns if not c.nullable or c.name in spec.key}
    if spec.parent:
        column, parent, parent_column = spec.parent
        row[column] = _row(contract.TABLES[parent])[parent_column]
    return {**row, contract.DELIVERY_COLUMN.name: "d"}


def _outside(column: contract.Column):
    if column.allowed:
        return max(column.allowed) + 10 if isinstance(column.allowed[0], int) else "not_a_code"
    if column.pseudonym:
        return "not-a-pseudonym"
    return column.max + 1 if column.max is not None else column.min - 1


def _insert(wh: Warehouse, table: str, row: dict) -> None:
    """Insert ``row`` (with its parent row first) in a transaction that is rolled back."""
    spec = contract.TABLES[table]
    with wh.engine.connect() as conn:
        with conn.begin() as transaction:
            if spec.parent:
                conn.execute(schema.table(spec.parent[1]).insert(), _row(contract.TABLES[spec.parent[1]]))
            conn.execute(schema.table(table).insert(), row)
            transaction.rollback()


GUARDED = [(t, c) for t, s in contract.TABLES.items() for c in s.columns if c.allowed or c.has_range or c.pseudonym]


def test_every_code_list_range_and_pseudonym_of_the_contract_is_a_declared_check():
    for name, spec in contract.TABLES.items():
        declared = {str(c.name) for c in schema.table(name).constraints if isinstance(c, sa.CheckConstraint)}
        assert declared == set(_expected_checks(spec)), name


def test_the_catalog_holds_the_contracts_comments_and_checks(warehouse_url):
    with Warehouse(warehouse_url) as wh:
        wh.create()
        comments = _comments(wh)
        for name, spec in contract.TABLES.items():
            assert {c.name: comments.get((name, c.name)) for c in spec.columns} == \
                {c.name: c.comment for c in spec.columns}, name
            catalog = _catalog_checks(wh, name)
            expected = _expected_checks(spec)
            assert len(catalog) == len(expected), (name, catalog)
            if wh.backend == "postgresql":
                assert {n for n, _ in catalog} == set(expected), name
            for constraint_name, column in expected.items():  # each check reads its column
                if constraint_name.endswith(("_code", "_range", "_pseudonym")):
                    assert any(column in condition for _, condition in catalog), (name, constraint_name)


def test_the_database_refuses_a_value_outside_the_contract(warehouse_url):
    accepted, refused = [], []
    with Warehouse(warehouse_url) as wh:
        wh.create()
        for table, column in GUARDED:
            good = _row(contract.TABLES[table])
            _insert(wh, table, good)  # the row itself is accepted: a refusal below is the bad value
            try:
                _insert(wh, table, {**good, column.name: _outside(column)})
            except sa.exc.DBAPIError as error:
                refused.append(f"{table}.{column.name}")
                assert "check" in str(error.orig).lower(), error
            else:
                accepted.append(f"{table}.{column.name}")
    assert not accepted and len(refused) == len(GUARDED) > 40
