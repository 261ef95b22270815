"""docs/warehouse.md is generated from the schema, and its example queries run on the demo warehouse."""

from __future__ import annotations

import pytest

from clms_etl.warehouse import Warehouse, analytics, schema
from clms_etl.warehouse.docs import DOC_PATH, example_sql, generate
from tests.warehouse.synthetic import SyntheticDelivery
from tests.warehouse.helpers import DAY2, delivery_files, load_twin, queries_frame, twin


def test_the_data_dictionary_is_up_to_date():
    assert DOC_PATH.read_text(encoding="utf-8") == generate(), \
        "docs/warehouse.md is stale: run `.venv/bin/python -m clms_etl.warehouse.docs`"


def test_the_data_dictionary_covers_every_table_column_and_view():
    text = generate()
    for name, table in schema.metadata.tables.items():
        assert f"### {name}\n" in text
        for column in table.columns:
            assert f"| `{column.name}` |" in text
    for view in analytics.VIEWS:
        assert f"### analytics.{view.name}\n" in text
    assert len(example_sql()) >= 8


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo warehouse: the twin cohort of the synthetic deliveries, with a few data queries."""
    root = tmp_path_factory.mktemp("demo")
    with Warehouse(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        wh.create()
        load_twin(wh, root)
        nimes = twin()["nimes"]
        queries = queries_frame([{"centre": "nimes", "delivery_date": DAY2, "file": "nimes_dossiers.txt", "row": 3,
                                  "field": "Taille", "value": "?", "rule": "missing_value", "severity": "warning",
                                  "message": "Taille non renseignée."}])
        wh.load_delivery("nimes", DAY2, delivery_files(root, "nimes", DAY2),
                         SyntheticDelivery("nimes", DAY2, nimes.accepted, queries=queries), "demo", expectations=False)
        yield wh


@pytest.mark.parametrize("query", example_sql(), ids=lambda q: q.name)
def test_example_query_runs_on_the_demo_warehouse(demo, query):
    result = demo.read_sql(query.sql)
    assert result.height > 0, query.name
