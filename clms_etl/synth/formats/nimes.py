"""Nîmes: paper charts typed into an old Mac database, exported as Mac Roman text, CR line ends.

One tab-separated row per patient. Every value is written the way a hand-typed chart writes
it, each column in all the spellings of the contract (``centre_exports.md``, "Nîmes"), chosen
by the rng, so a reader has to cope with every one of them.

Dates come at day, month or year precision. The reader imputes a partial date
(:func:`clms_etl.dates.impute`), so a coarse precision is used only when the imputed chart
stays coherent: same order of diagnosis, surgery, events and last news as the exact dates, and
the follow-up on the same side of 3 months (the paper's analysis set); otherwise a finer one.

Every patient draws a fixed number of uniforms whatever its values: ``defects.py`` replays the
rng state to render a damaged truth, and the two renders must differ only where values differ;
it also keeps chunked and one-shot renders byte-identical.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clms_etl.dates import format_partial, impute
from clms_etl import formats as decl
from clms_etl.readers import free_text
from clms_etl.synth.formats.base import Cell, RawTable, Slot, pick
from clms_etl.synth.identities import age_at
from clms_etl.synth.truth import Truth

name = "nimes"
# The file, its columns and every word the writer types come from the format file the reader reads
# (formats/nimes.toml: [file], [[columns]], their `written...` spellings), read back here by the
# reader's own functions: a spelling the reader would not decode is a ValueError at import.
_DECLARATION = decl.load(decl.find(name))
FILE = _DECLARATION.file.name
ENCODING = _DECLARATION.file.encoding
LINE_END = _DECLARATION.file.line_end
COLUMNS = [c.name for c in _DECLARATION.columns]


def _read_back(column: decl.Column, decode, key: str = "written") -> dict:
    """Spellings per canonical value, in the declared order; ``decode(text)`` is the reader's."""
    out: dict = {}
    for text in column.options[key]:
        value = decode(text)
        if value is None:
            raise ValueError(f"{_DECLARATION.source}: {column.name}: {key} « {text} » is not read back")
        out[value] = (*out.get(value, ()), text)  # (tuples: the rng picks by position)
    return out


def _spellings(field: str) -> dict:
    column = _DECLARATION.column(field)
    return _read_back(column, lambda text: free_text.code(column, text)[0])


def _first(spellings: dict) -> dict:
    """The one spelling per value of a column written always the same way."""
    return {value: texts[0] for value, texts in spellings.items()}


_NOTES = next(c for c in _DECLARATION.columns if c.kind == "notes")


def _note_value(note: str, part: str):
    events, _ = free_text.parse_note(_NOTES, note)
    return getattr(events[0], part) if len(events) == 1 else None


def _metastasis_site_read(text: str):
    return _note_value(f"métastase {text} 2000", "metastasis_site")


# Spellings per canonical value; the rng picks one for each cell.
SEX = _spellings("patient.sex")
PRESENTATIONS = _spellings("tumour.presentation")
YES_NO = _first(_spellings("tumour.pain"))
ROMAN = _first(_spellings("tumour.fnclcc_grade"))
DIFFERENTIATION = _first(_spellings("tumour.differentiation_score"))
NECROSIS = _spellings("tumour.necrosis_score")
INVASION = _spellings("tumour.invasion")
RESECTION = _spellings("surgery.resection_status")
METASTASIS_SITES = _first(_read_back(_NOTES, _metastasis_site_read, "written_sites"))
# Free text for "other": organs none of the words of the format file can be read into.
OTHER_METASTASIS = _read_back(_NOTES, _metastasis_site_read, "written_other")[_NOTES.other]
DEATH_CAUSES = _first(_read_back(_NOTES, lambda text: _note_value(f"DCD 2000 ({text})", "death_cause"),
                                 "written_causes"))
