"""The report on paper, as a clinician prints it: the twin cohort's report (real Table 1, survival,
Table 2, Table 3) printed to A4 PDF by headless Chromium, then read back with pypdf.

Skipped without Chromium unless ``CLMS_REQUIRE_CHROMIUM=1`` (``.ci/run``), like the browser test.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

import pytest

from clms_etl.vocabulary import code_lists, codes
from tests.report.helpers import parse_report, run_chromium

pytestmark = pytest.mark.chromium

A4_MM = (210.0, 297.0)
PAGE_RULE = re.compile(r"@page(?:\s+(\w+))?\s*\{\s*size:\s*A4\s+(portrait|landscape);\s*margin:\s*([\d.]+)mm\s+"
                       r"([\d.]+)mm\s+([\d.]+)mm\s+([\d.]+)mm;")
# Injected into a test copy only. The print rules are made to apply on screen, each table is given the
# printable width of the page it prints on (its CSS `page`), and whatever sticks out is reported.
WIDTH_PROBE = """
<script>
window.addEventListener("load", () => {
  const widths = JSON.parse(document.getElementById("printable-widths").textContent);
  const out = [...document.querySelectorAll("figure[data-table]")].map((f) => {
    const page = getComputedStyle(f).page || "auto";
    f.style.width = (widths[page] ?? widths.auto) + "mm";
    f.style.overflow = "visible";
    const table = f.querySelector("table");
    return {key: f.dataset.table, page: page, available: f.clientWidth, needed: table.scrollWidth,
            right: table.getBoundingClientRect().right - f.getBoundingClientRect().right};
  });
  const pre = document.createElement("pre");
  pre.id = "width-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


@dataclass(frozen=True)
class Printed:
    pages: list[str]  # text of each page
    landscape: list[bool]


@pytest.fixture(scope="module")
def printed(chromium, twin_report, tmp_path_factory) -> Printed:
    from pypdf import PdfReader

    folder = tmp_path_factory.mktemp("printed")
    pdf = folder / "report.pdf"
    run_chromium(chromium, folder / "profile", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                 twin_report.html.as_uri())
    reader = PdfReader(pdf)
    # NFKC: the PDF's ligatures ("ﬁ") back to letters
    return Printed([" ".join(unicodedata.normalize("NFKC", p.extract_text()).split()) for p in reader.pages],
                   [float(p.mediabox.width) > float(p.mediabox.height) for p in reader.pages])


def _printable_widths_mm(html: str) -> dict[str, float]:
    """Printable width of each page type the report declares (``auto``: the default page)."""
    widths = {}
    for name, orientation, _top, right, _bottom, left in PAGE_RULE.findall(html):
        paper = A4_MM[0] if orientation == "portrait" else A4_MM[1]
        widths[name or "auto"] = paper - float(right) - float(left)
    return widths


def test_the_printed_report_starts_with_table_1_on_page_1_and_stays_within_its_page_bounds(printed, twin_report):
    assert "Table 1. Characteristics of the patients" in printed.pages[0]
    table1 = next(t for s in twin_report.sections for t in s.tables if t.key == "table1")
    first_rows = [r[0] for r in table1.frame.head(12).iter_rows()]
    assert all(r in printed.pages[0] for r in first_rows), "page 1 holds the header but not Table 1's rows"
    # one section per page at least; about a page per table or figure at most: no blank page run
    sections = len(twin_report.sections)
    items = sum(len(s.tables) + len(s.figures) for s in twin_report.sections)
    assert sections <= len(printed.pages) <= sections + items
    assert all(len(text) > 100 for text in printed.pages), [len(t) for t in printed.pages]


def test_a_table_continued_on_the_next_page_repeats_its_header_row(printed, twin_report):
    table1 = next(t for s in twin_report.sections for t in s.tables if t.key == "table1")
    start = next(i for i, p in enumerate(printed.pages) if "Table 1." in p)
    end = next(i for i, p in enumerate(printed.pages) if i >= start and table1.note[:40] in p)  # below the table
    assert end > start, "Table 1 is expected to run over more than one A4 page"
    header = " ".join(table1.frame.columns)
    for page in printed.pages[start + 1:end + 1]:
        assert page.startswith(header), page[:120]


def test_table_3_prints_on_landscape_pages_with_every_column(printed, twin_report):
    pages = [i for i, p in enumerate(printed.pages) if "Table 3." in p]
    assert pages and all(printed.landscape[i] for i in pages)
    assert not printed.landscape[0]  # the rest stays portrait
    table3 = " ".join(printed.pages[i] for i in pages)
    assert all(w in table3 for w in ("Vital", "status", "Follow-up"))  # the right-most columns
    text = " ".join(printed.pages)
    for section in twin_report.sections:
        for table in section.tables:
            # a header may wrap inside its cell ("Vital status" over two lines): word by word
            missing = [c for c in table.frame.columns if not all(w in text for w in c.split())]
            assert not missing, f"{table.key}: columns {missing} not printed"


def test_no_table_is_wider_than_the_printable_width_of_its_page(chromium, twin_report, tmp_path):
    html = twin_report.html.read_text(encoding="utf-8")
    widths = _printable_widths_mm(html)
    assert set(widths) >= {"auto", "landscape"}, widths
    probe = (html.replace("@media print", "@media all")  # lay the page out as it prints
             .replace("</body>", f'<script type="application/json" id="printable-widths">{json.dumps(widths)}'
                                 f"</script>{WIDTH_PROBE}</body>"))
    copy = tmp_path / "probe.html"
    copy.write_text(probe, encoding="utf-8")
    dom = run_chromium(chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", copy.as_uri())
    found = re.search(r'<pre id="width-probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: " + dom[-500:]
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert {m["key"] for m in measured} == {t.key for s in twin_report.sections for t in s.tables}
    assert next(m for m in measured if m["key"] == "table3")["page"] == "landscape"
    too_wide = [m for m in measured if m["needed"] > m["available"] + 1 or m["right"] > 1]
    assert not too_wide, too_wide


def _label_codes() -> set[str]:
    """Codes that differ from their label other than by case and spacing (``upper_limb``, ``R0``
    excluded): written where a person reads, they are codes, not words."""
    return {c for name in code_lists() for c in codes(name) if isinstance(c, str) and "_" in c}


def test_no_code_value_is_printed_where_a_label_exists(printed, twin_report):
    text = " ".join(printed.pages)
    shown = sorted(c for c in _label_codes() if re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text))
    assert not shown, f"codes printed instead of their labels: {shown}"
    parsed = parse_report(twin_report.html.read_text(encoding="utf-8"))
    cells = [(t.key, cell) for t in parsed.tables for row in t.rows for cell in row]
    coded = sorted({(key, cell) for key, cell in cells for c in _label_codes() if c in cell})
    assert not coded, coded
    table2 = next(t for t in parsed.tables if t.key == "table2")
    assert any("Upper limb vs Head and neck" in row for row in table2.rows), table2.rows


def test_table_1_indents_its_items_in_markup_not_with_spaces(twin_report):
    html = twin_report.html.read_text(encoding="utf-8")
    parsed = parse_report(html)
    rows = [t for t in parsed.tables if t.key == "table1"][0]
    assert not any(re.match(r"\s", r[0]) for r in rows.rows)
    table1 = html[html.index('data-table="table1"'):]
    table1 = table1[:table1.index("</figure>")]
    assert re.search(r'<th scope="row" class="level-0">Primary site</th>', table1)
    assert re.search(r'<th scope="row" class="level-1">Head and neck</th>', table1)
    assert not re.search(r"<t[hd][^>]*>(\s|&nbsp;)", table1)  # no cell starts with blanks
