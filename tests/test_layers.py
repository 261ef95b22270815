"""Layers point one way: library (``clms_etl``) <- ``validations`` <- Dagster layer (``assets``).

Every module's imports are read from its source (``ast``, imports inside functions included,
and module names given to ``importlib`` as strings). An ``if __name__ == "__main__":`` block is
an entry point, not a dependency of its module: it may import the layer above (the analyses'
declarations, say).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clms_etl", "assets", "validations")
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")

def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_main_block(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators))


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the module ``module``) imports, outside its ``__main__`` block."""
    tree = ast.parse(source)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    todo: list[ast.AST] = [n for n in tree.body if not _is_main_block(n)]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[:len(package) - node.level + 1], *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and _MODULE_NAME.match(node.value)):
            found.add(node.value)  # importlib.import_module("pkg.module") and module-name tables
        todo.extend(ast.iter_child_nodes(node))
    return found


def _imports() -> dict[str, set[str]]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out[_module_name(path)] = imported_modules(path.read_text(encoding="utf-8"), _module_name(path),
                                                       path.name == "__init__.py")
    return out


IMPORTS = _imports()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offenders(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    return {module: sorted(n for n in names if _within(n, forbidden))
            for module, names in sorted(IMPORTS.items())
            if _within(module, importers) and any(_within(n, forbidden) for n in names)}


def test_the_reader_of_imports_sees_function_level_relative_and_importlib_imports():
    source = ("import os\nfrom . import sibling\nfrom ..survival import km\n"
              "def f():\n    from dagster import asset\n    return importlib.import_module('assets.run')\n"
              "if __name__ == '__main__':\n    import clms_etl.analyses\n")
    found = imported_modules(source, "clms_etl.warehouse.schema")
    assert {"os", "clms_etl.warehouse.sibling", "clms_etl.survival.km", "dagster", "assets.run"} <= found
    assert "clms_etl.analyses" not in found


def test_the_library_knows_nothing_of_dagster_nor_of_the_dagster_layer():
    assert offenders(("clms_etl",), ("assets", "dagster", "dagster_webserver", "dagster_dg_cli")) == {}


def test_validations_import_neither_dagster_nor_the_dagster_layer():
    assert offenders(("validations",), ("assets", "dagster")) == {}


def test_the_warehouse_receives_result_tables_instead_of_importing_the_analyses():
    assert offenders(("clms_etl.warehouse",),
                     ("clms_etl.survival", "clms_etl.molecular", "clms_etl.report", "clms_etl.analyses")) == {}


def test_the_format_declarations_stand_below_the_readers_and_the_synthetic_writers():
    """The registry, the engine and the writers all load ``clms_etl.formats``; it loads none of them."""
    assert offenders(("clms_etl.formats",), ("clms_etl.readers", "clms_etl.synth", "clms_etl.centres")) == {}
    assert "clms_etl.formats" in IMPORTS["clms_etl.readers.engine"] | IMPORTS["clms_etl.synth.formats.declared"]


def test_the_library_does_not_import_validations():
    assert offenders(("clms_etl",), ("validations",)) == {}


def test_the_validate_step_checks_the_ruleset_validations_declares():
    """At run time too: importing the library's pipeline and validate step loads no validations
    module, validating then says what is missing, and importing validations.canonical declares it."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import clms_etl.centre_import, clms_etl.validate, clms_etl.identifiers\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'validations'], sorted(sys.modules)\n"
        "try:\n"
        "    clms_etl.validate.declared_ruleset()\n"
        "except RuntimeError as missing:\n"
        "    print(missing)\n"
        "import validations.canonical\n"
        "assert clms_etl.validate.declared_ruleset().schemas is validations.canonical.SCHEMAS\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no canonical validation declared" in done.stdout
