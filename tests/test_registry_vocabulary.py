"""Nothing narrower than the registry: no suite or schema names a centre; their centre lists are the
registry's (``clms_etl/data/centres.toml`` and a drop folder's ``centres.toml``, as scale deliveries carry)."""

from __future__ import annotations

import ast
import json
import shutil
import tomllib
import unicodedata
from pathlib import Path

from clms_etl.centres import centre_names
from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.expectations import BASE, RESULTS, load_suites, run_expectations
from tests.warehouse.test_result_expectations import twin_warehouse_path, write_analyses  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
# Where vocabularies live: the suites and schemas (validations/), the contract, the library outside the synthetic
# generator (which writes the twin's own centres) and the readers (one module per format, named after
# the centre that first used it), and the Dagster layer.
SCANNED = [*(ROOT / "validations").rglob("*.json"), *(ROOT / "validations").rglob("*.py"),
           ROOT / "clms_etl" / "data" / "contract.toml",
           *(p for p in (ROOT / "clms_etl").rglob("*.py") if not {"synth", "readers"} & set(p.parts)),
           *(ROOT / "assets").rglob("*.py")]
EXTRA = "centre05-nice"  # a scale delivery's centre, declared by the drop folder's centres.toml


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).strip().lower()


def _strings(path: Path):
    if path.suffix in (".json", ".toml"):
        def walk(value):
            if isinstance(value, str):
                yield value
            elif isinstance(value, dict):
                for k, v in value.items():
                    yield k
                    yield from walk(v)
            elif isinstance(value, list):
                for v in value:
                    yield from walk(v)
        text = path.read_text(encoding="utf-8")
        yield from walk(json.loads(text) if path.suffix == ".json" else tomllib.loads(text))
        return
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def test_no_suite_schema_or_library_code_list_names_a_centre():
    names = {_fold(n) for n in centre_names()}
    found = []
    for path in SCANNED:
        for text in _strings(path):
            folded = _fold(text)
            # a literal that is a centre's name, or one quoted inside SQL ('nice')
            if folded in names or any(f"'{n}'" in folded for n in names):
                found.append(f"{path.relative_to(ROOT)}: {text!r}")
    assert SCANNED and not found, "centre names written where the registry should be read:\n" + "\n".join(found)


def _registry(tmp_path: Path) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "centres.toml").write_text(f'[centres.{EXTRA}]\nformat = "nice"\n', encoding="utf-8")
    return drop


def test_every_centre_list_of_the_suites_is_the_registry_with_the_drop_folders_centres(tmp_path):
    drop = _registry(tmp_path)
    lists = []
    for scope in (BASE, RESULTS):
        for table, doc in load_suites(scope=scope, drop_folder=drop).items():
            for e in doc["expectations"]:
                if e["kwargs"].get("column") == "centre" and "value_set" in e["kwargs"]:
                    lists.append((table, e["kwargs"]["value_set"]))
    assert lists  # table3 checks its centres
    for table, values in lists:
        assert set(values) >= {*centre_names(), EXTRA}, table


def test_table3_of_a_centre_only_the_drop_folder_declares_passes_its_suite(twin_warehouse_path, tmp_path):  # noqa: F811
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(twin_warehouse_path, path)
    drop = _registry(tmp_path)
    with Warehouse(f"duckdb:///{path}") as wh:
        write_analyses(wh)
        with wh.engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE analytics.table3 SET centre = '{EXTRA}' WHERE case_no = "
                                 "(SELECT MIN(case_no) FROM analytics.table3 WHERE centre IS NOT NULL)")
        scale = run_expectations(wh, scope=RESULTS, tables=["table3"], data_docs_dir=False, drop_folder=drop)
        packaged = run_expectations(wh, scope=RESULTS, tables=["table3"], data_docs_dir=False,
                                    drop_folder=tmp_path / "no-registry-here")
    assert scale.success, scale.summary()
    # a centre the registry does not know is still refused
    assert [o.column for o in packaged.critical_failures] == ["centre"], packaged.summary()