# Only when a site is known without its anatomical detail (truths of other origins).
_SITE = _DECLARATION.column("tumour.site")
SITE_WORDS = _first(_read_back(_SITE, lambda text: free_text.site(_SITE, text)[0][0]))

# Precision weights per date of the chart (the desired one; coherence may force a finer one).
BIRTH_PRECISION = {"day": 0.92, "month": 0.08}
DIAGNOSIS_PRECISION = {"day": 0.75, "month": 0.20, "year": 0.05}
SURGERY_PRECISION = {"day": 0.90, "month": 0.10}
EVENT_PRECISION = {"month": 0.70, "day": 0.20, "year": 0.10}
# Last news, and a death (its date is also the last news): never year-only.
LAST_NEWS_PRECISION = {"day": 0.55, "month": 0.45}
# format_partial styles of a month: 2 -> "03/2016", 1 -> "mars 2016", 0 -> "3/2016".
MONTH_STYLES = {2: 0.55, 1: 0.25, 0: 0.20}
FINER = ("year", "month", "day")
# The paper's analysis set: patients with at least 3 months of follow-up.
FOLLOW_UP_DAYS = 3 * 365.25 / 12

# Uniforms each patient draws, in this order, whatever its values.
_PATIENT_DRAWS = (
    "sex", "birth_precision", "birth_style", "diagnosis_precision", "diagnosis_style", "size",
    "presentation", "pain", "scar", "grade", "differentiation", "mitoses", "necrosis", "invasion",
    "ulceration", "ki67", "surgery_precision", "surgery_style", "margins", "clinical_unit",
    "histological_unit", "resection", "end_precision", "end_style",
)
# ...and per event row: precision, month style, note form, free text of an "other" site.
_EVENT_DRAWS = 4

def _fields() -> dict[tuple[str, str], str]:
    """(table, canonical field) -> the column holding it, from the declaration."""
    out = {}
    for c in _DECLARATION.columns:
        if c.kind == "notes":
            out |= dict.fromkeys([("event", f) for f in ("event_date", "event_kind", "metastasis_site", "death_cause")],
                                 c.name)
        elif c.event == "last_news":  # not a canonical field: the last news' date has its own column
            out[("event", "last_news_date")] = c.name
        elif c.field is not None:
            for field in (c.field, c.options.get("also")):
                if field:
                    out[tuple(field.split("."))] = c.name
    out[("patient", "first_name")] = out[("patient", "last_name")]  # "NOM Prénom", one cell
    return out


_FIELDS = _fields()


def locate(table: str, field: str) -> tuple[str, str | None, str] | None:
    column = _FIELDS.get((table, field))
    return None if column is None else (FILE, None, column)


# --- choosing a spelling from one uniform ---------------------------------------------------


def _one_of(options: Sequence, u: float):
    return options[min(int(u * len(options)), len(options) - 1)]


def _weighted(weights: dict, u: float):
    total = 0.0
    for key, w in weights.items():
        total += w
        if u < total:
            return key
    return key


def _decimal(x: float) -> str:
    """French decimal comma, no trailing zeros: 1.5 -> "1,5", 2.0 -> "2"."""
    text = f"{round(float(x), 2):.2f}".rstrip("0").rstrip(".")
    return text.replace(".", ",")


def _mac_roman(text: str) -> str:
    """Free text the Mac database can hold (it had no other characters)."""
    try:
        text.encode(ENCODING)
        return text
    except UnicodeEncodeError:
        folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        return folded.encode(ENCODING, "replace").decode(ENCODING)


def _yes_no(value: bool | None, u: float) -> Cell:
    if value is None:
        return None
    text = YES_NO[value]
    return text.capitalize() if u < 0.2 else text


def _size(cm: float | None, u: float) -> Cell:
    if cm is None:
        return "?" if u < 0.5 else None
    if u < 0.4:
        return f"{_decimal(cm * 10)} mm"
    return f"{_decimal(cm)} cm" if u < 0.8 else f"{_decimal(cm)}cm"


