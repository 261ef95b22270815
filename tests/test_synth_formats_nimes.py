"""Nîmes text export: encoding, line ends, every hand-typed variant, and coherent partial dates.

The file is read back with standard tools only (``open(..., encoding="mac_roman")`` and the
csv module) and decoded with regexes written here, independent of the render code.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clms_etl.dates import parse_french_date
from clms_etl.synth.formats import nimes
from clms_etl.synth.truth import SCHEMAS, Truth
from clms_etl.synth.twin import build_twin

HEADER = [
    "Dossier", "Patient", "Né(e) le", "Sexe", "Diagnostic", "Siège", "Taille", "Aspect", "Douleur",
    "Cicatrice", "Grade", "Différenciation", "Mitoses", "Nécrose", "Infiltration", "Ulcération",
    "Ki67", "Chirurgie", "Marges", "Exérèse", "Évolution", "Dernières nouvelles",
]
DATE_COLUMNS = ("Né(e) le", "Diagnostic", "Chirurgie", "Dernières nouvelles")
DELIVERY = dt.date(2026, 11, 23)
FOLLOW_UP_DAYS = 3 * 365.25 / 12

# --- test-side decoders (deliberately not shared with the render code) ---------------------

MONTHS = "janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre"
DATE = rf"(?:\d{{2}}/\d{{2}}/\d{{4}}|\d{{1,2}}/\d{{4}}|(?:{MONTHS}) \d{{4}}|\d{{4}})"
LR_NOTE = re.compile(rf"^(?P<form>récidive locale|RL)(?: (?P<date>{DATE}))?$")
DEATH_NOTE = re.compile(rf"^(?P<form>DCD|décès)(?: (?P<date>{DATE}))?(?: \((?P<cause>cLMS|autre cause|cause inconnue)\))?$")
META_NOTE = re.compile(rf"^(?P<form>métastases?)(?: (?P<sites>.+?))?(?: (?P<date>{DATE}))?$")
SITE_ADJECTIVES = {
    "osseuse": "bone", "cutanée": "skin", "pulmonaire": "lung", "hépatique": "liver",
    "ganglionnaire": "lymph_node", "colique": "colon",
}
CAUSES = {"cLMS": "clms", "autre cause": "other", "cause inconnue": "unknown", None: None}

SEX = {"Homme": "male", "H": "male", "Femme": "female", "F": "female"}
ASPECT = {"nodule": "nodular", "nodulaire": "nodular", "ulcéré": "ulcerated", "végétant": "vegetative",
          "plaque infiltrée": "infiltrated_patch"}
NECROSIS = {"absente": 0, "non": 0, "< 50 %": 1, "<50%": 1, ">50%": 2, "≥ 50 %": 2}
INVASION = {"derme": "dermal", "dermique": "dermal", "derme et hypoderme": "dermo_hypodermal",
            "dermo-hypodermique": "dermo_hypodermal"}
RESECTION = {"R0": "R0", "R1": "R1", "R2": "R2", "complète": "R0", "incomplète": "R1"}
YES_NO = {"oui": True, "non": False}
DIFFERENTIATION = {"bien": 1, "moyennement": 2, "peu": 3}
ROMAN = {"I": 1, "II": 2, "III": 3}

NUMBER = r"\d+(?:,\d+)?"
SIZE = re.compile(rf"^(?P<n>{NUMBER})(?P<space> ?)(?P<unit>mm|cm)$")
GRADE = re.compile(r"^(?P<prefix>G|grade )?(?P<g>[123]|I{1,3})$")
DIFF = re.compile(r"^(?P<w>bien|moyennement|peu)(?P<suffix> différencié)?$")
MITOSES = re.compile(r"^(?P<n>\d+)(?P<suffix>/10 HPF| mitoses / 10 champs)?$")
KI67 = re.compile(rf"^(?P<n>{NUMBER})(?P<pct> %|%)?$")
MARGIN = rf"{NUMBER} (?:cm|mm)"
MARGINS = re.compile(
    rf"^(?:clinique (?P<both_c>{MARGIN}) / histo (?P<both_h>{MARGIN})|clinique (?P<c_label>{MARGIN})"
    rf"|histo (?P<h>{MARGIN})|(?P<c_bare>{MARGIN}))$"
)


def number(text: str) -> float:
    return float(text.replace(",", "."))


def cm(text: str) -> float:
    value, unit = text.split(" ")
    return round(number(value) / (10 if unit == "mm" else 1), 3)


def date_family(text: str) -> str:
    for family, pattern in (("day", r"\d{2}/\d{2}/\d{4}"), ("month_short", r"\d/\d{4}"),
                            ("month_padded", r"\d{2}/\d{4}"), ("month_name", rf"(?:{MONTHS}) \d{{4}}"),
                            ("year", r"\d{4}")):
        if re.fullmatch(pattern, text):
            return family
    raise AssertionError(f"not a date: {text!r}")


def parse_notes(text: str) -> list[dict]:
    """Évolution -> [{kind, date, sites, cause, form}] in written order."""
    out = []
    for note in text.split("; "):
        if m := LR_NOTE.match(note):
            out.append({"kind": "local_recurrence", "date": m["date"], "form": m["form"]})
        elif m := DEATH_NOTE.match(note):
            out.append({"kind": "death", "date": m["date"], "cause": CAUSES[m["cause"]], "form": m["form"],
                        "cause_text": m["cause"]})
        elif m := META_NOTE.match(note):
            words = re.split(r", | et ", m["sites"]) if m["sites"] else []
            sites = [SITE_ADJECTIVES.get(w, "other") for w in words]
            assert all(re.fullmatch(r"[a-zéèêàç-]+", w) for w in words), note
            assert (m["form"] == "métastases") == (len(words) > 1), note
            out.append({"kind": "metastasis", "date": m["date"], "sites": sites, "words": words, "form": m["form"]})
        else:
            raise AssertionError(f"unreadable note {note!r} in {text!r}")
    return out


# --- helpers -------------------------------------------------------------------------------


def write(tmp_path: Path, chunks: list[Truth], seed: int, folder: str = "out") -> Path:
    rng = np.random.default_rng(seed)
    w = nimes.writer(tmp_path / folder / DELIVERY.isoformat(), DELIVERY)
    for chunk in chunks:
        w.append(nimes.render(chunk, rng))
    [path] = w.close()
    return path


def read_back(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="mac_roman", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def split(truth: Truth, n: int) -> list[Truth]:
    keys = truth.patient["patient_key"].to_list()
    parts = []
    for chosen in (keys[:n], keys[n:]):
        pick = pl.col("patient_key").is_in(chosen)
        parts.append(Truth(truth.patient.filter(pick), truth.tumour.filter(pick),
                           truth.surgery.filter(pick), truth.event.filter(pick)))
    return parts


def edge_truth() -> Truth:
    """What the twin never has: liver/other sites, several organs at once, unknown or missing
    death cause, a histological margin alone, and a chart with nothing but an identity."""
    d = dt.date
    patients = [
        ("E1", "Martin", "Hélène", d(1950, 4, 2), "female", d(2010, 3, 5), "dead"),
        ("E2", "Lefèvre", "Noël", d(1940, 12, 30), "male", d(2005, 6, 20), "dead"),
        ("E3", "Roux", "Zoé", None, None, None, None),
        ("E4", "Petit", "Jean", d(1961, 1, 1), "male", d(2012, 1, 10), "alive"),
    ]
    tumour = dict.fromkeys(SCHEMAS["tumour"])
    tumours = [
        {**tumour, "patient_key": "nimes:E1", "site": "trunk", "site_detail": "dos", "size_cm": 2.5,
         "presentation": "ulcerated", "fnclcc_grade": 3, "differentiation_score": 3, "mitoses_per_10hpf": 4,
         "necrosis_score": 2, "invasion": "dermal", "ki67_percent": 12.5},
        {**tumour, "patient_key": "nimes:E2", "site": "lower_limb", "site_detail": None, "presentation": "vegetative"},
        {**tumour, "patient_key": "nimes:E3"},
        {**tumour, "patient_key": "nimes:E4", "site": "head_neck", "site_detail": "joue", "size_cm": 1.0},
    ]
    surgery = dict.fromkeys(SCHEMAS["surgery"]) | {"surgery_no": 1, "surgery_kind": "primary_excision"}
    surgeries = [
        {**surgery, "patient_key": "nimes:E1", "surgery_date": d(2010, 3, 20), "histological_margin_cm": 0.5,
         "resection_status": "R2"},
        {**surgery, "patient_key": "nimes:E2", "surgery_date": d(2005, 7, 1), "clinical_margin_cm": 1.5,
         "resection_status": "R1"},
        {**surgery, "patient_key": "nimes:E4", "surgery_date": d(2012, 1, 10), "clinical_margin_cm": 2.0,
         "histological_margin_cm": 1.25, "resection_status": "R0"},
    ]
    event = dict.fromkeys(SCHEMAS["event"])
    events = [
        ("E1", 1, "metastasis", d(2011, 2, 10), "liver", None),
        ("E1", 2, "metastasis", d(2011, 2, 10), "other", None),
        ("E1", 3, "metastasis", d(2011, 2, 10), "lung", None),
        ("E1", 4, "metastasis", d(2012, 9, 1), "other", None),
        ("E1", 5, "death", d(2013, 5, 3), None, "unknown"),
        ("E2", 1, "local_recurrence", d(2006, 1, 4), None, None),
        ("E2", 2, "local_recurrence", d(2008, 11, 20), None, None),
        ("E2", 3, "death", d(2009, 2, 1), None, None),
        ("E4", 1, "last_news", d(2012, 3, 1), None, None),
    ]
    return Truth(
        pl.DataFrame(
            [{"patient_key": f"nimes:{i}", "centre": "nimes", "local_id": i, "last_name": ln, "first_name": fn,
              "birth_date": b, "sex": s, "immunosuppression": False, "diagnosis_date": dg, "vital_status": v,
              "record_complete": True} for i, ln, fn, b, s, dg, v in patients],
            schema=SCHEMAS["patient"],
        ),
        pl.DataFrame(tumours, schema=SCHEMAS["tumour"]),
        pl.DataFrame(surgeries, schema=SCHEMAS["surgery"]),
        pl.DataFrame(
            [{**event, "patient_key": f"nimes:{k}", "event_no": no, "event_kind": kind, "event_date": when,
              "metastasis_site": site, "death_cause": cause} for k, no, kind, when, site, cause in events],
            schema=SCHEMAS["event"],
        ),
    )


def renders(tmp_path: Path) -> list[tuple[Truth, list[dict[str, str]]]]:
    """Whole twins written as Nîmes charts (all 79 patients, every Table 1 category) under
    several rng seeds, plus the edge cases; each read back from disk."""
    out = []
    for twin_seed in range(3):
        truth = build_twin(twin_seed)
        for seed in range(3):
            path = write(tmp_path, [truth], seed, f"twin{twin_seed}-{seed}")
            out.append((truth, read_back(path)[1]))
    edges = edge_truth()
    for seed in range(12):
        out.append((edges, read_back(write(tmp_path, [edges], seed, f"edge-{seed}"))[1]))
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[tuple[Truth, list[dict[str, str]]]]:
    return renders(tmp_path_factory.mktemp("nimes"))


def by_key(truth: Truth):
    tumours = {r["patient_key"]: r for r in truth.tumour.iter_rows(named=True)}
    surgeries = {r["patient_key"]: r for r in truth.surgery.iter_rows(named=True) if r["surgery_no"] == 1}
    events = defaultdict(list)
    for e in truth.event.sort("patient_key", "event_date", "event_no").iter_rows(named=True):
        events[e["patient_key"]].append(e)
    for p in truth.patient.iter_rows(named=True):
        key = p["patient_key"]
        yield p, tumours.get(key, {}), surgeries.get(key), events[key]


# --- the file --------------------------------------------------------------------------------


def test_file_is_mac_roman_with_cr_and_one_row_per_patient(tmp_path):
    truth = build_twin(0).for_centre("nimes")
    path = write(tmp_path, [truth], 0)
    assert path.name == "nimes_dossiers.txt"
    data = path.read_bytes()
    assert b"\n" not in data
    assert data.endswith(b"\r") and data.count(b"\r") == truth.patient.height + 1
    with pytest.raises(UnicodeDecodeError):  # the header alone has accents
        data.decode("utf-8")
    assert data.split(b"\r")[0] == "\t".join(HEADER).encode("mac_roman")
    header, rows = read_back(path)
    assert header == HEADER
    assert [r["Dossier"] for r in rows] == truth.patient["local_id"].to_list()
    assert [r["Patient"] for r in rows] == [
        f"{p['last_name'].upper()} {p['first_name']}" for p in truth.patient.iter_rows(named=True)
    ]


def test_refs_list_every_canonical_row(tmp_path):
    for truth in (build_twin(1).for_centre("nimes"), edge_truth()):
        [table] = nimes.render(truth, np.random.default_rng(0))
        assert table.columns == HEADER and len(table.rows) == truth.patient.height
        for refs, (p, t, s, events) in zip(table.refs, by_key(truth)):
            key = p["patient_key"]
            expected = {f"patient:{key}", f"tumour:{key}"} | ({f"surgery:{key}:1"} if s else set())
            expected |= {f"event:{key}:{e['event_no']}" for e in events}
            assert refs[0] == f"patient:{key}" and set(refs) == expected and len(refs) == len(expected)


def test_determinism_and_chunks(tmp_path):
    truth = build_twin(2).for_centre("nimes")
    one = write(tmp_path, [truth], 7, "a").read_bytes()
    assert write(tmp_path, [truth], 7, "b").read_bytes() == one
    assert write(tmp_path, split(truth, 6), 7, "c").read_bytes() == one
    assert write(tmp_path, [truth], 8, "d").read_bytes() != one


def test_draws_do_not_depend_on_values():
    # defects.py renders a damaged truth from the same rng state: only the damaged cells move.
    truth = build_twin(0).for_centre("nimes")
    events = truth.event
    lr = events.filter(pl.col("event_kind") == "local_recurrence").row(0, named=True)
    last = events.filter((pl.col("patient_key") == lr["patient_key"]) & (pl.col("event_kind").is_in(["last_news", "death"])))
    moved = last["event_date"][0] + dt.timedelta(days=120)
    hit = (pl.col("patient_key") == lr["patient_key"]) & (pl.col("event_no") == lr["event_no"])
    damaged = Truth(truth.patient, truth.tumour,
                    truth.surgery.with_columns(pl.col("clinical_margin_cm") + 5),
                    events.with_columns(pl.when(hit).then(pl.lit(moved)).otherwise(pl.col("event_date")).alias("event_date")))
    [clean] = nimes.render(truth, np.random.default_rng(3))
    [bad] = nimes.render(damaged, np.random.default_rng(3))
    for a, b, refs in zip(clean.rows, bad.rows, clean.refs):
        changed = {c for c, x, y in zip(HEADER, a, b) if x != y}
        assert changed <= {"Marges", "Évolution", "Diagnostic", "Chirurgie", "Dernières nouvelles"}
        if refs[0] == f"patient:{lr['patient_key']}":
            assert "Évolution" in changed
        if a[HEADER.index("Marges")] and not a[HEADER.index("Marges")].startswith("histo"):
            assert "Marges" in changed


# --- values ----------------------------------------------------------------------------------


def test_values_decode_back_to_the_truth(rendered):
    for truth, rows in rendered:
        for row, (p, t, s, events) in zip(rows, by_key(truth), strict=True):
            assert SEX.get(row["Sexe"]) == p["sex"]
            detail = t.get("site_detail")
            assert row["Siège"] == ("" if t.get("site") is None else detail or row["Siège"])
            assert (row["Siège"] != "") == (t.get("site") is not None)
            if (m := SIZE.match(row["Taille"])) is None:
                assert row["Taille"] in ("?", "") and t.get("size_cm") is None
            else:
                assert number(m["n"]) / (10 if m["unit"] == "mm" else 1) == pytest.approx(t["size_cm"])
            assert ASPECT.get(row["Aspect"]) == t.get("presentation")
            for column, field in (("Douleur", "pain"), ("Cicatrice", "on_scar"), ("Ulcération", "histological_ulceration")):
                assert YES_NO.get(row[column].lower()) == t.get(field)
            if m := GRADE.match(row["Grade"]):
                assert (int(m["g"]) if m["g"].isdigit() else ROMAN[m["g"]]) == t["fnclcc_grade"]
                assert m["prefix"] != "G" or m["g"].isdigit()  # G2, never GII
                assert m["prefix"] != "grade " or not m["g"].isdigit()  # grade II
            else:
                assert row["Grade"] == "" and t.get("fnclcc_grade") is None
            m = DIFF.match(row["Différenciation"])
            assert (DIFFERENTIATION[m["w"]] if m else None) == t.get("differentiation_score")
            count = t.get("mitoses_per_10hpf")
            if row["Mitoses"] == "< 5":
                assert count is not None and count < 5
            else:
                m = MITOSES.match(row["Mitoses"])
                assert (int(m["n"]) if m else None) == count
            assert NECROSIS.get(row["Nécrose"]) == t.get("necrosis_score")
            assert INVASION.get(row["Infiltration"]) == t.get("invasion")
            m = KI67.match(row["Ki67"])
            assert (number(m["n"]) if m else None) == t.get("ki67_percent")
            clinical = s and s["clinical_margin_cm"]
            histological = s and s["histological_margin_cm"]
            if row["Marges"] == "":
                assert clinical is None and histological is None
            else:
                m = MARGINS.match(row["Marges"])
                assert m, row["Marges"]
                c = m["both_c"] or m["c_label"] or m["c_bare"]
                h = m["both_h"] or m["h"]
                assert (cm(c) if c else None) == pytest.approx(clinical)
                assert (cm(h) if h else None) == pytest.approx(histological)
            assert RESECTION.get(row["Exérèse"]) == (s and s["resection_status"])
            if s and s["resection_status"] == "R2":
                assert row["Exérèse"] == "R2"  # never "incomplète"


def test_dates_match_the_truth_at_their_precision(rendered):
    for truth, rows in rendered:
        for row, (p, t, s, events) in zip(rows, by_key(truth)):
            for column, exact in (("Né(e) le", p["birth_date"]), ("Diagnostic", p["diagnosis_date"]),
                                  ("Chirurgie", s and s["surgery_date"])):
                assert_same_date(row[column], exact)
            end = [e for e in events if e["event_kind"] == "death"] or [e for e in events if e["event_kind"] == "last_news"]
            assert_same_date(row["Dernières nouvelles"], end[-1]["event_date"] if end else None)
            if row["Dernières nouvelles"]:
                assert parse_french_date(row["Dernières nouvelles"]).precision in ("day", "month")


def assert_same_date(text: str, exact: dt.date | None) -> None:
    assert text != "?"
    if exact is None:
        assert text == ""
        return
    parsed = parse_french_date(text)
    shape = {"day": exact, "month": (exact.year, exact.month), "year": exact.year}[parsed.precision]
    value = parsed.value
    assert {"day": value, "month": (value.year, value.month), "year": value.year}[parsed.precision] == shape


def test_evolution_notes_carry_the_truth_events(rendered):
    for truth, rows in rendered:
        for row, (p, t, s, events) in zip(rows, by_key(truth)):
            written = [e for e in events if e["event_kind"] != "last_news"]
            if not written:
                assert row["Évolution"] == ""
                continue
            notes = parse_notes(row["Évolution"])
            # Kinds and sites, in date order; a multi-organ metastasis may be one note.
            flat = [(n["kind"], site) for n in notes for site in (n.get("sites") or [None])]
            assert flat == [(e["event_kind"], e["metastasis_site"]) for e in written]
            dated = [(n, site) for n in notes for site in (n.get("sites") or [None])]
            for (note, _), e in zip(dated, written):
                assert_same_date(note["date"] or "", e["event_date"])
                if e["event_kind"] == "death":
                    assert note["cause"] == e["death_cause"]
                    assert note["date"] == row["Dernières nouvelles"]


def test_imputed_dates_keep_order_and_the_three_month_side(rendered):
    for truth, rows in rendered:
        for row, (p, t, s, events) in zip(rows, by_key(truth)):
            # (role, exact, written); role orders equal dates: diagnosis, surgery, events, end.
            chart = [(0, p["diagnosis_date"], row["Diagnostic"]), (1, s and s["surgery_date"], row["Chirurgie"])]
            written = [e for e in events if e["event_kind"] != "last_news"]
            notes = [(n, site) for n in parse_notes(row["Évolution"]) for site in (n.get("sites") or [None])] if written else []
            chart += [(2, e["event_date"], n["date"]) for (n, _), e in zip(notes, written)]
            end = [e for e in events if e["event_kind"] in ("death", "last_news")]
            chart.append((3, end[-1]["event_date"] if end else None, row["Dernières nouvelles"]))
            chart = [(role, exact, parse_french_date(text).value) for role, exact, text in chart if exact is not None]
            for i, (ra, a, ia) in enumerate(chart):
                for rb, b, ib in chart[i + 1:]:
                    if a < b:
                        assert ia < ib, row
                    elif a > b:
                        assert ia > ib, row
                    elif ra != rb:
                        assert (ia <= ib) if ra < rb else (ia >= ib), row
            if p["diagnosis_date"] and end:
                exact = (end[-1]["event_date"] - p["diagnosis_date"]).days >= FOLLOW_UP_DAYS
                imputed = parse_french_date(row["Dernières nouvelles"]).value - parse_french_date(row["Diagnostic"]).value
                assert (imputed.days >= FOLLOW_UP_DAYS) == exact, row
            if p["birth_date"] and p["diagnosis_date"] and parse_french_date(row["Né(e) le"]).imputed:
                # A coarse birth date never changes the age at diagnosis (a coarse diagnosis may).
                birth = parse_french_date(row["Né(e) le"]).value
                diagnosis = parse_french_date(row["Diagnostic"]).value
                assert age(birth, diagnosis) == age(p["birth_date"], p["diagnosis_date"])


def age(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def test_precision_rates(rendered):
    rates = defaultdict(Counter)
    for truth, rows in rendered:
        if truth.patient.height < 50:
            continue  # twins only
        for row in rows:
            for column in DATE_COLUMNS:
                if row[column]:
                    rates[column][parse_french_date(row[column]).precision] += 1
            if row["Évolution"]:
                for note in parse_notes(row["Évolution"]):
                    if note["kind"] != "death":
                        rates["event"][parse_french_date(note["date"]).precision] += 1
    share = {c: {k: v / sum(n.values()) for k, v in n.items()} for c, n in rates.items()}
    assert 0.65 < share["Diagnostic"]["day"] < 0.85 and share["Diagnostic"].get("year", 0) > 0
    assert share["Chirurgie"]["day"] > 0.8 and share["Né(e) le"]["day"] > 0.8
    assert share["event"]["month"] > 0.5 and set(share["event"]) == {"day", "month", "year"}
    assert set(share["Dernières nouvelles"]) == {"day", "month"}


# --- variants --------------------------------------------------------------------------------


def test_every_variant_appears(rendered):
    seen = defaultdict(set)
    for _, rows in rendered:
        for row in rows:
            seen["Sexe"].add(row["Sexe"])
            for column in DATE_COLUMNS:
                if row[column]:
                    seen["date"].add(date_family(row[column]))
            m = SIZE.match(row["Taille"])
            seen["Taille"].add(row["Taille"] if m is None else m["unit"] + ("" if m["space"] else "-nospace"))
            if m and "," in m["n"]:
                seen["Taille"].add("decimal-comma")
            seen["Aspect"].add(row["Aspect"])
            for column in ("Douleur", "Cicatrice", "Ulcération"):
                seen["yes_no"].add(row[column])
            if m := GRADE.match(row["Grade"]):
                seen["Grade"].add((m["prefix"], m["g"].isdigit()))
            seen["Différenciation"].add(row["Différenciation"])
            m = MITOSES.match(row["Mitoses"])
            seen["Mitoses"].add(row["Mitoses"] if m is None else m["suffix"])
            seen["Nécrose"].add(row["Nécrose"])
            seen["Infiltration"].add(row["Infiltration"])
            if m := KI67.match(row["Ki67"]):
                seen["Ki67"].add(m["pct"])
            if m := MARGINS.match(row["Marges"]):
                seen["Marges"] |= {k for k, v in m.groupdict().items() if v}
                seen["Marges units"] |= set(re.findall(r"cm|mm", row["Marges"]))
                if "," in row["Marges"]:
                    seen["Marges units"].add("decimal-comma")
            seen["Exérèse"].add(row["Exérèse"])
            if row["Évolution"]:
                for note in parse_notes(row["Évolution"]):
                    seen["note"].add(note["form"])
                    seen["note"].add(note.get("cause_text") or "")
                    seen["site"] |= set(note.get("sites", []))
                    if note["date"]:
                        seen["evolution date"].add(date_family(note["date"]))
    assert seen["Sexe"] >= {"Homme", "Femme", "H", "F"}
    assert seen["date"] == seen["evolution date"] == {"day", "month_short", "month_padded", "month_name", "year"}
    assert seen["Taille"] >= {"mm", "cm", "cm-nospace", "decimal-comma", "?", ""}
    assert seen["Aspect"] >= set(ASPECT)
    assert seen["yes_no"] >= {"oui", "non", "Oui", "Non"}
    assert seen["Grade"] == {(None, True), ("G", True), ("grade ", False), (None, False)}
    assert seen["Différenciation"] >= {f"{w}{s}" for w in DIFFERENTIATION for s in ("", " différencié")}
    assert seen["Mitoses"] >= {None, "/10 HPF", " mitoses / 10 champs", "< 5"}
    assert seen["Nécrose"] >= set(NECROSIS)
    assert seen["Infiltration"] >= set(INVASION)
    assert seen["Ki67"] == {" %", "%", None}
    assert seen["Marges"] == {"both_c", "both_h", "c_label", "c_bare", "h"}
    assert seen["Marges units"] == {"cm", "mm", "decimal-comma"}
    assert seen["Exérèse"] >= set(RESECTION)
    assert seen["note"] >= {"récidive locale", "RL", "métastase", "métastases", "DCD", "décès",
                            "cLMS", "autre cause", "cause inconnue", ""}
    assert seen["site"] == {"bone", "skin", "lung", "liver", "lymph_node", "colon", "other"}


def test_greater_or_equal_sign_is_mac_roman(tmp_path):
    # E1 has necrosis >= 50 %: some seed writes it with the sign, one byte in Mac Roman.
    for seed in range(20):
        path = write(tmp_path, [edge_truth()], seed, f"s{seed}")
        if read_back(path)[1][0]["Nécrose"] == "≥ 50 %":
            assert b"\t\xb3 50 %\t" in path.read_bytes()
            return
    raise AssertionError("no seed wrote ≥")


# --- locate and slots --------------------------------------------------------------------------


def test_locate():
    expected = {
        ("patient", "diagnosis_date"): "Diagnostic", ("patient", "sex"): "Sexe",
        ("tumour", "fnclcc_grade"): "Grade", ("tumour", "mitoses_per_10hpf"): "Mitoses",
        ("tumour", "differentiation_score"): "Différenciation",
        ("surgery", "clinical_margin_cm"): "Marges", ("surgery", "histological_margin_cm"): "Marges",
        ("surgery", "surgery_date"): "Chirurgie", ("event", "event_date"): "Évolution",
        ("event", "last_news_date"): "Dernières nouvelles",
    }
    for (table, field), column in expected.items():
        assert nimes.locate(table, field) == ("nimes_dossiers.txt", None, column)
    assert nimes.locate("surgery", "proposed_margin_cm") is None
    assert nimes.locate("tumour", "mitosis_class") is None


def test_slots_make_bad_but_writable_values(tmp_path):
    rng = np.random.default_rng(0)
    slots = nimes.slots()
    assert set(slots) == {"unparseable_date", "unknown_code", "stray_spaces_case"}
    clean = {"Sexe": SEX, "Aspect": ASPECT, "Nécrose": NECROSIS, "Exérèse": RESECTION, "Infiltration": INVASION}
    for kind, options in slots.items():
        for slot in options:
            assert slot.file == "nimes_dossiers.txt" and slot.sheet is None and slot.column in HEADER
            for _ in range(20):
                original = {"Sexe": "Homme", "Aspect": "plaque infiltrée", "Exérèse": "R0",
                            "Infiltration": "derme", "Nécrose": "absente", "Grade": "G2"}.get(slot.column, "12/03/2014")
                value = slot.make(original, rng)
                value.encode("mac_roman")
                if kind == "unparseable_date":
                    with pytest.raises(ValueError):
                        parse_french_date(value)
                elif kind == "unknown_code":
                    assert value not in clean.get(slot.column, {})
                    assert slot.column != "Grade" or not GRADE.match(value)
                else:
                    assert value != original and value.strip() != original
                    assert value.strip().lower() == original.lower()


def test_the_nimes_writer_types_the_words_of_its_format_file_each_read_back_by_the_reader(tmp_path):
    """The writer's file, columns and spellings are the format file's (formats/nimes.toml, ``written``
    keys), not a second list: each word is decoded to its value by the reader's own functions, and a
    declared spelling the reader would not read is refused by name."""
    from clms_etl import formats
    from clms_etl.readers import free_text

    declared = formats.load(formats.find("nimes"))
    assert (nimes.FILE, nimes.ENCODING, nimes.LINE_END) == (declared.file.name, declared.file.encoding,
                                                            declared.file.line_end)
    assert nimes.COLUMNS == [c.name for c in declared.columns] == HEADER
    for field, spellings in {"patient.sex": nimes.SEX, "tumour.presentation": nimes.PRESENTATIONS,
                             "tumour.necrosis_score": nimes.NECROSIS, "tumour.invasion": nimes.INVASION,
                             "surgery.resection_status": nimes.RESECTION}.items():
        column = declared.column(field)
        assert [t for texts in spellings.values() for t in texts] == list(column.options["written"])
        assert all(free_text.code(column, t)[0] == v for v, texts in spellings.items() for t in texts), field
    typo = formats.column("test.toml", {"name": "Sexe", "field": "patient.sex", "written": ["Hommme"]},
                              {"homme": "male"})
    with pytest.raises(ValueError, match="Hommme"):
        nimes._read_back(typo, lambda text: free_text.code(typo, text)[0])
