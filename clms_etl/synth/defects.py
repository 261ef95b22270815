"""Realistic chart problems planted on demand, with a truth manifest of each one.

Two families:

* **Clinical** defects change the truth before a centre writes it (a margin of 12 cm, a
  histological margin wider than the clinical one, a grade that contradicts its components,
  a death before the diagnosis, an event after the last news); the centre then writes the
  wrong value in its own way.
* **Format** defects damage the written cells (an unknown code, stray spaces and odd case, an
  unparseable date, a duplicated patient row, a mitotic class that contradicts the count).

Every planted defect gets one manifest row: centre, file, sheet, row (header = row 1), column,
the canonical field, the kind, and the value as written. Tests use it to prove that every
defect is reported and that nothing clean is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from clms_etl.synth.formats.base import RawTable
from clms_etl.synth.truth import Truth

CLINICAL_KINDS = (
    "margin_out_of_range",
    "histological_exceeds_clinical",
    "grade_contradicts_components",
    "death_before_diagnosis",
    "event_after_last_news",
)
FORMAT_KINDS = (
    "unknown_code",
    "stray_spaces_case",
    "unparseable_date",
    "duplicate_patient_row",
    "mitoses_contradict_class",
)
KINDS = CLINICAL_KINDS + FORMAT_KINDS

MANIFEST_SCHEMA = {
    "centre": pl.String,
    "file": pl.String,
    "sheet": pl.String,
    "row": pl.Int64,
    "column": pl.String,
    "field": pl.String,
    "kind": pl.String,
    "value": pl.String,
    "patient_key": pl.String,
}


@dataclass
class Defect:
    centre: str
    file: str
    sheet: str | None
    row: int
    column: str
    field: str | None
    kind: str
    value: str
    patient_key: str


@dataclass
class _Planned:
    kind: str
    patient_key: str
    ref: str = ""  # canonical row carrying the damaged field
    table: str = ""
    field: str = ""
    event_kind: str | None = None


def plan_clinical(truth: Truth, fmt, kinds: list[str], rng: np.random.Generator) -> tuple[Truth, list[_Planned]]:
    """Apply clinical defects to a copy of ``truth``; one defect per patient."""
    patient, tumour, surgery, event = (truth.patient, truth.tumour, truth.surgery, truth.event)
    used: set[str] = set()
    planned: list[_Planned] = []

    def pick(candidates: list[str]) -> str | None:
        free = [k for k in candidates if k not in used]
        if not free:
            return None
        key = free[int(rng.integers(len(free)))]
        used.add(key)
        return key

    primary = surgery.filter(pl.col("surgery_no") == 1)
    for kind in kinds:
        if kind == "margin_out_of_range" and fmt.locate("surgery", "clinical_margin_cm"):
            key = pick(primary.filter(pl.col("clinical_margin_cm").is_not_null())["patient_key"].to_list())
            if key:
                bad = float(rng.choice([6.5, 8.0, 12.0, 15.0, 20.0]))
                surgery = _set(surgery, key, "surgery_no", 1, "clinical_margin_cm", bad)
                planned.append(_Planned(kind, key, f"surgery:{key}:1", "surgery", "clinical_margin_cm"))
        elif kind == "histological_exceeds_clinical" and fmt.locate("surgery", "histological_margin_cm"):
            ok = primary.filter(
                pl.col("clinical_margin_cm").is_between(0.5, 3.5) & pl.col("histological_margin_cm").is_not_null()
            )
            key = pick(ok["patient_key"].to_list())
            if key:
                clinical = ok.filter(pl.col("patient_key") == key)["clinical_margin_cm"][0]
                surgery = _set(surgery, key, "surgery_no", 1, "histological_margin_cm", round(clinical + 1.0, 1))
                planned.append(_Planned(kind, key, f"surgery:{key}:1", "surgery", "histological_margin_cm"))
        elif kind == "grade_contradicts_components" and fmt.locate("tumour", "fnclcc_grade"):
            full = tumour.filter(
                pl.all_horizontal(pl.col("differentiation_score", "mitoses_per_10hpf", "necrosis_score", "fnclcc_grade").is_not_null())
            )
            key = pick(full["patient_key"].to_list())
            if key:
                grade = full.filter(pl.col("patient_key") == key)["fnclcc_grade"][0]
                wrong = {1: 3, 2: 1, 3: 1}[grade]
                tumour = tumour.with_columns(
                    pl.when(pl.col("patient_key") == key).then(wrong).otherwise(pl.col("fnclcc_grade")).cast(pl.Int8).alias("fnclcc_grade")
                )
                planned.append(_Planned(kind, key, f"tumour:{key}", "tumour", "fnclcc_grade"))
        elif kind == "death_before_diagnosis":
            deaths = event.filter(pl.col("event_kind") == "death").join(patient.select("patient_key", "diagnosis_date"), on="patient_key")
            key = pick(deaths["patient_key"].to_list())
            if key:
                row = deaths.filter(pl.col("patient_key") == key).row(0, named=True)
                when = row["diagnosis_date"] - dt.timedelta(days=int(rng.integers(60, 400)))
                event = _set(event, key, "event_no", row["event_no"], "event_date", when)
                planned.append(_Planned(kind, key, f"event:{key}:{row['event_no']}", "event", "event_date", row["event_kind"]))
        elif kind == "event_after_last_news":
            last = event.filter(pl.col("event_kind") == "last_news").select("patient_key", pl.col("event_date").alias("last_news"))
            relapses = event.filter(pl.col("event_kind") == "local_recurrence").join(last, on="patient_key")
            key = pick(relapses["patient_key"].to_list())
            if key:
                row = relapses.filter(pl.col("patient_key") == key).row(0, named=True)
                when = row["last_news"] + dt.timedelta(days=int(rng.integers(60, 300)))
                event = _set(event, key, "event_no", row["event_no"], "event_date", when)
                planned.append(_Planned(kind, key, f"event:{key}:{row['event_no']}", "event", "event_date", row["event_kind"]))
    return Truth(patient, tumour, surgery, event, dict(truth.extras)), planned


def _set(frame: pl.DataFrame, key: str, no_col: str, no: int, column: str, value) -> pl.DataFrame:
    hit = (pl.col("patient_key") == key) & (pl.col(no_col) == no)
    return frame.with_columns(
        pl.when(hit).then(pl.lit(value, dtype=frame.schema[column])).otherwise(pl.col(column)).alias(column)
    )


def locate_planned(centre: str, fmt, tables: list[RawTable], planned: list[_Planned], clean: list[RawTable]) -> list[Defect]:
    """Where each clinical defect landed.

    The format names the column of a field; a wide format that writes each event kind in its
    own date column says which in ``EVENT_DATE_COLUMNS``; failing both, the one changed cell
    of the row is the one. A defect that changed nothing in the file is a generator bug.
    """
    out = []
    for p in planned:
        file, sheet, column = fmt.locate(p.table, p.field)
        if p.event_kind and p.field == "event_date":
            column = getattr(fmt, "EVENT_DATE_COLUMNS", {}).get(p.event_kind, column)
        for t, c in zip(tables, clean):
            if (t.file, t.sheet) != (file, sheet):
                continue
            i = next(i for i, refs in enumerate(t.refs) if p.ref in refs)
            changed = [j for j, (a, b) in enumerate(zip(t.rows[i], c.rows[i])) if a != b]
            j = t.col(column)
            if j not in changed:
                if len(changed) != 1:
                    raise AssertionError(f"{centre}: defect {p.kind} on {p.ref} is not visible in {t.label}")
                j = changed[0]
            out.append(Defect(centre, file, sheet, i + 2, t.columns[j], f"{p.table}.{p.field}", p.kind,
                              _text(t.rows[i][j]), p.patient_key))
    return out


def plant_format_defects(centre: str, fmt, tables: list[RawTable], kinds: list[str], rng: np.random.Generator, taken: set[str]) -> list[Defect]:
    """Damage cells in place (and duplicate rows); returns the manifest rows.

    Row numbers are those of the final file, so duplicates are inserted last.
    """
    out: list[Defect] = []
    slots = fmt.slots()
    duplicates = 0
    for kind in kinds:
        if kind == "duplicate_patient_row":
            duplicates += 1
            continue
        if kind == "mitoses_contradict_class":
            loc = fmt.locate("tumour", "mitosis_class")
            if loc:
                out += _contradict_class(centre, tables, loc, rng, taken)
            continue
        options = slots.get(kind, [])
        if not options:
            continue
        slot = options[int(rng.integers(len(options)))]
        table = next(t for t in tables if (t.file, t.sheet) == (slot.file, slot.sheet))
        j = table.col(slot.column)
        rows = [i for i, r in enumerate(table.rows) if r[j] not in (None, "", "NR", "NA", "ND") and _key(table.refs[i]) not in taken]
        if not rows:
            continue
        i = rows[int(rng.integers(len(rows)))]
        value = slot.make(table.rows[i][j], rng)
        table.rows[i][j] = value
        taken.add(_key(table.refs[i]))
        out.append(Defect(centre, table.file, table.sheet, i + 2, slot.column, None, kind, _text(value), _key(table.refs[i])))
    if duplicates:
        first = tables[0]  # the patient-level table of every format
        candidates = [i for i, refs in enumerate(first.refs) if _key(refs) not in taken and _is_base_row(refs)]
        for i in rng.choice(candidates, min(duplicates, len(candidates)), replace=False):
            first.rows.append(list(first.rows[int(i)]))
            first.refs.append(tuple(first.refs[int(i)]))
            taken.add(_key(first.refs[int(i)]))
            out.append(Defect(centre, first.file, first.sheet, len(first.rows) + 1, first.columns[0], None,
                              "duplicate_patient_row", _text(first.rows[int(i)][0]), _key(first.refs[int(i)])))
    return out


def _contradict_class(centre, tables, loc, rng, taken) -> list[Defect]:
    file, sheet, column = loc
    table = next(t for t in tables if (t.file, t.sheet) == (file, sheet))
    j = table.col(column)
    rows = [i for i, r in enumerate(table.rows) if r[j] not in (None, "") and _key(table.refs[i]) not in taken]
    if not rows:
        return []
    i = rows[int(rng.integers(len(rows)))]
    current = str(table.rows[i][j]).strip()
    table.rows[i][j] = {"1": "3", "2": "1", "3": "1"}.get(current, "3")
    taken.add(_key(table.refs[i]))
    return [Defect(centre, file, sheet, i + 2, column, "tumour.mitosis_class", "mitoses_contradict_class",
                   _text(table.rows[i][j]), _key(table.refs[i]))]


def _key(refs: tuple[str, ...]) -> str:
    # "patient:nice:123" / "surgery:nice:123:2" -> "nice:123"
    parts = refs[0].split(":")
    return f"{parts[1]}:{parts[2]}"


def _is_base_row(refs: tuple[str, ...]) -> bool:
    return any(r.startswith("patient:") for r in refs)


def _text(value) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return "" if value is None else str(value)


def kinds_for(n_defects: int, rng: np.random.Generator) -> list[str]:
    """Round-robin over all kinds from a random start, so every kind appears once n allows."""
    start = int(rng.integers(len(KINDS)))
    return [KINDS[(start + i) % len(KINDS)] for i in range(n_defects)]


def manifest_frame(defects: list[Defect]) -> pl.DataFrame:
    return pl.DataFrame([asdict(d) for d in defects], schema=MANIFEST_SCHEMA)
