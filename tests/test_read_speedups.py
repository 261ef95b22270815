"""The reading steps made faster give what the plain algorithm gives (issue #14, bench/README.md).

* pseudonyms: :func:`clms_etl.keys.pseudonyms` (HMAC-SHA256 written out, the
  centre's prefix hashed once) equals :func:`clms_etl.keys.pseudonym` id by id, awkward ids and
  keys included; :func:`clms_etl.keys.pseudonym_column` (a column of ids, distinct ids hashed
  once, put back by a join) gives each cell its own pseudonym, nulls and repeats included;
* « Valeur reçue »: :mod:`clms_etl.readers.raw_cells` reads only the queried rows of a file (a
  workbook's other rows cut from the XML openpyxl parses, a text without quoting split by lines)
  and gives the cells the whole file read by openpyxl or the csv module gives.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from clms_etl.keys import DEMO_KEY, pseudonym, pseudonym_column, pseudonyms
from clms_etl.readers.base import ReadContext
from clms_etl.readers.raw_cells import _sheet_rows, _text_rows, raw_cells

AWKWARD_IDS = ["MTP000123", "", " ", "  12 ", "\t7\n", "é-ß-ﬁ", "ǆ", "İstanbul", "\u00a0X\u2003", "\x1c9\x1f",
               "日本-001", "a" * 300, "P;1,2", "ＡＢＣ"]


@pytest.mark.parametrize("key", [DEMO_KEY, b"k" * 64, bytes(range(1, 65)), "clé-très-longue-".encode() * 9])
@pytest.mark.parametrize("centre", ["centre06-montpellier", "  Nîmes ", "ß"])
def test_pseudonyms_of_many_ids_equal_the_pseudonym_of_each(key, centre):
    assert pseudonyms(key, centre, AWKWARD_IDS) == {i: pseudonym(key, centre, i) for i in AWKWARD_IDS}


def test_a_column_of_ids_gets_each_cells_pseudonym_in_place():
    ids = pl.Series("ipp", [*AWKWARD_IDS, None, *reversed(AWKWARD_IDS), None, "MTP000123"], dtype=pl.String)
    known = {"MTP000123": pseudonym(DEMO_KEY, "mtp", "MTP000123"), "other": "Pnot-asked"}
    expected = [None if i is None else pseudonym(DEMO_KEY, "mtp", i) for i in ids.to_list()]
    assert pseudonym_column(DEMO_KEY, "mtp", ids).to_list() == expected
    assert pseudonym_column(DEMO_KEY, "mtp", ids, known).to_list() == expected
    assert known == {"other": "Pnot-asked", **{i: pseudonym(DEMO_KEY, "mtp", i) for i in AWKWARD_IDS}}
    assert pseudonym_column(DEMO_KEY, "mtp", ids.clear()).to_list() == []


def _whole_text(text: str) -> list[list[str]]:
    """The records as the csv module reads the whole text (the reading the fast path must equal)."""
    separator = max(";\t,|", key=text.split("\n", 1)[0].count)
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=separator))


TEXTS = [
    "a;b;c\r\n1;2;3\r\n4;;6\r\n",
    "a;b\n1;2\n\n3;4",  # a blank record, no final line end
    "a;b\r1;2\r3;4\r",  # Mac line ends
    "a;b\r\n1;2\n3;4\r5;6\r\n",  # mixed
    "a\tb\n é \t\x00x\n\x1c;\t\x0b\n",  # control characters are not line ends for the csv module
    "",
    "\n",
    "a;b\n1;" + "x" * 140_000 + "\n",  # a field over the csv module's limit: the whole file refused
    'a;b\n"1;2";3\n"multi\nline";4\n5;6\n',  # quoting: the csv module reads it
    "a,b,c\nx,y\n1,2,3,4\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_queried_records_of_a_text_equal_the_csv_modules_whole_reading(text):
    try:
        whole = _whole_text(text)
    except csv.Error:
        with pytest.raises(csv.Error):
            _text_rows(text, {1, 2})
        return
    rows = set(range(1, len(whole) + 3))
    got = _text_rows(text, rows)
    assert got == dict(enumerate(whole, start=1))
    assert set(_text_rows(text, {2})) <= {2}


def _workbook(path: Path) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Patients"
    sheet.append(["IPP", "Marge", "Date", "Vrai", "Texte"])
    for i in range(2, 60):
        if i % 7 == 0:
            continue  # rows missing from the XML
        sheet.append([f"N{i}", 200 if i % 3 else 20.5, dt.datetime(2007, 7, i % 28 + 1) if i % 2 else dt.date(2010, 1, 3),
                      i % 2 == 0, "é\n" * (i % 4) or None])
        if i % 7 == 6:
            sheet.append([])
    sheet["G40"] = "au-delà des en-têtes"
    book.create_sheet("Autre").append(["x"])
    book.save(path)
    return path


def test_queried_rows_of_a_workbook_equal_openpyxls_whole_reading(tmp_path):
    path = _workbook(tmp_path / "book.xlsx")
    whole_book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    whole = list(whole_book["Patients"].iter_rows(values_only=True))
    whole_book.close()
    rows = {1, 2, 7, 13, 14, 40, 59, 60, 500}
    got = _sheet_rows(path, "Patients", rows)
    assert got == {i: whole[i - 1] for i in rows if i <= len(whole)}
    assert _sheet_rows(path, "Absente", rows) == {}


def test_a_workbook_is_parsed_only_at_the_queried_rows(tmp_path):
    """The rows no query needs are not parsed: a cell there that openpyxl cannot read is never met."""
    path = _workbook(tmp_path / "book.xlsx")
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":  # row 30's margin: not a number
                start = data.index(b'<c r="B30"')
                data = data[:start] + b'<c r="B30" t="n"><v>pas un nombre</v></c>' + data[data.index(b"</c>", start) + 4:]
            dst.writestr(item, data)
    with pytest.raises(ValueError):
        _sheet_rows(broken, "Patients", {1, 30})
    assert _sheet_rows(broken, "Patients", {1, 31}) == _sheet_rows(path, "Patients", {1, 31})


def test_raw_cells_of_a_workbook_and_a_text_file(tmp_path):
    _workbook(tmp_path / "book.xlsx")
    (tmp_path / "data.csv").write_bytes("IPP;Marge\r\nN2;200\r\nN3;20,5\r\n".encode("cp1252"))
    wanted = pl.DataFrame({"file": ["book.xlsx", "book.xlsx", "book.xlsx", "data.csv", "data.csv"],
                           "sheet": ["Patients", "Patients", "Patients", None, None],
                           "row": [3, 4, 3, 3, 9], "field": ["Marge", "Date", "Inconnu", "Marge", "Marge"]})
    got = raw_cells(tmp_path, wanted).sort("file", "row", "field")
    assert got.rows() == [("book.xlsx", "Patients", 3, "Marge", "20,5"), ("book.xlsx", "Patients", 4, "Date", "03/01/2010"),
                          ("data.csv", None, 3, "Marge", "20,5")]


def test_raw_cells_of_a_text_file_read_as_its_format_declares(tmp_path):
    """Decoded in the declared encoding, split at the declared separator, a double quote a typed
    character when the format says there is no quoting; an undeclared layout is still guessed."""
    from clms_etl.formats import FileLayout

    lines = ["Dossier\tÉvolution\tAspect\tNom", 'D1\tRL 06/2016\tplaque infiltrée\t"Dupont', "D2\tDCD 2018\t;,|\tx"]
    (tmp_path / "n.txt").write_bytes("\r".join(lines).encode("mac_roman") + b"\r")
    layout = FileLayout("n.txt", encoding="mac_roman", separator="\t", quoting=False)
    wanted = pl.DataFrame({"file": "n.txt", "sheet": None, "row": [2, 2, 2, 3],
                           "field": ["Évolution", "Aspect", "Nom", "Aspect"]}, schema_overrides={"sheet": pl.String})
    got = raw_cells(tmp_path, wanted, layout).sort("row", "field").select("row", "field", "raw").rows()
    assert got == [(2, "Aspect", "plaque infiltrée"), (2, "Nom", '"Dupont'), (2, "Évolution", "RL 06/2016"),
                   (3, "Aspect", ";,|")]
    long = "x" * 140_000  # past the csv module's field limit: a line is still a record, its quote a character
    (tmp_path / "n.txt").write_bytes("\r".join([*lines, f'D3\t{long}\tnodule\t"Martin']).encode("mac_roman"))
    wanted = pl.DataFrame({"file": "n.txt", "sheet": None, "row": [4, 4], "field": ["Évolution", "Nom"]},
                          schema_overrides={"sheet": pl.String})
    assert raw_cells(tmp_path, wanted, layout).sort("field")["raw"].to_list() == ['"Martin', long]
    (tmp_path / "u.csv").write_bytes("IPP;Siège\r\nN2;épaule\r\n".encode("cp1252"))
    guessed = raw_cells(tmp_path, pl.DataFrame({"file": ["u.csv"], "sheet": [None], "row": [2], "field": ["Siège"]},
                                               schema_overrides={"sheet": pl.String}))
    assert guessed["raw"].to_list() == ["épaule"]


MONTHS = ["janvier", "février", "fevrier", "mars", "avr.", "mai", "juin", "août", "aout", "décembre", "dec", "x"]


@pytest.mark.parametrize("head", ["RL", "récidive locale", "récidive", "métastase osseuse", "métastases foie et os",
                                  "DCD", "décès", "n'importe quoi", ""])
@pytest.mark.parametrize("paren", ["", " (cLMS)", " (autre cause)", " (reprise)", " ()"])
def test_notes_read_once_per_shape_equal_each_note_read_alone(head, paren):
    """free_text.parse_note reads a note's words once per shape ("RL mars <year>" included: the
    date is then the month's) and must give what read_note gives for every note on its own."""
    from clms_etl import formats
    from clms_etl.readers import free_text

    notes_column = formats.load(formats.find("nimes")).column("event.notes")
    for month in MONTHS:
        for date in ("2007", "1899", "2101", "0000", "9/2007", "13/2007", "15/03/2007", "31/02/2016"):
            note = f"{head} {month} {date}{paren}".strip()
            assert free_text.parse_note(notes_column, note) == free_text.read_note(notes_column, note), note


