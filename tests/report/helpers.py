"""Reading the report back: a small HTML parser (stdlib), the identifier scan of the privacy tests, and
headless Chromium (the ``chromium`` fixture of ``conftest.py`` finds it)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from tests.warehouse.test_privacy import identifiers, scan_values  # noqa: F401  (re-exported)


@dataclass
class ParsedTable:
    key: str
    section: str
    caption: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


@dataclass
class ParsedFigure:
    key: str
    section: str
    src: str = ""
    caption: str = ""
    note: str = ""
    svg_href: str = ""


class ReportParser(HTMLParser):
    """Sections, tables (caption, header, cells, note) and figures of a report, in document order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[str, str]] = []  # (key, title)
        self.tables: list[ParsedTable] = []
        self.figures: list[ParsedFigure] = []
        self.tags: list[tuple[str, dict]] = []  # every start tag with its attributes
        self._section = ""
        self._text: list[str] | None = None
        self._row: list[str] | None = None
        self._in_header = False
        self._figure_kind = ""  # "table" / "figure": the <figure> being read
        self._note = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section" and "data-section" in a:
            self._section = a["data-section"]
            self.sections.append((self._section, ""))
        elif tag == "figure" and "data-table" in a:
            self.tables.append(ParsedTable(a["data-table"], self._section))
            self._figure_kind = "table"
        elif tag == "figure" and "data-figure" in a:
            self.figures.append(ParsedFigure(a["data-figure"], self._section))
            self._figure_kind = "figure"
        elif tag == "p":
            self._note = a.get("class") == "note"
        elif tag == "img" and self.figures and not self.figures[-1].src:
            self.figures[-1].src = a.get("src", "")
        elif tag == "a" and a.get("download", "").endswith(".svg") and self.figures:
            self.figures[-1].svg_href = a.get("href", "")
        elif tag == "thead":
            self._in_header = True
        elif tag == "tr":
            self._row = []
        if tag in ("h2", "caption", "th", "td", "figcaption", "p"):
            self._text = []

    def handle_endtag(self, tag):
        text = " ".join("".join(self._text or []).split())
        if tag == "h2" and self.sections:
            self.sections[-1] = (self.sections[-1][0], text)
        elif tag == "caption" and self.tables:
            self.tables[-1].caption = text
        elif tag in ("th", "td") and self._row is not None:
            self._row.append(text)
        elif tag == "tr" and self._row is not None and self.tables:
            if self._in_header:
                self.tables[-1].header = self._row
            else:
                self.tables[-1].rows.append(self._row)
            self._row = None
        elif tag == "thead":
            self._in_header = False
        elif tag == "figcaption" and self._figure_kind == "figure":
            self.figures[-1].caption = text
        elif tag == "p" and self._note and self._figure_kind == "table":
            self.tables[-1].note = text
        elif tag == "p" and self._note and self._figure_kind == "figure":
            self.figures[-1].note = text
        elif tag == "figure":
            self._figure_kind = ""
        if tag in ("h2", "caption", "th", "td", "figcaption", "p"):
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def parse_report(html: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(html)
    parser.close()
    return parser


def run_chromium(chromium: str, profile: Path, *args: str) -> str:
    """Run headless Chromium with a throwaway profile; its standard output (e.g. ``--dump-dom``)."""
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions", "--no-first-run",
               f"--user-data-dir={profile}", *args]
    # the timeout only stops a hung browser; nothing is asserted about speed
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
