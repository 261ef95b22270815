"""What a user who clones the repository needs is in it: the centres' delivery formats and the published
figures the tests compare with live in ``docs/``, and no document sends the reader outside the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.paper import PAPER, PAPER_PATH

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def test_the_tests_read_the_published_figures_from_the_repository():
    assert PAPER_PATH == ROOT / "docs" / "reference" / "clms_paper.json"
    assert PAPER["cohort"]["included"] == 79 and "table1" in PAPER and "molecular" in PAPER
    assert "Provenance" in (ROOT / "docs" / "reference" / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("in_repo, shared", [
    ("docs/reference/clms_paper.json", "reference/clms_paper.json"),
    ("docs/centre_formats.md", "domain/centre_exports.md"),
    ("docs/formats_and_rules.md", "domain/formats_and_rules.md"),
])
def test_the_repository_copy_equals_the_team_working_copy_when_present(in_repo, shared):
    source = SHARED / shared
    if not source.exists():
        pytest.skip(f"{source} absent (a clone of the repository): the repository's copy is the reference")
    if in_repo.endswith(".json"):
        assert json.loads((ROOT / in_repo).read_text(encoding="utf-8")) == json.loads(source.read_text(encoding="utf-8"))
    else:
        # the repository's copy may carry an HTML comment saying where it comes from
        ours = re.sub(r"\n<!--.*?-->\n", "", (ROOT / in_repo).read_text(encoding="utf-8"), flags=re.S)
        assert ours == source.read_text(encoding="utf-8")


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "validations" / "README.md"]


def test_no_document_sends_the_reader_outside_the_repository():
    outside = [f"{doc.relative_to(ROOT)}: {line.strip()}" for doc in _documents()
               for line in doc.read_text(encoding="utf-8").splitlines() if re.search(r"(\.\./)+shared/|`shared/", line)]
    assert not outside, "\n".join(outside)


def test_every_relative_link_of_the_readme_and_docs_resolves_inside_the_repository():
    broken = []
    for doc in _documents():
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            path = (doc.parent / target).resolve()
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken
