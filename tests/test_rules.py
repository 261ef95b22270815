"""The rule registry (clms_etl/data/rules.toml): every rule any reader, screen or validation can
raise is declared there once, with its severity; one defect is one rule in every centre and one
query in the list."""

from __future__ import annotations

import ast
import shutil
import string
import tomllib
from pathlib import Path

import polars as pl
import pytest

from clms_etl import rules
from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.centre_import import read_and_validate
from clms_etl.readers.engine import reader
from clms_etl.synth.generate import generate
from tests.conftest import TWIN_DATE
from tests.rule_checks import registry_breaches
from tests.warehouse.helpers import TEST_KEY
from validations.canonical import RULES, SAMPLE_RULES

ROOT = Path(__file__).parents[1]
montpellier = reader("montpellier")  # the engine on clms_etl/data/formats/montpellier.toml
# calls whose first argument is a rule id (the Nîmes issue, pandera checks named after their rule)
FIRST_ARGUMENT_IS_A_RULE = {"_issue", "severity", "rule", "_check", "_duplicates"}


def _rule_literals() -> dict[str, list[str]]:
    """Rule id -> where it is written, for every string in a rule position of the library and
    validations: ``rule=``, the rule argument of ``Cells.error`` / ``flag`` / ``_issue``, a
    pandera check named after its rule, a ``*rule*`` variable or constant. An f-string in such
    a place is reported as ``<built at run time>``."""
    found: dict[str, list[str]] = {}
    files = [*ROOT.glob("clms_etl/**/*.py"), *ROOT.glob("validations/**/*.py")]
    for path in files:
        if "synth" in path.parts or path.name == "canonical.py":  # canonical: its RULES, checked below
            continue
        where = path.relative_to(ROOT).as_posix()
        mapped_checks = path.name == "lyon.py" and "structural" in path.parts  # check names -> RULES values
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            places = []
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                places += [kw.value for kw in node.keywords if kw.arg == "rule"]
                if name == "Check" and not mapped_checks:
                    places += [kw.value for kw in node.keywords if kw.arg == "name"]
                if name == "error" and len(node.args) >= 3:
                    places.append(node.args[2])
                if name == "_FileFailure" and len(node.args) >= 3:  # a laboratory file that cannot be read
                    places.append(node.args[2])
                if name == "flag" and len(node.args) >= 5:
                    places.append(node.args[4])
                if name in FIRST_ARGUMENT_IS_A_RULE and node.args and not mapped_checks:
                    places.append(node.args[0])
            elif isinstance(node, ast.Assign):
                pairs = [(t, node.value) for t in node.targets]
                if isinstance(node.targets[0], ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(node.targets[0].elts, node.value.elts))  # rule, column = "...", None
                for target, value in pairs:
                    named = target.id if isinstance(target, ast.Name) else getattr(target, "attr", "")
                    if ("rule" in named.lower() and named != "RULES"
                            and isinstance(value, (ast.Constant, ast.IfExp, ast.JoinedStr))):
                        places.append(value)
            for place in places:
                for leaf in ast.walk(place):
                    if isinstance(leaf, ast.JoinedStr):
                        found.setdefault("<built at run time>", []).append(f"{where}:{leaf.lineno}")
                    elif isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                        found.setdefault(leaf.value, []).append(f"{where}:{leaf.lineno}")
    for rule in (*RULES, *SAMPLE_RULES):
        found.setdefault(rule, []).append("validations/canonical.py")
    for rule, where in _declared_rules().items():
        found.setdefault(rule, []).extend(where)
    return found


def _declared_rules() -> dict[str, list[str]]:
    """Rule id -> where it is written, for every ``rule = "..."`` of the data files (a format's
    checks: ``data/formats/molecular.toml``), at any depth."""
    found: dict[str, list[str]] = {}

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "rule" and isinstance(value, str):
                    found.setdefault(value, []).append(where)
                else:
                    walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    for path in ROOT.glob("clms_etl/data/**/*.toml"):
        walk(tomllib.loads(path.read_text(encoding="utf-8")), path.relative_to(ROOT).as_posix())
    return found


def test_every_rule_id_written_in_the_library_and_validations_is_registered():
    unregistered = {rule: where for rule, where in _rule_literals().items() if rule not in rules.registry()}
    assert unregistered == {}


def test_every_rule_id_declared_in_the_data_files_is_registered():
    declared = _declared_rules()
    assert "cn_type_mismatch" in declared  # (the laboratory's checks are data)
    assert {rule: where for rule, where in declared.items() if rule not in rules.registry()} == {}


def test_every_registered_rule_is_raised_somewhere():
    assert sorted(set(rules.registry()) - set(_rule_literals())) == []


def test_each_rule_has_a_severity_a_kahn_category_french_and_english_messages_and_what_to_do():
    for rule in rules.registry().values():
        assert rule.severity in (rules.ERROR, rules.WARNING) and rule.category in rules.CATEGORIES, rule
        assert all(len(text) >= 8 for text in (rule.label, rule.message_fr, rule.message_en, rule.action)), rule
        slots = {name for text in (rule.message_fr, rule.message_en)
                 for _, name, _, _ in string.Formatter().parse(text) if name}
        fr = {name for _, name, _, _ in string.Formatter().parse(rule.message_fr) if name}
        assert slots == fr, f"{rule.id}: the English message names other values than the French one"
    assert {r.category for r in rules.registry().values()} == set(rules.CATEGORIES)