def _grade(grade: int | None, u: float) -> Cell:
    if grade is None:
        return None
    return _one_of((str(grade), f"G{grade}", f"grade {ROMAN[grade]}", ROMAN[grade]), u)


def _differentiation(score: int | None, u: float) -> Cell:
    if score is None:
        return None
    return DIFFERENTIATION[score] + (" différencié" if u < 0.5 else "")


def _mitoses(count: int | None, u: float) -> Cell:
    if count is None:
        return None
    forms = (str(count), f"{count}/10 HPF", f"{count} mitoses / 10 champs")
    # "< 5" is what the pathologist wrote for a low count, never for a count of 5 or more.
    return _one_of(("< 5", *forms) if count < 5 else forms, u)


def _ki67(percent: float | None, u: float) -> Cell:
    if percent is None:
        return None
    text = _decimal(percent)
    return _one_of((f"{text} %", f"{text}%", text), u)


def _margin(cm: float, u: float) -> str:
    return f"{_decimal(cm)} cm" if u < 0.6 else f"{_decimal(cm * 10)} mm"


def _margins(clinical: float | None, histological: float | None, u: float, u_clin: float, u_hist: float) -> Cell:
    # Both margins, when known, are always written: a changed value must show in the cell.
    if clinical is not None and histological is not None:
        return f"clinique {_margin(clinical, u_clin)} / histo {_margin(histological, u_hist)}"
    if clinical is not None:
        return _margin(clinical, u_clin) if u < 0.5 else f"clinique {_margin(clinical, u_clin)}"
    if histological is not None:
        return f"histo {_margin(histological, u_hist)}"
    return None


def _code(mapping: dict, value, u: float) -> Cell:
    return None if value is None else _one_of(mapping[value], u)


# --- dates ------------------------------------------------------------------------------------


@dataclass
class _Date:
    """One date of the chart and the precision it will be written at."""

    day: dt.date
    weights: dict
    u_precision: float
    u_style: float
    rank: int  # order among equal dates: diagnosis, surgery, events, last news
    precision: str = "day"

    @property
    def imputed(self) -> dt.date:
        return impute(self.day, self.precision)

    def candidates(self) -> tuple[str, ...]:
        """The drawn precision, then each finer one down to the day (always coherent)."""
        return FINER[FINER.index(_weighted(self.weights, self.u_precision)):]

    def text(self) -> str:
        return format_partial(self.day, self.precision, _weighted(MONTH_STYLES, self.u_style))


def _coherent(chain: list[_Date], diagnosis: _Date | None, end: _Date | None,
               birth_day: dt.date | None = None) -> bool:
    # The age at diagnosis is all the warehouse keeps of the birth date: a coarse diagnosis
    # date must not move it (Table 1's age quartiles are exact on the twin).
    if birth_day is not None and diagnosis is not None:
        if age_at(birth_day, diagnosis.imputed) != age_at(birth_day, diagnosis.day):
            return False
    # chain is sorted by exact date: imputation may tie dates that were equal, nothing more.
    for a, b in zip(chain, chain[1:]):
        ia, ib = a.imputed, b.imputed
        if ia > ib or (ia == ib and a.day < b.day):
            return False
    if diagnosis is not None and end is not None:
        exact = (end.day - diagnosis.day).days >= FOLLOW_UP_DAYS
        if exact != ((end.imputed - diagnosis.imputed).days >= FOLLOW_UP_DAYS):
            return False
    return True


def _settle(chain: list[_Date], order: list[_Date], diagnosis: _Date | None, end: _Date | None,
            birth_day: dt.date | None = None) -> None:
    """Give each date of ``order`` in turn the coarsest coherent precision it may take."""
    for node in order:
        for precision in node.candidates():
            node.precision = precision
            if _coherent(chain, diagnosis, end, birth_day):
                break


