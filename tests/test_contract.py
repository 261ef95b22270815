"""The canonical contract (``clms_etl/data/contract.toml``) is the one declaration of every
canonical table and column: each artefact derived from it — the polars schemas, validation's pandera
models, the data dictionary, the Dagster column schemas — says exactly what it says, and a value
outside a declared code list or range is refused by validation. (The database side, on both
backends, is ``tests/warehouse/test_contract_tables.py``.)"""

from __future__ import annotations

import pytest

from assets.definitions import defs
from clms_etl import contract, model
from clms_etl.validate import validate
from clms_etl.warehouse.docs import generate
from tests.test_validate import changed, read_result
from validations import canonical

DATA_TABLES = tuple(contract.TABLES)


def test_the_contract_declares_the_eight_canonical_tables_with_their_provenance():
    assert contract.CLINICAL_TABLES == ("patient", "tumour", "surgery", "event")
    assert contract.MOLECULAR_TABLES == ("molecular_sample", "cn_segment", "variant", "fusion")
    for spec in contract.TABLES.values():
        names = [c.name for c in spec.columns]
        assert names[-4:] == ["row_id", "source_file", "source_sheet", "source_row"], spec.name
        assert len(set(names)) == len(names) and set(spec.key) <= set(names), spec.name
        assert all(c.comment for c in spec.columns), spec.name
        if spec.source == "centre":  # what a centre's data manager reads is French
            assert all(c.label for c in spec.columns if c.name not in contract.PROVENANCE_NAMES), spec.name


@pytest.mark.parametrize("table", DATA_TABLES)
def test_the_polars_schema_is_the_contracts(table):
    assert model.TABLES[table] == {c.name: c.dtype for c in contract.TABLES[table].columns}


@pytest.mark.parametrize("table", contract.CLINICAL_TABLES)
def test_the_pandera_model_is_the_contracts(table):
    schema = canonical.SCHEMAS[table]
    declared = contract.TABLES[table].columns
    columns = {n: c for n, c in schema.columns.items() if not n.startswith("ctx_")}
    assert list(columns) == [c.name for c in declared]
    for column in declared:
        model_column = columns[column.name]
        assert model_column.dtype.type == column.dtype, column.name
        assert model_column.title == column.label, column.name
        assert model_column.description == column.description(), column.name
        assert column.comment in model_column.description


def _outside(column: contract.Column):
    """A value the column's code list or range refuses."""
    if column.allowed:
        return max(column.allowed) + 10 if isinstance(column.allowed[0], int) else "not_a_code"
    if column.max is not None:
        return column.max + 1
    return column.min - 1


def _checked_by_validation(table: str) -> list[contract.Column]:
    skipped = canonical._NUMBERING | set(canonical.FILLED_BY_VALIDATION.get(table, ()))
    return [c for c in contract.TABLES[table].columns if (c.allowed or c.has_range) and c.name not in skipped]


CHECKED = [(t, c) for t in contract.CLINICAL_TABLES for c in _checked_by_validation(t)]
FIRST_ROW = {"patient": "pat1", "tumour": "tum1", "surgery": "sur1", "event": "evt1"}


@pytest.mark.parametrize(("table", "column"), CHECKED, ids=[f"{t}.{c.name}" for t, c in CHECKED])
def test_validation_refuses_a_value_outside_the_declared_code_list_or_range(table, column):
    value = _outside(column)
    validated = validate(read_result(changed({FIRST_ROW[table]: {column.name: value}})))
    expected = (canonical.CODE_RULES.get(column.name, "code_not_in_vocabulary") if column.allowed
                else canonical.RANGE_RULES[column.name][1 if column.max is not None else 0])
    queries = validated.queries.filter(row_id=FIRST_ROW[table], rule=expected)
    assert queries.height == 1 and queries["severity"][0] == "error", validated.queries
    assert validated.quarantined[table]["row_id"].to_list() == [FIRST_ROW[table]]


def test_the_clean_rows_pass_so_each_refusal_above_is_the_bad_value():
    validated = validate(read_result(changed()))
    assert validated.queries.is_empty()


def test_every_declared_range_of_a_chart_column_has_its_rules():
    ranged = {c.name for t, c in CHECKED if c.has_range}
    assert ranged == set(canonical.RANGE_RULES)


@pytest.mark.parametrize("table", DATA_TABLES)
def test_the_data_dictionary_lists_each_column_with_its_contract_facts(table):
    text = generate()
    section = text.split(f"\n### {table}\n", 1)[1].split("\n### ", 1)[0]
    assert contract.TABLES[table].comment in section
    for column in contract.TABLES[table].columns:
        row = next(line for line in section.splitlines() if line.startswith(f"| `{column.name}` |"))
        assert column.comment.replace("|", "\\|") in row
        assert f"| {column.label or ''} | {column.unit or ''} |" in row
        if column.allowed:
            assert ", ".join(f"`{v}`" for v in column.allowed) in row


@pytest.mark.parametrize(("asset", "stored"), [("centre_import", False), ("centre_warehouse", True),
                                                ("warehouse", True)])
def test_the_dagster_column_schema_of_each_warehouse_asset_is_the_contracts(asset, stored):
    import dagster as dg

    spec = defs.resolve_asset_graph().get(dg.AssetKey(asset))
    value = spec.metadata["dagster/column_schema"]
    columns = (value.schema if isinstance(value, dg.TableSchemaMetadataValue) else value).columns
    expected = [(f"{t}.{c.name}", c.description(), c.label)
                for t, s in contract.TABLES.items()
                for c in [*s.columns, *([contract.DELIVERY_COLUMN] if stored else [])]]
    assert [(c.name, c.description, c.tags.get("label_fr")) for c in columns] == expected
    assert all(c.description for c in columns)  # the Columns panel is never empty (issue #16)
    if stored:
        nullable = {c.name: c.constraints.nullable for c in columns}
        assert nullable["patient.patient_id"] is False and nullable["patient.sex"] is True


def test_the_great_expectations_hard_ranges_are_the_contracts():
    """A range the suites hold as critical is the contract's (an age validation accepts must not
    fail the night: the suite said 110 while validation allowed 120)."""
    from clms_etl.warehouse.expectations import load_suites

    suites = load_suites()
    for table, column in (("patient", "age_at_diagnosis_years"), ("tumour", "ki67_percent"), ("variant", "vaf")):
        declared = contract.TABLES[table].column(column)
        kwargs = next(e["kwargs"] for e in suites[table]["expectations"]
                      if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == column)
        assert (kwargs["min_value"], kwargs["max_value"]) == (declared.min, declared.max)


@pytest.mark.parametrize(("declared", "typo"), [
    ('codes = "SEX"', 'codes = "SEXES"'), ('unit = "cm"', 'unit = "mm"'), ('nullable = false', 'nulable = false'),
    ('alive = "vivant"', 'alive = "vivant", living = "vivant"'),
])
def test_a_contract_with_a_typo_is_refused_when_loaded(declared, typo):
    text = contract.CONTRACT_TEXT.replace(declared, typo, 1)
    assert text != contract.CONTRACT_TEXT
    with pytest.raises((ValueError, TypeError)):
        contract.parse(text)