def test_an_unregistered_rule_is_a_bug_named_at_once_not_a_query():
    from clms_etl.readers.base import ReadContext

    ctx = ReadContext("nice", Path("."), TWIN_DATE, TEST_KEY)
    with pytest.raises(rules.UnknownRule, match="implausible_age"):
        ctx.query(file="x.xlsx", rule="implausible_age", message="…")
    with pytest.raises(rules.UnknownRule, match="out_of_range"):
        ctx.extend_queries(pl.DataFrame({"file": ["x"], "rule": ["out_of_range"], "message": ["…"]}))


@pytest.fixture(scope="module", params=[1, 3])
def defective_drop(request, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp(f"defects{request.param}")
    generate(root, seed=request.param, defect_rate=0.5, delivery_date=TWIN_DATE)
    return root


def test_the_twin_with_defects_gives_registered_rules_with_the_registrys_severity_one_query_per_problem(
        defective_drop):
    registry = load_registry(defective_drop)
    seen = set()
    for name, centre in registry.items():
        imported = read_and_validate(centre, latest_delivery(defective_drop, name), TEST_KEY)
        assert imported.failure is None, imported.failure
        assert registry_breaches(imported.queries) == [], name
        seen |= set(imported.queries["rule"])
    assert len(seen) > 10  # the defects were really raised


# --- one defect, one rule in every centre; one cell, one query ----------------------------------

def _montpellier(twin_drop: Path, tmp_path: Path) -> tuple[Path, list[list[str]]]:
    drop = tmp_path / "drop"
    shutil.copytree(twin_drop, drop)
    (folder,) = (drop / "montpellier").iterdir()
    path = folder / montpellier.FILE
    return path, [line.split(";") for line in path.read_bytes().decode("cp1252").split("\r\n")]


def _write(path: Path, rows: list[list[str]]) -> None:
    path.write_bytes("\r\n".join(";".join(r) for r in rows).encode("cp1252"))


def _import(path: Path, centre: str):
    drop = path.parents[2]
    return read_and_validate(load_registry(drop)[centre], latest_delivery(drop, centre), TEST_KEY)


def test_a_blank_death_date_in_montpellier_is_one_query_on_its_cell(twin_drop, tmp_path):
    path, rows = _montpellier(twin_drop, tmp_path)
    header = rows[0]
    dead = next(i for i, r in enumerate(rows) if len(r) == len(header) and r[header.index("STATUT_VITAL")] == "DCD"
                and r[header.index("DATE_DC")])
    rows[dead][header.index("DATE_DC")] = ""
    _write(path, rows)
    queries = _import(path, "montpellier").queries
    on_cell = queries.filter(pl.col("row") == dead + 1, pl.col("field") == "DATE_DC")
    assert on_cell.select("rule", "severity").rows() == [("event_date_missing", "error")]
    assert registry_breaches(queries) == []


def test_a_birth_after_the_diagnosis_is_birth_after_diagnosis_in_montpellier_as_in_validation(twin_drop, tmp_path):
    path, rows = _montpellier(twin_drop, tmp_path)
    header = rows[0]
    rows[1][header.index("DDN")] = "01/01/2030"
    _write(path, rows)
    queries = _import(path, "montpellier").queries.filter(pl.col("row") == 2)
    assert queries.filter(pl.col("field") == "DDN")["rule"].to_list() == ["birth_after_diagnosis"]
    assert "implausible_age" not in queries["rule"].to_list()


@pytest.mark.parametrize("synonym, unified", [
    ("implausible_age", "birth_after_diagnosis"), ("last_news_for_dead_patient", "last_news_of_dead_patient"),
    ("last_news_differs_from_death", "last_news_of_dead_patient"), ("missing_surgery_date", "surgery_date_missing"),
    ("missing_event_date", "event_date_missing"), ("out_of_range", "number_out_of_range"),
    ("unknown_patient", "orphan_row"), ("orphan_repeat_row", "orphan_row"),
    ("site_without_metastasis", "metastasis_site_without_metastasis"),
    ("cause_without_death", "death_cause_without_death"), ("metastasis_site_missing", "metastasis_without_site"),
    ("unknown_metastasis_site", "metastasis_site_other"), ("vital_status_contradiction", "vital_status_inconsistent"),
    ("missing_event_kind", "required_value_missing"),
])
def test_a_centre_specific_synonym_is_gone_for_the_one_registered_rule(synonym, unified):
    assert synonym not in rules.registry() and unified in rules.registry()
    assert synonym not in _rule_literals()


def test_docs_rules_page_is_the_registry():
    """docs/rules.md is generated from the registry (CLMS_UPDATE_SNAPSHOTS=1 rewrites it)."""
    import os

    page = ROOT / "docs" / "rules.md"
    if os.environ.get("CLMS_UPDATE_SNAPSHOTS") == "1":
        page.write_text(rules.registry_markdown(), encoding="utf-8")
    assert page.read_text(encoding="utf-8") == rules.registry_markdown()