@pytest.mark.parametrize("text", ["a;b\r\r1;2\r\r", "a;b\n\n1;2\n\n\n", "a;b\r1;\x85;2\r3\u2028;4", "a;b\n1;\x1c2\n3;\x0c4",
                                  "a;b\r\n\r\n1;2\r\n", "a;b\r1;2\n", "a;b\r\n1;2\r\n3;4", "a;b\n\r1;2\r\n",
                                  "a;b\r\n1;2\r\r\n", "a;b\r\n1;2\n\n\r\r", "\r\n", "\r", "a;b\r\n\x1c;\u2029\r\n"])
def test_records_split_at_one_kind_of_line_end_equal_the_csv_modules_whole_reading(text):
    """A text with only \\n, only \\r or only \\r\\n line ends is split by str.split: the same records
    (blank ones, Unicode line separators kept inside a field) as the csv module's whole reading."""
    whole = _whole_text(text)
    assert _text_rows(text, set(range(1, len(whole) + 3))) == dict(enumerate(whole, start=1))


@pytest.mark.parametrize("fmt", ["montpellier", "nice", "lyon"])
def test_the_columnar_codes_read_every_cell_as_the_per_cell_reading(fmt, tmp_path, monkeypatch):
    """Coded columns (an Enum's index in the columnar pass): a delivery with many planted defects
    gives the same frames and queries as when every coded cell goes through ``Cells``."""
    from clms_etl.centres import load_registry
    from clms_etl.readers import engine
    from clms_etl.synth.generate import write_centre
    from clms_etl.synth.twin import build_twin

    when = dt.date(2026, 12, 5)
    write_centre(tmp_path, fmt, fmt, build_twin(0).for_centre(fmt), 3, 0.3, when)
    centre = load_registry(tmp_path).get(fmt) or next(c for c in load_registry(tmp_path).values() if c.format == fmt)

    def read():
        result = centre.reader.read(ReadContext(fmt, tmp_path / fmt / when.isoformat(), when, DEMO_KEY))
        return result.frames, result.queries_frame()

    columnar = read()
    fast = engine.Columns._fast
    monkeypatch.setattr(engine.Columns, "_fast", lambda self, c: pl.when(pl.lit(c.kind != "code")).then(fast(self, c)))
    per_cell = read()
    assert columnar[0].keys() == per_cell[0].keys()
    for table in columnar[0]:
        assert columnar[0][table].equals(per_cell[0][table]), table
    assert columnar[1].equals(per_cell[1])
    assert columnar[1].height > 0