def _settle_birth(birth: _Date, diagnosis: _Date | None) -> None:
    # A coarse birth date must not change the age at diagnosis (the warehouse keeps only that).
    for precision in birth.candidates():
        birth.precision = precision
        if diagnosis is None or age_at(birth.imputed, diagnosis.imputed) == age_at(birth.day, diagnosis.day):
            return


# --- rendering --------------------------------------------------------------------------------


def _group(frame, by: str = "patient_key") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row[by], []).append(row)
    return out


def _event_order(e: dict) -> tuple:
    return (e["event_date"] is None, e["event_date"] or dt.date.min, e["event_no"])


def _patient_row(p: dict, t: dict, s: dict | None, events: list[dict], rng: np.random.Generator) -> tuple[dict, list[str]]:
    key = p["patient_key"]
    u = dict(zip(_PATIENT_DRAWS, rng.random(len(_PATIENT_DRAWS))))
    ue = {e["event_no"]: draws for e, draws in zip(events, rng.random((len(events), _EVENT_DRAWS)))}
    events = sorted(events, key=_event_order)

    # The end of follow-up: the death if any (its date is also the last news), else last news.
    deaths = [e for e in events if e["event_kind"] == "death"]
    news = [e for e in events if e["event_kind"] == "last_news"]
    end_row = (deaths or news or [None])[-1]

    def node(day, weights, u_p, u_s, rank):
        return None if day is None else _Date(day, weights, float(u_p), float(u_s), rank)

    diagnosis = node(p["diagnosis_date"], DIAGNOSIS_PRECISION, u["diagnosis_precision"], u["diagnosis_style"], 0)
    surgery = node(s and s["surgery_date"], SURGERY_PRECISION, u["surgery_precision"], u["surgery_style"], 1)
    end = node(end_row and end_row["event_date"], LAST_NEWS_PRECISION, u["end_precision"], u["end_style"], 3)
    # Évolution notes: (event rows, date) — a metastasis in several organs on one date is one date.
    notes: list[tuple[list[dict], _Date | None]] = []
    for e in events:
        if e["event_kind"] == "last_news":
            continue
        if e is end_row:
            notes.append(([e], end))
        elif notes and _same_metastasis(notes[-1][0][0], e):
            notes[-1][0].append(e)
        else:
            draws = ue[e["event_no"]]
            weights = LAST_NEWS_PRECISION if e["event_kind"] == "death" else EVENT_PRECISION
            notes.append(([e], node(e["event_date"], weights, draws[0], draws[1], 2)))
    event_dates = [d for _, d in notes if d is not None and d is not end]
    chain = sorted(
        (d for d in (diagnosis, surgery, *event_dates, end) if d is not None), key=lambda d: (d.day, d.rank)
    )
    # Diagnosis first (its rates are the contract's), then the surgery, events, last news.
    order = [d for d in (diagnosis, surgery) if d is not None] + [d for d in chain if d.rank == 2]
    _settle(chain, order + ([end] if end is not None else []), diagnosis, end, p["birth_date"])
    birth = node(p["birth_date"], BIRTH_PRECISION, u["birth_precision"], u["birth_style"], -1)
    if birth is not None:
        _settle_birth(birth, diagnosis)

    site = t.get("site_detail") or SITE_WORDS.get(t.get("site"))
    name_parts = [(p["last_name"] or "").upper(), p["first_name"] or ""]
    row = {
        _FIELDS["patient", "local_id"]: p["local_id"],
        _FIELDS["patient", "last_name"]: _mac_roman(" ".join(x for x in name_parts if x)) or None,
        _FIELDS["patient", "birth_date"]: birth and birth.text(),
        _FIELDS["patient", "sex"]: _code(SEX, p["sex"], u["sex"]),
        _FIELDS["patient", "diagnosis_date"]: diagnosis and diagnosis.text(),
        _FIELDS["tumour", "site"]: None if t.get("site") is None or site is None else _mac_roman(site),
        _FIELDS["tumour", "size_cm"]: _size(t.get("size_cm"), u["size"]),
        _FIELDS["tumour", "presentation"]: _code(PRESENTATIONS, t.get("presentation"), u["presentation"]),
        _FIELDS["tumour", "pain"]: _yes_no(t.get("pain"), u["pain"]),
        _FIELDS["tumour", "on_scar"]: _yes_no(t.get("on_scar"), u["scar"]),
        _FIELDS["tumour", "fnclcc_grade"]: _grade(t.get("fnclcc_grade"), u["grade"]),
        _FIELDS["tumour", "differentiation_score"]: _differentiation(t.get("differentiation_score"), u["differentiation"]),
        _FIELDS["tumour", "mitoses_per_10hpf"]: _mitoses(t.get("mitoses_per_10hpf"), u["mitoses"]),
        _FIELDS["tumour", "necrosis_score"]: _code(NECROSIS, t.get("necrosis_score"), u["necrosis"]),
        _FIELDS["tumour", "invasion"]: _code(INVASION, t.get("invasion"), u["invasion"]),
        _FIELDS["tumour", "histological_ulceration"]: _yes_no(t.get("histological_ulceration"), u["ulceration"]),
        _FIELDS["tumour", "ki67_percent"]: _ki67(t.get("ki67_percent"), u["ki67"]),
        _FIELDS["surgery", "surgery_date"]: surgery and surgery.text(),
        _FIELDS["surgery", "clinical_margin_cm"]: None if s is None else _margins(
            s["clinical_margin_cm"], s["histological_margin_cm"], u["margins"], u["clinical_unit"], u["histological_unit"]
        ),
        _FIELDS["surgery", "resection_status"]: None if s is None else _code(RESECTION, s["resection_status"], u["resection"]),
        _FIELDS["event", "event_kind"]: "; ".join(text for rows, when in notes for text in _notes(rows, when, ue)) or None,
        _FIELDS["event", "last_news_date"]: end and end.text(),
    }
    refs = [f"patient:{key}"]
    if t:
        refs.append(f"tumour:{key}")
    if s is not None:
        refs.append(f"surgery:{key}:{s['surgery_no']}")
    carried = {id(e) for rows, _ in notes for e in rows} | ({id(end_row)} if end_row is not None else set())
    refs += [f"event:{key}:{e['event_no']}" for e in sorted(events, key=lambda e: e["event_no"]) if id(e) in carried]
    return row, refs


