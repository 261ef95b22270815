"""Issue #16, the data stewards' Data Docs: one site for the warehouse and the analyses, every
validation listed in its index under the name of what ran it, nothing loaded from the internet,
and the same index drawn by headless Chromium with the network cut off.

Chromium: the fixture of tests/report/test_report_browser.py, skipped without it unless
``CLMS_REQUIRE_CHROMIUM=1`` (CI) makes a missing browser a failure.
"""

from __future__ import annotations

import ast
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clms_etl.keys import ENV_KEY, ENV_KEY_FILE
from clms_etl.warehouse import Warehouse, expectations
from clms_etl.warehouse.expectations import RESULTS, load_suites, run_expectations
from tests.report.conftest import chromium  # noqa: F401  (fixture)
from tests.warehouse.helpers import TEST_KEY
from tests.warehouse.test_result_expectations import twin_warehouse_path, write_analyses  # noqa: F401  (fixture)

NIGHTS = ("nightly_refresh-0a1b2c3d", "nightly_refresh-4e5f6a7b")
SECOND_NIGHT_TABLES = ["patient", "table3"]  # the second night validates a few tables: enough for two runs
# an address the page's browser would fetch (not a hyperlink a reader may follow)
ASSET = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
CSS_URL = re.compile(r"url\(['\"]?([^)'\"]+)['\"]?\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory, twin_warehouse_path) -> Path:
    """The Data Docs of two nights, each validating the base tables then the result tables."""
    root = tmp_path_factory.mktemp("data_docs")
    shutil.copy(twin_warehouse_path, root / "warehouse.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ENV_KEY_FILE, raising=False)
        mp.setenv(ENV_KEY, TEST_KEY.decode())
        with Warehouse(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
            write_analyses(wh)
            for night, tables in zip(NIGHTS, (None, SECOND_NIGHT_TABLES), strict=True):
                assert run_expectations(wh, run_name=night, tables=tables).success
                assert run_expectations(wh, scope=RESULTS, run_name=night, tables=tables).success
    return root / "data_docs"


def index_rows(index: Path) -> list[dict]:
    """The rows GE's index gives bootstrap-table to draw (its ``data: [...]`` literals)."""
    text = index.read_text(encoding="utf-8")
    rows = []
    for start in (m.end() - 1 for m in re.finditer(r"\bdata: \[", text)):
        depth, end = 0, start
        for end in range(start, len(text)):
            depth += {"[": 1, "]": -1}.get(text[end], 0)
            if depth == 0:
                break
        rows += ast.literal_eval(text[start:end + 1])
    return rows


def test_one_index_lists_every_validation_of_the_warehouse_and_the_analyses_by_run_name(site):
    suites = {doc["name"] for scope in ("base", RESULTS) for doc in load_suites(scope=scope).values()}
    pages = {p.relative_to(site).as_posix() for p in (site / "validations").rglob("*.html")}
    assert len(pages) == len(suites) + len(SECOND_NIGHT_TABLES)
    listed = {r["_table_row_link_path"] for r in index_rows(site / "index.html")}
    assert pages <= listed and all((site / link).is_file() for link in listed)
    assert {r["run_name"] for r in index_rows(site / "index.html") if "run_name" in r} == set(NIGHTS)
    assert not any("__none__" in page for page in pages)


def test_no_page_of_the_data_docs_loads_anything_from_the_internet(site):
    sheets = list((site / "static").rglob("*.css"))
    for path in [*site.rglob("*.html"), *sheets]:
        text = path.read_text(encoding="utf-8")
        addresses = ASSET.findall(text) if path.suffix == ".html" else CSS_URL.findall(text)
        remote = [a for a in addresses if re.match(r"(https?:)?//", a)]
        assert remote == [], (path.relative_to(site), remote)
        if path.suffix != ".html":
            continue  # the vendored stylesheets name fonts of every style; those of the pages' icons are there
        missing = [a for a in addresses if not (path.parent / a.split("?")[0]).exists()]
        assert missing == [], (path.relative_to(site), missing)


def test_the_data_docs_keep_the_last_runs_of_each_suite(site, tmp_path, monkeypatch):
    docs = tmp_path / "data_docs"
    shutil.copytree(site, docs)
    monkeypatch.setattr(expectations, "KEPT_RUNS", 2)
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_KEY, TEST_KEY.decode())
    shutil.copy(site.parent / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        run_expectations(wh, tables=["patient"], data_docs_dir=docs, run_name="night-3")
    patient_runs = {p.parent.parent.name for p in (docs / "validations" / "warehouse" / "patient").rglob("*.html")}
    assert patient_runs == {NIGHTS[1], "night-3"}  # the oldest run of the suite is gone, page and result
    assert len({p.parent.parent.name for p in (docs / "validations" / "warehouse" / "tumour").rglob("*.html")}) == 1
    assert not any((docs / ".store" / "validations" / "warehouse" / "patient").glob(NIGHTS[0]))
    listed = {r["_table_row_link_path"] for r in index_rows(docs / "index.html")}
    assert all((docs / link).is_file() for link in listed)


# -- in a browser with no network -----------------------------------------------------------------

PROBE = """
<script>
window.addEventListener("load", () => {
  const out = {jquery: typeof window.jQuery !== "undefined", rows: {}, font: ""};
  if (out.jquery) {
    jQuery("table[data-toggle=table]").each((_, t) => { out.rows[t.id] = jQuery(t).bootstrapTable("getData").length; });
  }
  const icon = document.querySelector("i.fas");
  out.icon_font = icon ? getComputedStyle(icon, "::before").fontFamily : "";
  out.body_font = getComputedStyle(document.body).fontFamily;
  document.body.dataset.probe = JSON.stringify(out);
});
</script>
"""


@pytest.mark.chromium
def test_the_index_draws_every_validation_in_chromium_with_no_network(site, chromium, tmp_path):
    docs = tmp_path / "data_docs"
    shutil.copytree(site, docs)
    probe = docs / "index_probe.html"  # beside the index: same relative addresses
    probe.write_text((docs / "index.html").read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                     encoding="utf-8")
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    seen = json.loads(html.unescape(found.group(1)))
    assert seen["jquery"], "jQuery did not load"
    expected = index_rows(docs / "index.html")
    assert sum(seen["rows"].values()) == len(expected) > 0  # validations and suites, all in the tables
    assert "Font Awesome" in seen["icon_font"]  # the pass / fail icons
    assert "-apple-system" in seen["body_font"]  # Bootstrap's font stack: the page is styled


def test_a_run_of_several_suites_builds_the_site_index_once(tmp_path, twin_warehouse_path, monkeypatch):
    # GE's UpdateDataDocsAction rebuilt the index once per suite: 17 times a night, ~45 % of the step
    from great_expectations.render.renderer.site_builder import DefaultSiteIndexBuilder

    builds = []
    build = DefaultSiteIndexBuilder.build
    monkeypatch.setattr(DefaultSiteIndexBuilder, "build", lambda self, *a, **k: builds.append(1) or build(self, *a, **k))
    shutil.copy(twin_warehouse_path, tmp_path / "warehouse.duckdb")
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_KEY, TEST_KEY.decode())
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        report = run_expectations(wh, run_name="nightly_refresh-0a1b2c3d", tables=["patient", "tumour", "surgery"])
    assert report.success and len(builds) == 1
    assert {o.table for o in report.outcomes} == {"patient", "tumour", "surgery"}
    # built once, the site still has a page per suite, each listed in the index
    pages = {p.relative_to(report.data_docs_index.parent).as_posix()
             for p in (report.data_docs_index.parent / "validations").rglob("*.html")}
    assert len(pages) == 3 and pages <= {r["_table_row_link_path"] for r in index_rows(report.data_docs_index)}