def test_distinct_values_give_each_cell_its_presence_and_queries_as_the_per_cell_look_ups(tmp_path, monkeypatch):
    """Nîmes' hand-typed and free-text columns (each distinct value decoded once): whether a cell
    says something is read off its distinct value, and a column whose values raise nothing makes
    no query; the same as each cell looked up (``is_in`` of the missing tokens, the join of every
    cell with the issues), on a delivery with many planted defects."""
    from clms_etl.centres import load_registry
    from clms_etl.data_queries import queries_frame
    from clms_etl.readers import engine, free_text
    from clms_etl.synth.generate import write_centre
    from clms_etl.synth.twin import build_twin

    when, seen = dt.date(2026, 12, 5), []
    write_centre(tmp_path, "nimes", "nimes", build_twin(0).for_centre("nimes"), 3, 0.3, when)
    distinct = engine.Columns._distinct

    def checked(self, c, todo=None):
        before = len(queries_frame(self.ctx.queries))
        parsed = distinct(self, c, todo)
        raw = self.raw[c.key] if todo is None else pl.select(pl.when(todo).then(self.raw[c.key])).to_series()
        assert parsed.present.equals(raw.is_not_null() & ~raw.is_in(list(self.layout.missing))), c.key
        issues = sum(len(free_text.decode(c, v)[1]) for v in raw.drop_nulls().to_list())
        assert len(queries_frame(self.ctx.queries)) - before == issues, c.key
        seen.append((c.kind, issues))
        return parsed

    monkeypatch.setattr(engine.Columns, "_distinct", checked)
    centre = next(c for c in load_registry(tmp_path).values() if c.format == "nimes")
    centre.reader.read(ReadContext("nimes", tmp_path / "nimes" / when.isoformat(), when, DEMO_KEY))
    assert {k for k, _ in seen} >= {"code", "site", "measure", "date"}
    assert any(n for _, n in seen) and any(not n for _, n in seen)


