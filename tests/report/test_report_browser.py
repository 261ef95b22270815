"""The report in a real browser: headless Chromium renders every table and decodes every figure,
takes a non-blank screenshot and prints it on A4 pages.

Needs Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it). Without it
the test is skipped with that message, unless ``CLMS_REQUIRE_CHROMIUM=1`` (set by ``.ci/run``)
makes a missing browser a failure.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.report.helpers import run_chromium

pytestmark = pytest.mark.chromium

WINDOW = (1280, 2400)
# Injected into a test copy only: the report itself has no script. After load, it writes what the
# browser rendered into the DOM, which --dump-dom prints.
PROBE = """
<script>
window.addEventListener("load", () => {
  const box = (e) => e.getBoundingClientRect();
  const out = {
    sections: [...document.querySelectorAll("section[data-section]")].map((s) => s.dataset.section),
    tables: [...document.querySelectorAll("figure[data-table]")].map((f) => ({
      key: f.dataset.table, rows: f.querySelectorAll("tbody tr").length,
      columns: f.querySelectorAll("thead th").length, height: box(f.querySelector("table")).height,
    })),
    figures: [...document.querySelectorAll("figure[data-figure]")].map((f) => {
      const img = f.querySelector("img");
      return {key: f.dataset.figure, complete: img.complete, naturalWidth: img.naturalWidth,
              naturalHeight: img.naturalHeight, width: box(img).width, height: box(img).height};
    }),
  };
  const pre = document.createElement("pre");
  pre.id = "browser-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def test_chromium_renders_every_table_and_figure_of_the_report(chromium, built_report, tmp_path):
    html = built_report.html.read_text(encoding="utf-8")
    probe_copy = tmp_path / "probe.html"
    probe_copy.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = run_chromium(chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--run-all-compositor-stages-before-draw",
               "--dump-dom", probe_copy.as_uri())
    found = re.search(r'<pre id="browser-probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: " + dom[-500:]
    rendered = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                          .replace("&gt;", ">"))
    assert rendered["sections"] == [s.key for s in built_report.sections]
    expected_tables = [t for s in built_report.sections for t in s.tables]
    assert [t["key"] for t in rendered["tables"]] == [t.key for t in expected_tables]
    for shown, table in zip(rendered["tables"], expected_tables, strict=True):
        assert shown["rows"] == max(table.frame.height, 1) and shown["columns"] == table.frame.width
        assert shown["height"] > 0
    expected_figures = [f for s in built_report.sections for f in s.figures]
    assert len(expected_figures) == 2
    assert [f["key"] for f in rendered["figures"]] == [f.key for f in expected_figures]
    for shown in rendered["figures"]:
        assert shown["complete"] and shown["naturalWidth"] > 0 and shown["naturalHeight"] > 0, shown
        assert shown["width"] > 100 and shown["height"] > 50, shown


def test_chromium_screenshot_of_the_report_is_not_blank(chromium, built_report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path / "profile", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}",
         "--virtual-time-budget=5000", f"--screenshot={shot}", built_report.html.as_uri())
    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    small = image.resize((WINDOW[0] // 4, WINDOW[1] // 4))
    pixels = list(small.getdata())
    ink = sum(1 for p in pixels if sum(p) < 600) / len(pixels)  # anything visibly darker than white
    assert ink > 0.02, f"screenshot almost blank ({ink:.1%} ink)"
    assert len(set(pixels)) > 100  # text, table shading and figure colours, not a flat page
    accent = sum(1 for r, g, b in pixels if b > r + 40 and b > 100)  # the blue title / histogram bars
    assert accent > 50


def test_chromium_prints_the_report_on_a4_pages(chromium, built_report, tmp_path):
    pdf = tmp_path / "report.pdf"
    run_chromium(chromium, tmp_path / "profile", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
         built_report.html.as_uri())
    raw = pdf.read_bytes()
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", raw)
    a4 = (595, 842)  # points; a wide table prints on landscape pages
    assert boxes and all(sorted((round(float(w)), round(float(h)))) == list(a4) for w, h in boxes), boxes
    assert len(boxes) >= len(built_report.sections)  # one section per page at least
