"""Montpellier (cp1252 wide CSV) and Lyon (REDCap) deliveries, read back with the csv module only.

The expected headers, codes and labels are typed here from ``centre_exports.md`` rather than
imported from the format modules, so a slip in a module cannot agree with itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import Counter

import numpy as np
import polars as pl
import pytest

from clms_etl.synth.formats import lyon
from clms_etl.synth.formats.declared import declared_format
from clms_etl.synth.truth import Truth
from clms_etl.synth.twin import build_twin

montpellier = declared_format("montpellier")  # the writer derived from clms_etl/data/formats/montpellier.toml
DELIVERY = dt.date(2026, 11, 23)
REQUIRED_FIELDS = [
    ("patient", "sex"), ("patient", "diagnosis_date"), ("tumour", "fnclcc_grade"),
    ("tumour", "mitoses_per_10hpf"), ("tumour", "differentiation_score"),
    ("surgery", "clinical_margin_cm"), ("surgery", "histological_margin_cm"),
    ("surgery", "proposed_margin_cm"), ("surgery", "surgery_date"), ("event", "event_date"),
]


def split(truth: Truth, at: list[int]) -> list[Truth]:
    """The truth cut into consecutive chunks of patients, as a million-patient run streams it."""
    keys = truth.patient["patient_key"]
    bounds = [0, *at, keys.len()]
    parts = []
    for lo, hi in zip(bounds, bounds[1:]):
        pick = pl.col("patient_key").is_in(keys[lo:hi].implode())
        parts.append(Truth(*(frame.filter(pick) for frame in truth.tables().values())))
    return parts


def deliver(module, truth: Truth, out, seed: int = 7, at: list[int] | None = None):
    rng = np.random.default_rng(seed)
    w = module.writer(out, DELIVERY)
    first = 0
    tables = []
    for part in split(truth, at or []):
        chunk = module.render(part, rng, first_row=first)
        tables += chunk
        w.append(chunk)
        first += part.patient.height
    return w.close(), tables


def truth_refs(truth: Truth) -> set[str]:
    refs = {f"patient:{k}" for k in truth.patient["patient_key"]}
    refs |= {f"tumour:{k}" for k in truth.tumour["patient_key"]}
    refs |= {f"surgery:{k}:{n}" for k, n in truth.surgery.select("patient_key", "surgery_no").iter_rows()}
    refs |= {f"event:{k}:{n}" for k, n in truth.event.select("patient_key", "event_no").iter_rows()}
    return refs


# ---------------------------------------------------------------- Montpellier

MTP_HEADER = (
    "IPP;NOM;PRENOM;DDN;SEXE;IMMUNODEP;DATE_DIAG;SITE;TAILLE_CM;PRESENTATION;DOULEUR;CICATRICE;"
    "DELAI_MOIS;GRADE;DIFF;MITOSES;NECROSE;INVASION;ULCERATION;KI67;DATE_CHIR;MARGE_RCP_CM;"
    "MARGE_CLIN_CM;MARGE_HISTO_CM;STATUT_R;RT_ADJ;DATE_RECIDIVE;DATE_META;SITES_META;TTT_RECHUTE;"
    "STATUT_VITAL;DATE_DC;CAUSE_DC;DATE_DERNIERES_NOUVELLES"
)
MISSING = {"", "NA", "ND"}
MTP_SEX = {"H": "male", "F": "female"}
MTP_SITE = {"TC": "head_neck", "TR": "trunk", "MS": "upper_limb", "MI": "lower_limb"}
MTP_GRADE = {"I": 1, "II": 2, "III": 3}
MTP_META = {"os": "bone", "peau": "skin", "poumon": "lung", "foie": "liver", "ganglion": "lymph_node",
            "côlon": "colon", "autre": "other"}
MTP_VITAL = {"VIVANT": "alive", "DCD": "dead", "PDV": "lost_to_follow_up"}
MTP_CAUSE = {"CLMS": "clms", "AUTRE": "other", "INCONNUE": "unknown"}
MTP_DECIMALS = ["TAILLE_CM", "DELAI_MOIS", "KI67", "MARGE_RCP_CM", "MARGE_CLIN_CM", "MARGE_HISTO_CM"]
MTP_DATES = ["DDN", "DATE_DIAG", "DATE_CHIR", "DATE_RECIDIVE", "DATE_META", "DATE_DC",
             "DATE_DERNIERES_NOUVELLES"]


def read_mtp(path) -> tuple[bytes, list[str], list[dict]]:
    raw = path.read_bytes()
    rows = list(csv.reader(io.StringIO(raw.decode("cp1252"), newline=""), delimiter=";"))
    return raw, rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def value(cell: str):
    return None if cell in MISSING else cell


def cm(cell: str) -> float | None:
    cell = value(cell)
    return None if cell is None else float(cell.replace(",", "."))


def dmy(cell: str) -> dt.date | None:
    cell = value(cell)
    return None if cell is None else dt.datetime.strptime(cell, "%d/%m/%Y").date()


def dates(rows: list[dict], column: str) -> list[dt.date]:
    return sorted(dmy(r[column]) for r in rows if value(r[column]))


@pytest.mark.parametrize("seed", [0, 4, 34])
def test_montpellier_file_matches_contract_and_truth(tmp_path, seed):
    truth = build_twin(seed).for_centre("montpellier")
    (path,), tables = deliver(montpellier, truth, tmp_path)
    assert path.name == "clms_montpellier.csv"
    raw, header, rows = read_mtp(path)

    assert raw.count(b"\r\n") == raw.count(b"\n") == len(rows) + 1  # CRLF only
    assert raw.split(b"\r\n", 1)[0].decode("cp1252") == MTP_HEADER
    assert [r["IPP"] for r in rows] == truth.patient["local_id"].to_list()

    for r in rows:
        for column in MTP_DECIMALS + ["MITOSES"]:
            assert value(r[column]) is None or re.fullmatch(r"\d+(,\d+)?", r[column]), (column, r[column])
        for column in MTP_DATES:
            assert value(r[column]) is None or re.fullmatch(r"\d\d/\d\d/\d{4}", r[column]), (column, r[column])
        assert r["STATUT_VITAL"] in {"", "VIVANT", "DCD", "PDV"}
    assert any("," in r["TAILLE_CM"] for r in rows)
    assert {r[c] for r in rows for c in montpellier.COLUMNS} & {"NA", "ND"}

    tumours = {t["patient_key"]: t for t in truth.tumour.iter_rows(named=True)}
    surgeries = {s["patient_key"]: s for s in truth.surgery.iter_rows(named=True)}
    for p, r in zip(truth.patient.iter_rows(named=True), rows):
        t, s = tumours[p["patient_key"]], surgeries[p["patient_key"]]
        assert MTP_SEX.get(value(r["SEXE"])) == p["sex"]
        assert dmy(r["DDN"]) == p["birth_date"] and dmy(r["DATE_DIAG"]) == p["diagnosis_date"]
        assert MTP_SITE.get(value(r["SITE"])) == t["site"]
        assert MTP_GRADE.get(value(r["GRADE"])) == t["fnclcc_grade"]
        assert cm(r["TAILLE_CM"]) == t["size_cm"]
        assert cm(r["KI67"]) == t["ki67_percent"]
        assert cm(r["DELAI_MOIS"]) == t["consultation_delay_months"]
        assert (None if value(r["MITOSES"]) is None else int(r["MITOSES"])) == t["mitoses_per_10hpf"]
        assert dmy(r["DATE_CHIR"]) == s["surgery_date"]
        assert cm(r["MARGE_CLIN_CM"]) == s["clinical_margin_cm"]
        assert cm(r["MARGE_HISTO_CM"]) == s["histological_margin_cm"]
        assert cm(r["MARGE_RCP_CM"]) == s["proposed_margin_cm"]
        assert value(r["STATUT_R"]) == s["resection_status"]
        assert MTP_VITAL.get(r["STATUT_VITAL"]) == p["vital_status"]

    # Events as columns against the event rows of the truth.
    events = truth.event
    deaths = events.filter(pl.col("event_kind") == "death")
    assert sum(r["STATUT_VITAL"] == "DCD" for r in rows) == deaths.height
    assert Counter(MTP_CAUSE[r["CAUSE_DC"]] for r in rows if value(r["CAUSE_DC"])) == Counter(
        deaths["death_cause"].drop_nulls().to_list())
    assert dates(rows, "DATE_DC") == sorted(deaths["event_date"])
    recurrences = events.filter(pl.col("event_kind") == "local_recurrence")
    assert dates(rows, "DATE_RECIDIVE") == sorted(recurrences["event_date"])
    metastases = events.filter(pl.col("event_kind") == "metastasis")
    sites = Counter(MTP_META[s] for r in rows if value(r["SITES_META"]) for s in r["SITES_META"].split(","))
    assert sites == Counter(metastases["metastasis_site"].to_list())
    assert sum(bool(value(r["DATE_META"])) for r in rows) == metastases["patient_key"].n_unique()
    news = events.filter(pl.col("event_kind").is_in(["last_news", "death"]))
    assert dates(rows, "DATE_DERNIERES_NOUVELLES") == sorted(news["event_date"])
    relapse_treatments = (
        events.filter(pl.col("event_kind").is_in(["local_recurrence", "metastasis"]))
        .sort("event_no").group_by("patient_key", maintain_order=True).first()["treatment"]
    )
    treatments = Counter(r["TTT_RECHUTE"] for r in rows if value(r["TTT_RECHUTE"]))
    assert treatments == Counter(relapse_treatments.drop_nulls())

    # Each row names the canonical rows it carries; together they are the whole truth.
    (table,) = tables
    assert len(table.rows) == len(rows)
    for p, refs in zip(truth.patient["patient_key"], table.refs):
        assert refs[:3] == (f"patient:{p}", f"tumour:{p}", f"surgery:{p}:1")
    assert {ref for refs in table.refs for ref in refs} == truth_refs(truth)


def test_montpellier_is_cp1252_not_utf8(tmp_path):
    truth = build_twin(4).for_centre("montpellier")
    first = truth.patient["patient_key"][0]
    patient = truth.patient.with_columns(
        last_name=pl.when(pl.col("patient_key") == first).then(pl.lit("Lefèvre-Bœuf")).otherwise("last_name"),
        first_name=pl.when(pl.col("patient_key") == first).then(pl.lit("Łucja Zoë Jiří")).otherwise("first_name"),
    )
    # A metastasis to bone and colon the same day, for the first patient.
    day = truth.surgery.filter(pl.col("patient_key") == first)["surgery_date"][0] + dt.timedelta(days=300)
    extra = pl.DataFrame(
        [{"patient_key": first, "event_no": 100 + i, "event_kind": "metastasis", "event_date": day,
          "metastasis_site": site, "death_cause": None, "treatment": "chimiothérapie"}
         for i, site in enumerate(["bone", "colon"])],
        schema=truth.event.schema,
    )
    events = truth.event.filter(pl.col("patient_key") != first).vstack(extra)
    truth = Truth(patient, truth.tumour, truth.surgery, events)
    (path,), _ = deliver(montpellier, truth, tmp_path)
    raw, _, rows = read_mtp(path)

    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "côlon".encode("cp1252") in raw and "BŒUF".encode("cp1252") in raw
    assert rows[0]["NOM"] == "LEFÈVRE-BŒUF"
    # Ł and ř have no cp1252 byte: the accent is dropped rather than the letter turned to "?".
    assert rows[0]["PRENOM"] == "Lucja Zoë Jirí"
    assert rows[0]["SITES_META"] == "os,côlon"
    assert rows[0]["TTT_RECHUTE"] == "chimiothérapie"


def test_montpellier_refuses_what_it_cannot_carry():
    truth = build_twin(0).for_centre("montpellier")
    second = truth.surgery.head(1).with_columns(surgery_no=pl.lit(2, pl.Int32), surgery_kind=pl.lit("re_excision"))
    with pytest.raises(AssertionError, match="surgeries"):
        montpellier.render(Truth(truth.patient, truth.tumour, truth.surgery.vstack(second), truth.event),
                           np.random.default_rng(0))
    key = truth.patient["patient_key"][0]
    recurrences = pl.DataFrame(
        [{"patient_key": key, "event_no": 50 + i, "event_kind": "local_recurrence",
          "event_date": dt.date(2019, 1, 1 + i), "metastasis_site": None, "death_cause": None,
          "treatment": None} for i in range(2)],
        schema=truth.event.schema,
    )
    with pytest.raises(AssertionError, match="local recurrences"):
        montpellier.render(Truth(truth.patient, truth.tumour, truth.surgery, truth.event.vstack(recurrences)),
                           np.random.default_rng(0))


# ---------------------------------------------------------------- Lyon

DICTIONARY_HEADER = [
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note",
    "Text Validation Type OR Show Slider Number", "Text Validation Min", "Text Validation Max",
    "Identifier?", "Branching Logic (Show field only if...)", "Required Field?", "Custom Alignment",
    "Question Number (surveys only)", "Matrix Group Name", "Matrix Ranking?", "Field Annotation",
]
PATIENT_FIELDS = [
    "record_id", "ipp", "nom", "prenom", "date_naissance", "sexe", "immunodep", "date_diag",
    "localisation", "taille_mm", "presentation", "douleur", "cicatrice", "delai_consult_mois",
    "grade_fnclcc", "differenciation", "mitoses_10hpf", "mitoses_classe", "necrose", "invasion",
    "ulceration_histo", "ki67",
]
SURGERY_FIELDS = ["chir_date", "chir_type", "marge_rcp_mm", "marge_clin_mm", "marge_histo_mm", "statut_r", "rt_adj"]
EVENT_FIELDS = ["evt_date", "evt_type", "meta_site", "deces_cause", "evt_traitement"]
LABELS = {
    "sexe": {"Homme": "male", "Femme": "female"},
    "localisation": {"Tête et cou": "head_neck", "Tronc": "trunk", "Membre supérieur": "upper_limb",
                     "Membre inférieur": "lower_limb"},
    "grade_fnclcc": {"Grade I": 1, "Grade II": 2, "Grade III": 3},
    "presentation": {"Nodule": "nodular", "Ulcération": "ulcerated", "Végétant": "vegetative",
                     "Plaque infiltrée": "infiltrated_patch"},
    "meta_site": {"os": "bone", "peau": "skin", "poumon": "lung", "foie": "liver", "ganglion": "lymph_node",
                  "autre": "other", "côlon": "colon"},
    "evt_type": {"Récidive locale": "local_recurrence", "Métastase": "metastasis", "Décès": "death",
                 "Dernières nouvelles": "last_news"},
    "chir_type": {"Exérèse initiale": "primary_excision", "Reprise": "re_excision",
                  "Chirurgie de la récidive": "relapse_surgery", "Chirurgie de métastase": "metastasis_surgery"},
}


def read_lyon(paths):
    dictionary_path, data_path = paths
    lines = list(csv.reader(io.StringIO(dictionary_path.read_text("utf-8"), newline="")))
    dictionary = [dict(zip(lines[0], r, strict=True)) for r in lines[1:]]
    raw = data_path.read_bytes()
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    records = [dict(zip(lines[0], r, strict=True)) for r in lines[1:]]
    return lines[0], dictionary, raw, records


def mm(cell: str) -> float | None:
    assert "," not in cell  # decimal point
    return float(cell) if cell else None


def to_mm(cm: float | None) -> float | None:
    return None if cm is None else round(cm * 10, 1)


def choices(entry: dict) -> dict[str, str]:
    """``1, Homme | 2, Femme`` -> {"1": "Homme", "2": "Femme"}."""
    text = entry["Choices, Calculations, OR Slider Labels"]
    return dict(part.strip().split(", ", 1) for part in text.split("|"))


def test_lyon_dictionary_is_redcap_shaped(tmp_path):
    paths, _ = deliver(lyon, build_twin(0).for_centre("lyon"), tmp_path)
    assert [p.name for p in paths] == ["CLMSLYON_DataDictionary.csv", "CLMSLYON_DATA_2026-11-23.csv"]
    first_line = paths[0].read_text("utf-8").split("\n", 1)[0]
    assert '"Choices, Calculations, OR Slider Labels"' in first_line  # one quoted column
    header, dictionary, _, _ = read_lyon(paths)
    lines = list(csv.reader(io.StringIO(paths[0].read_text("utf-8"), newline="")))
    assert lines[0] == DICTIONARY_HEADER and len(lines[0]) == 18
    assert all(len(line) == 18 for line in lines)
    by_form = {form: [d["Variable / Field Name"] for d in dictionary if d["Form Name"] == form]
               for form in ("patient", "chirurgie", "evenement")}
    assert by_form == {"patient": PATIENT_FIELDS, "chirurgie": SURGERY_FIELDS, "evenement": EVENT_FIELDS}
    fields = {d["Variable / Field Name"]: d for d in dictionary}
    assert {d["Field Type"] for d in dictionary} <= {"text", "dropdown", "radio", "yesno", "checkbox", "calc", "notes"}
    assert {n for n, d in fields.items() if d["Identifier?"] == "y"} == {"ipp", "nom", "prenom", "date_naissance"}
    assert all(d["Text Validation Type OR Show Slider Number"] == "date_ymd"
               for n, d in fields.items() if "date" in n)
    assert fields["mitoses_10hpf"]["Text Validation Type OR Show Slider Number"] == "integer"
    assert fields["taille_mm"]["Text Validation Min"] and fields["taille_mm"]["Text Validation Max"]
    assert choices(fields["sexe"]) == {"1": "Homme", "2": "Femme"}
    assert choices(fields["statut_r"]) == {"0": "R0", "1": "R1", "2": "R2"}
    assert choices(fields["necrose"]) == {"0": "Absente", "1": "< 50 %", "2": "≥ 50 %"}
    assert choices(fields["mitoses_classe"]) == {"1": "0-9", "2": "10-19", "3": "≥ 20"}
    assert choices(fields["meta_site"]) == {"1": "os", "2": "peau", "3": "poumon", "4": "foie", "5": "ganglion",
                                            "6": "autre", "7": "côlon"}
    # Codes are not the vocabulary's order everywhere: a reader must decode through the dictionary.
    presentation = [LABELS["presentation"][label] for label in choices(fields["presentation"]).values()]
    assert presentation != ["nodular", "ulcerated", "vegetative", "infiltrated_patch"]
    # Every export column is a field, a checkbox box of a field, or REDCap's own.
    for column in header:
        name, _, box = column.partition("___")
        if column in ("redcap_repeat_instrument", "redcap_repeat_instance") or column.endswith("_complete"):
            continue
        assert name in fields, column
        assert (fields[name]["Field Type"] == "checkbox") == bool(box)
        assert not box or box in choices(fields[name])
    assert header[:4] == ["record_id", "redcap_repeat_instrument", "redcap_repeat_instance", "ipp"]
    assert header[header.index("mitoses_10hpf") + 1] == "mitoses_classe"
    assert [c for c in header if c.startswith("meta_site___")] == [f"meta_site___{i}" for i in range(1, 8)]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_lyon_records_decode_to_truth(tmp_path, seed):
    truth = build_twin(seed).for_centre("lyon")
    paths, tables = deliver(lyon, truth, tmp_path)
    header, dictionary, raw, records = read_lyon(paths)
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw
    fields = {d["Variable / Field Name"]: d for d in dictionary}

    # Every value is legal for its field.
    for r in records:
        instrument = r["redcap_repeat_instrument"]
        for column, cell in r.items():
            name, _, box = column.partition("___")
            entry = fields.get(name)
            if entry is None or cell == "":
                continue
            kind = entry["Field Type"]
            if kind in ("dropdown", "radio"):
                assert cell in choices(entry), (column, cell)
            elif kind == "yesno":
                assert cell in ("0", "1"), (column, cell)
            elif entry["Text Validation Type OR Show Slider Number"] == "date_ymd":
                dt.date.fromisoformat(cell)
            elif entry["Text Validation Type OR Show Slider Number"] in ("integer", "number"):
                number = int(cell) if entry["Text Validation Type OR Show Slider Number"] == "integer" else float(cell)
                assert float(entry["Text Validation Min"]) <= number <= float(entry["Text Validation Max"])
        boxes = [r[f"meta_site___{i}"] for i in range(1, 8)]
        assert all(b in ("0", "1") for b in boxes) if instrument == "evenement" else all(b == "" for b in boxes)

    # Record structure: one base row per patient, repeat instances 1..n per record and instrument.
    base = [r for r in records if r["redcap_repeat_instrument"] == ""]
    assert len(base) == truth.patient.height
    assert [r["record_id"] for r in base] == [str(i) for i in range(1, len(base) + 1)]
    assert all(r["redcap_repeat_instance"] == "" and r["chir_date"] == r["evt_date"] == "" for r in base)
    instances: dict[tuple, list[int]] = {}
    for r in records:
        if r["redcap_repeat_instrument"]:
            assert r["redcap_repeat_instrument"] in ("chirurgie", "evenement")
            assert all(r[f] == "" for f in PATIENT_FIELDS[1:] + ["patient_complete"])
            key = (r["record_id"], r["redcap_repeat_instrument"])
            instances.setdefault(key, []).append(int(r["redcap_repeat_instance"]))
    assert all(v == list(range(1, len(v) + 1)) for v in instances.values())

    # Decoding through the dictionary (labels, not codes) recovers the truth.
    def decode(field: str, cell: str):
        return None if cell == "" else LABELS[field][choices(fields[field])[cell]]

    tumours = {t["patient_key"]: t for t in truth.tumour.iter_rows(named=True)}
    record_of = {}
    for p, r in zip(truth.patient.iter_rows(named=True), base, strict=True):
        t = tumours[p["patient_key"]]
        record_of[r["record_id"]] = p["patient_key"]
        assert r["ipp"] == p["local_id"]
        assert decode("sexe", r["sexe"]) == p["sex"]
        assert decode("localisation", r["localisation"]) == t["site"]
        assert decode("grade_fnclcc", r["grade_fnclcc"]) == t["fnclcc_grade"]
        assert decode("presentation", r["presentation"]) == t["presentation"]
        assert mm(r["taille_mm"]) == to_mm(t["size_cm"])
        assert (r["patient_complete"] == "2") == p["record_complete"]
        count = t["mitoses_per_10hpf"]
        assert r["mitoses_10hpf"] == ("" if count is None else str(count))
        if r["mitoses_classe"]:
            label = choices(fields["mitoses_classe"])[r["mitoses_classe"]]
            low, high = {"0-9": (0, 9), "10-19": (10, 19), "≥ 20": (20, 10**6)}[label]
            assert low <= count <= high
    # About half of the counted tumours carry the class too.
    assert any(r["mitoses_classe"] for r in base)
    assert any(r["mitoses_10hpf"] and not r["mitoses_classe"] for r in base)

    surgeries = [r for r in records if r["redcap_repeat_instrument"] == "chirurgie"]
    assert len(surgeries) == truth.surgery.height
    truth_ops = {(s["patient_key"], s["surgery_no"]): s for s in truth.surgery.iter_rows(named=True)}
    for r in surgeries:
        s = truth_ops[(record_of[r["record_id"]], int(r["redcap_repeat_instance"]))]
        assert dt.date.fromisoformat(r["chir_date"]) == s["surgery_date"]
        assert decode("chir_type", r["chir_type"]) == s["surgery_kind"]
        for column, field in (("marge_clin_mm", "clinical_margin_cm"), ("marge_histo_mm", "histological_margin_cm"),
                              ("marge_rcp_mm", "proposed_margin_cm")):
            assert mm(r[column]) == to_mm(s[field])

    events = [r for r in records if r["redcap_repeat_instrument"] == "evenement"]
    # A metastasis in several organs on one day is one instance.
    assert len(events) == truth.event.select("patient_key", "event_kind", "event_date").n_unique()
    sites = Counter(LABELS["meta_site"][choices(fields["meta_site"])[str(i)]]
                    for r in events for i in range(1, 8) if r[f"meta_site___{i}"] == "1")
    assert sites == Counter(truth.event["metastasis_site"].drop_nulls().to_list())
    assert Counter(decode("evt_type", r["evt_type"]) for r in events) == Counter(
        truth.event.unique(["patient_key", "event_kind", "event_date"])["event_kind"].to_list())

    refs = [ref for table in tables for refs in table.refs for ref in refs]
    assert len(refs) == len(set(refs)) and set(refs) == truth_refs(truth)


# ---------------------------------------------------------------- both formats

@pytest.mark.parametrize("module, centre", [(montpellier, "montpellier"), (lyon, "lyon")])
def test_chunked_run_is_byte_identical_and_deterministic(tmp_path, module, centre):
    truth = build_twin(1).for_centre(centre)
    whole, _ = deliver(module, truth, tmp_path / "whole")
    chunked, _ = deliver(module, truth, tmp_path / "chunked", at=[5, 12])
    again, _ = deliver(module, truth, tmp_path / "again")
    for a, b, c in zip(whole, chunked, again, strict=True):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    other, _ = deliver(module, truth, tmp_path / "other", seed=8)
    assert any(a.read_bytes() != o.read_bytes() for a, o in zip(whole, other))


@pytest.mark.parametrize("module", [montpellier, lyon])
def test_locate_and_slots_name_real_columns(module):
    columns = set(module.COLUMNS)
    for table, field in REQUIRED_FIELDS:
        file, sheet, column = module.locate(table, field)
        assert sheet is None and column in columns
    assert module.locate("tumour", "no_such_field") is None
    if module is lyon:
        assert lyon.locate("tumour", "mitosis_class") == (lyon.DATA_FILE, None, "mitoses_classe")
    slots = module.slots()
    assert set(slots) == {"unparseable_date", "unknown_code", "stray_spaces_case"}
    rng = np.random.default_rng(0)
    for kind, found in slots.items():
        assert found
        for slot in found:
            assert slot.column in columns and slot.file == module.locate("patient", "sex")[0]
            bad = slot.make("2" if module is lyon else "R1", rng)
            assert isinstance(bad, str) and bad
            if kind == "stray_spaces_case":
                assert bad != bad.strip()