def test_redcap_codes_looked_at_only_in_the_columns_holding_a_cell_that_is_no_code(tmp_path, monkeypatch):
    """REDCap's labels typed for codes: one select names the coded columns holding a cell that is
    no code, and only those are read cell by cell; the same frames and queries as when every coded
    column is (labels, a code with spaces, an unknown value, in forms of patients and operations)."""
    from clms_etl.centres import load_registry
    from clms_etl.readers import redcap
    from clms_etl.synth.generate import write_centre
    from clms_etl.synth.twin import build_twin

    when = dt.date(2026, 12, 5)
    write_centre(tmp_path, "lyon", "lyon", build_twin(0).for_centre("lyon"), 3, 0.3, when)
    folder = tmp_path / "lyon" / when.isoformat()
    data = next(p for p in folder.glob("*.csv") if "Dictionary" not in p.name)
    rows = list(csv.reader(io.StringIO(data.read_text("utf-8"), newline="")))
    at = {name: j for j, name in enumerate(rows[0])}
    typed = {"sexe": "Femme", "localisation": "Tronc", "chir_type": "?", "presentation": " 2 "}
    for n, row in enumerate(rows[1:]):
        for column, value in typed.items():
            if row[at[column]] and n % 3 == 0:
                row[at[column]] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    data.write_text(out.getvalue(), "utf-8")
    centre = next(c for c in load_registry(tmp_path).values() if c.format == "lyon")

    def read():
        result = centre.reader.read(ReadContext("lyon", folder, when, DEMO_KEY))
        return result.frames, result.queries_frame()

    screened = read()
    monkeypatch.setattr(redcap, "_holding_no_code", lambda raw, coded: coded)  # every coded column, cell by cell
    every = read()
    assert screened[0].keys() == every[0].keys()
    for table in screened[0]:
        assert screened[0][table].equals(every[0][table]), table
    assert screened[1].equals(every[1])
    rules = set(screened[1]["rule"].to_list())
    assert {"label_instead_of_code", "value_normalised"} <= rules


def test_places_along_runs_equal_the_window_over_each_record():
    """Nîmes' notes (each note's place in its cell, exploded beside it) and Montpellier's metastasis
    sites (numbered along their record's run of rows): the same numbers as the window over each
    record they replace — null cells, blank notes, one and several per record."""
    from clms_etl.readers.base import number_within

    cells = pl.DataFrame({"i": [0, 1, 2, 3, 4, 5], "_text": ["a;b", None, "", ";x; ;y", "z", "p;p;p"]}).with_columns(
        pl.col("_text").str.split(";"))
    by_window = cells.select("i", "_text").explode("_text").with_columns(pl.int_range(pl.len()).over("i").alias("_note"))
    exploded = cells.select("i", "_text", _note=pl.int_ranges(0, pl.col("_text").list.len())).explode("_text", "_note")
    kept = pl.col("_text").is_not_null() & (pl.col("_text") != "")
    assert exploded.filter(kept).equals(by_window.filter(kept))
    assert exploded.filter(kept)["_note"].to_list() == [0, 1, 1, 2, 3, 0, 0, 1, 2]
    runs = by_window.filter(kept).select("i")
    assert runs.select(number_within("i").cast(pl.Int64)).to_series().equals(
        runs.select(pl.int_range(pl.len()).over("i") + 1).to_series().alias("i"))