def _same_metastasis(a: dict, b: dict) -> bool:
    """Two organs of one metastatic event (the truth has one row per organ)."""
    return (a["event_kind"] == b["event_kind"] == "metastasis" and b["event_date"] is not None
            and a["event_date"] == b["event_date"])


def _notes(rows: list[dict], when: _Date | None, ue: dict) -> list[str]:
    """The Évolution notes of one dated event (several rows for a multi-organ metastasis)."""
    first = rows[0]
    form = ue[first["event_no"]][2]
    date = "" if when is None else f" {when.text()}"
    kind = first["event_kind"]
    if kind == "local_recurrence":
        return [("récidive locale" if form < 0.6 else "RL") + date]
    if kind == "death":
        prefix = "DCD" if form < 0.6 else "décès"
        cause = first["death_cause"]
        return [prefix + date + ("" if cause is None else f" ({DEATH_CAUSES[cause]})")]
    if kind == "metastasis":
        sites = [_metastasis_site(e["metastasis_site"], ue[e["event_no"]][3]) for e in rows]
        if len(rows) > 1 and form < 0.5 and None not in sites:
            listed = ", ".join(sites[:-1]) + " et " + sites[-1]
            return [f"métastases {listed}{date}"]
        return [" ".join(x for x in ("métastase", site) if x) + date for site in sites]
    raise ValueError(f"event kind {kind!r} has no Évolution note")


def _metastasis_site(site: str | None, u: float) -> str | None:
    if site is None:
        return None
    return METASTASIS_SITES.get(site) or _one_of(OTHER_METASTASIS, u)


def render(truth: Truth, rng: np.random.Generator, first_row: int = 0) -> list[RawTable]:
    # first_row is not needed: nothing in the file numbers its rows.
    table = RawTable(FILE, None, COLUMNS)
    tumours = {r["patient_key"]: r for r in truth.tumour.iter_rows(named=True)}
    # One line per patient: only the primary excision is on the paper chart.
    surgeries = {r["patient_key"]: r for r in truth.surgery.iter_rows(named=True) if r["surgery_no"] == 1}
    events = _group(truth.event)
    for p in truth.patient.iter_rows(named=True):
        key = p["patient_key"]
        row, refs = _patient_row(p, tumours.get(key, {}), surgeries.get(key), events.get(key, []), rng)
        table.add(row, *refs)
    return [table]


# --- writing ----------------------------------------------------------------------------------


def _text(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, float):
        return _decimal(value)
    return str(value)


class Writer:
    """Streams the rows of successive chunks into the one text file."""

    def __init__(self, delivery_dir: Path, delivery_date: dt.date):
        delivery_dir.mkdir(parents=True, exist_ok=True)
        self.path = delivery_dir / FILE
        self.out = open(self.path, "wb")
        self._write([COLUMNS])

    def _write(self, rows) -> None:
        # Strict encoding: a character the Mac database could not hold is a generator bug.
        self.out.write("".join("\t".join(map(_text, r)) + LINE_END for r in rows).encode(ENCODING))

    def append(self, tables: list[RawTable]) -> None:
        for table in tables:
            if table.columns != COLUMNS:
                raise ValueError(f"{table.label}: not the Nîmes columns")
            self._write(table.rows)

    def close(self) -> list[Path]:
        self.out.close()
        return [self.path]


def writer(delivery_dir: Path, delivery_date: dt.date) -> Writer:
    return Writer(delivery_dir, delivery_date)


# --- format-level defects ---------------------------------------------------------------------


_bad_date = pick(["32/13/2014", "inconnue", "?", "31/02/2015", "15/15/2015", "??/03/2012"])


def _messy(value: Cell, rng) -> Cell:
    text = str(value).strip()
    cases = [c for c in (text.upper(), text.lower()) if c != text] or [text]
    odd = cases[int(rng.integers(len(cases)))]
    # At least one stray space, so the value always differs from a clean one.
    return " " * int(rng.integers(1, 3)) + odd + " " * int(rng.integers(0, 2))


def slots() -> dict[str, list[Slot]]:
    return {
        "unparseable_date": [
            Slot(FILE, None, _FIELDS["patient", "diagnosis_date"], _bad_date),
            Slot(FILE, None, _FIELDS["surgery", "surgery_date"], _bad_date),
            Slot(FILE, None, _FIELDS["event", "last_news_date"], _bad_date),
        ],
        "unknown_code": [
            Slot(FILE, None, _FIELDS["patient", "sex"], pick(["X", "I"])),
            Slot(FILE, None, _FIELDS["tumour", "presentation"], pick(["kystique", "pigmenté"])),
            Slot(FILE, None, _FIELDS["tumour", "necrosis_score"], pick(["massive?", "oui?"])),
            Slot(FILE, None, _FIELDS["surgery", "resection_status"], pick(["R3", "Rx"])),
            Slot(FILE, None, _FIELDS["tumour", "fnclcc_grade"], pick(["IV", "G4"])),
        ],
        "stray_spaces_case": [
            Slot(FILE, None, _FIELDS["patient", "sex"], _messy),
            Slot(FILE, None, _FIELDS["tumour", "presentation"], _messy),
            Slot(FILE, None, _FIELDS["tumour", "invasion"], _messy),
            Slot(FILE, None, _FIELDS["surgery", "resection_status"], _messy),
        ],
    }
