"""An independent reading of the synthetic deliveries, for tests of the generator.

It uses only standard readers (openpyxl, the csv module, the files' declared encodings) and
decoding tables written here from ``docs/centre_formats.md`` — never the project's
own readers — so that a test of the generator does not lean on the code it feeds.
Each centre's patients come out as dicts of Table 1 variables in canonical terms.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from pathlib import Path

import openpyxl

MISSING = {None, "", "NR", "NA", "ND", "?"}


def fold(text) -> str:
    text = unicodedata.normalize("NFKD", str(text))
    return "".join(c for c in text if not unicodedata.combining(c)).strip().lower()


def age(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def dmy(text: str) -> dt.date:
    d, m, y = map(int, text.split("/"))
    return dt.date(y, m, d)


def num(text) -> float | None:
    if text in MISSING:
        return None
    return float(str(text).replace(",", "."))


def _row(**kw):
    return kw


# --- Nice ---------------------------------------------------------------------------------

def nice(folder: Path) -> list[dict]:
    book = openpyxl.load_workbook(folder / "export_dermato_nice.xlsx", read_only=True, data_only=True)
    sheets = {ws.title: list(ws.iter_rows(values_only=True)) for ws in book.worksheets}
    pats = [dict(zip(sheets["Patients"][0], r)) for r in sheets["Patients"][1:]]
    surg = [dict(zip(sheets["Chirurgies"][0], r)) for r in sheets["Chirurgies"][1:]]
    first = {}
    for s in sorted(surg, key=lambda s: s["Date"]):
        first.setdefault(s["N° dossier"], s)
    val = lambda v: None if v in MISSING else v  # noqa: E731
    code = lambda m, v: None if v in MISSING else m[v]  # noqa: E731
    out = []
    for p in pats:
        s = first.get(p["N° dossier"], {})
        out.append(_row(
            sex=code({"M": "male", "F": "female"}, p["Sexe"]),
            age=age(p["Date de naissance"].date(), p["Date du diagnostic"].date()),
            immunosuppression=p["Immunodépression"] == "Oui",
            site=code({"Tête et cou": "head_neck", "Tronc": "trunk", "Membre supérieur": "upper_limb", "Membre inférieur": "lower_limb"}, p["Localisation"]),
            presentation=code({"Nodule": "nodular", "Ulcération": "ulcerated", "Végétant": "vegetative", "Plaque infiltrée": "infiltrated_patch"}, p["Présentation"]),
            pain=p["Douleur"] == "Oui", on_scar=p["Sur cicatrice"] == "Oui",
            size_cm=None if val(p["Taille (mm)"]) is None else p["Taille (mm)"] / 10,
            delay=val(p["Délai 1ère consultation (mois)"]),
            grade=val(p["Grade FNCLCC"]), differentiation=val(p["Différenciation"]),
            mitoses=val(p["Mitoses /10 champs"]),
            necrosis=code({"Absente": 0, "<50%": 1, "≥50%": 2}, p["Nécrose"]),
            invasion=code({"Derme": "dermal", "Derme et hypoderme": "dermo_hypodermal"}, p["Envahissement"]),
            ulceration=p["Ulcération histologique"] == "Oui", ki67=val(p["Ki67 (%)"]),
            resection=val(s.get("Statut")),
            proposed=None if val(s.get("Marge proposée RCP (mm)")) is None else s["Marge proposée RCP (mm)"] / 10,
            clinical=None if val(s.get("Marge clinique (mm)")) is None else s["Marge clinique (mm)"] / 10,
            histological=None if val(s.get("Marge histologique (mm)")) is None else s["Marge histologique (mm)"] / 10,
        ))
    return out


# --- Montpellier -----------------------------------------------------------------------------

def montpellier(folder: Path) -> list[dict]:
    text = (folder / "clms_montpellier.csv").read_bytes().decode("cp1252")
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=";"))
    code = lambda m, v: None if v in MISSING else m[v]  # noqa: E731
    out = []
    for r in rows:
        out.append(_row(
            sex=code({"H": "male", "F": "female"}, r["SEXE"]),
            age=age(dmy(r["DDN"]), dmy(r["DATE_DIAG"])),
            immunosuppression=r["IMMUNODEP"] == "1",
            site=code({"TC": "head_neck", "TR": "trunk", "MS": "upper_limb", "MI": "lower_limb"}, r["SITE"]),
            presentation=code({"NOD": "nodular", "ULC": "ulcerated", "VEG": "vegetative", "PLQ": "infiltrated_patch"}, r["PRESENTATION"]),
            pain=r["DOULEUR"] == "1", on_scar=r["CICATRICE"] == "1",
            size_cm=num(r["TAILLE_CM"]), delay=num(r["DELAI_MOIS"]),
            grade=code({"I": 1, "II": 2, "III": 3}, r["GRADE"]),
            differentiation=None if r["DIFF"] in MISSING else int(r["DIFF"]),
            mitoses=None if r["MITOSES"] in MISSING else int(r["MITOSES"]),
            necrosis=None if r["NECROSE"] in MISSING else int(r["NECROSE"]),
            invasion=code({"D": "dermal", "DH": "dermo_hypodermal"}, r["INVASION"]),
            ulceration=r["ULCERATION"] == "1", ki67=num(r["KI67"]),
            resection=None if r["STATUT_R"] in MISSING else r["STATUT_R"],
            proposed=num(r["MARGE_RCP_CM"]), clinical=num(r["MARGE_CLIN_CM"]), histological=num(r["MARGE_HISTO_CM"]),
        ))
    return out


# --- Lyon (REDCap raw export decoded through its own data dictionary) -------------------------

def _choices(text: str) -> dict[str, str]:
    out = {}
    for part in text.split("|"):
        code, _, label = part.strip().partition(",")
        out[code.strip()] = label.strip()
    return out


def lyon(folder: Path) -> list[dict]:
    dictionary = list(csv.DictReader((folder / "CLMSLYON_DataDictionary.csv").open(encoding="utf-8-sig", newline="")))
    choices = {d["Variable / Field Name"]: _choices(d["Choices, Calculations, OR Slider Labels"])
               for d in dictionary if d["Choices, Calculations, OR Slider Labels"]}
    data_file = next(folder.glob("CLMSLYON_DATA_*.csv"))
    rows = list(csv.DictReader(data_file.open(encoding="utf-8-sig", newline="")))
    label = lambda f, v: None if v in MISSING else choices[f][v]  # noqa: E731
    labels = {
        "sexe": {"Homme": "male", "Femme": "female"},
        "localisation": {"Tête et cou": "head_neck", "Tronc": "trunk", "Membre supérieur": "upper_limb", "Membre inférieur": "lower_limb"},
        "presentation": {"Nodule": "nodular", "Ulcération": "ulcerated", "Végétant": "vegetative", "Plaque infiltrée": "infiltrated_patch"},
        "invasion": {"Derme": "dermal", "Derme et hypoderme": "dermo_hypodermal"},
    }
    decode = lambda f, v: None if label(f, v) is None else labels[f][label(f, v)]  # noqa: E731
    roman = {"Grade I": 1, "Grade II": 2, "Grade III": 3, "Grade 1": 1, "Grade 2": 2, "Grade 3": 3}
    diff = {"bien": 1, "moyennement": 2, "peu": 3}
    first_surgery: dict[str, dict] = {}
    for r in rows:
        if r["redcap_repeat_instrument"] == "chirurgie":
            prev = first_surgery.get(r["record_id"])
            if prev is None or r["chir_date"] < prev["chir_date"]:
                first_surgery[r["record_id"]] = r
    out = []
    for r in rows:
        if r["redcap_repeat_instrument"]:
            continue
        s = first_surgery.get(r["record_id"], {})
        nec = label("necrose", r["necrose"])
        out.append(_row(
            sex=decode("sexe", r["sexe"]),
            age=age(dt.date.fromisoformat(r["date_naissance"]), dt.date.fromisoformat(r["date_diag"])),
            immunosuppression=r["immunodep"] == "1",
            site=decode("localisation", r["localisation"]),
            presentation=decode("presentation", r["presentation"]),
            pain=r["douleur"] == "1", on_scar=r["cicatrice"] == "1",
            size_cm=None if r["taille_mm"] in MISSING else float(r["taille_mm"]) / 10,
            delay=num(r["delai_consult_mois"]),
            grade=None if r["grade_fnclcc"] in MISSING else roman[label("grade_fnclcc", r["grade_fnclcc"])],
            differentiation=None if r["differenciation"] in MISSING else diff[fold(label("differenciation", r["differenciation"])).split()[0]],
            mitoses=None if r["mitoses_10hpf"] in MISSING else int(r["mitoses_10hpf"]),
            necrosis=None if nec is None else (0 if fold(nec).startswith("absente") else 1 if "<" in nec else 2),
            invasion=decode("invasion", r["invasion"]),
            ulceration=r["ulceration_histo"] == "1", ki67=num(r["ki67"]),
            resection=None if s.get("statut_r") in MISSING else label("statut_r", s["statut_r"]),
            proposed=None if s.get("marge_rcp_mm") in MISSING else float(s["marge_rcp_mm"]) / 10,
            clinical=None if s.get("marge_clin_mm") in MISSING else float(s["marge_clin_mm"]) / 10,
            histological=None if s.get("marge_histo_mm") in MISSING else float(s["marge_histo_mm"]) / 10,
        ))
    return out


# --- Nîmes (hand-typed) ----------------------------------------------------------------------

_MONTHS = {"janvier": 1, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7,
           "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11, "decembre": 12}
_SITES = {
    "head_neck": ("cuir chevelu", "joue", "front", "tempe", "nez", "cou", "oreille", "menton", "levre", "visage"),
    "trunk": ("dos", "flanc", "thorax", "abdomen", "lombaire", "ventre", "sein"),
    "upper_limb": ("epaule", "bras", "avant-bras", "main", "coude", "poignet", "doigt"),
    "lower_limb": ("jambe", "cuisse", "mollet", "genou", "hanche", "pied", "cheville", "fesse"),
}


def partial_date(text: str) -> dt.date:
    t = fold(text)
    if m := re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", t):
        return dt.date(int(m[3]), int(m[2]), int(m[1]))
    if m := re.fullmatch(r"(\d{1,2})/(\d{4})", t):
        return dt.date(int(m[2]), int(m[1]), 15)
    if m := re.fullmatch(r"([a-z]+) (\d{4})", t):
        return dt.date(int(m[2]), _MONTHS[m[1]], 15)
    if re.fullmatch(r"\d{4}", t):
        return dt.date(int(t), 7, 1)
    raise ValueError(text)


def _size_cm(text: str) -> float | None:
    t = fold(text).replace(",", ".").replace(" ", "")
    if t in ("", "?"):
        return None
    if t.endswith("mm"):
        return float(t[:-2]) / 10
    return float(t.removesuffix("cm"))


def _margins(text: str) -> tuple[float | None, float | None]:
    clinical = histological = None
    for part in fold(text).split("/"):
        part = part.strip()
        m = re.fullmatch(r"(clinique |histo )?([\d,\.]+) ?(mm|cm)", part)
        if not m:
            continue
        value = float(m[2].replace(",", ".")) / (10 if m[3] == "mm" else 1)
        if m[1] == "histo ":
            histological = value
        else:
            clinical = value
    return clinical, histological


def nimes(folder: Path) -> list[dict]:
    text = (folder / "nimes_dossiers.txt").read_bytes().decode("mac_roman")
    rows = list(csv.DictReader(io.StringIO(text.replace("\r", "\n")), delimiter="\t"))
    out = []
    for r in rows:
        site = None
        if r["Siège"]:
            s = fold(r["Siège"])
            site = next(k for k, words in _SITES.items() if any(s.startswith(w) for w in words))
        grade_text = fold(r["Grade"]).replace("grade", "").replace("g", "").strip()
        mit = fold(r["Mitoses"])
        nec = fold(r["Nécrose"]).replace(" ", "")
        inv = fold(r["Infiltration"])
        ex = fold(r["Exérèse"])
        clinical, histological = _margins(r["Marges"])
        out.append(_row(
            sex=None if not r["Sexe"] else ("male" if fold(r["Sexe"]) in ("homme", "h") else "female"),
            age=age(partial_date(r["Né(e) le"]), partial_date(r["Diagnostic"])),
            immunosuppression=False, site=site,
            presentation={"nodule": "nodular", "nodulaire": "nodular", "ulcere": "ulcerated", "vegetant": "vegetative",
                          "plaque infiltree": "infiltrated_patch", "": None}[fold(r["Aspect"])],
            pain=fold(r["Douleur"]) == "oui", on_scar=fold(r["Cicatrice"]) == "oui",
            size_cm=_size_cm(r["Taille"]), delay=None,
            grade=None if not grade_text else {"1": 1, "2": 2, "3": 3, "i": 1, "ii": 2, "iii": 3}[grade_text],
            differentiation=None if not r["Différenciation"] else {"bien": 1, "moyennement": 2, "peu": 3}[fold(r["Différenciation"]).split()[0]],
            mitoses=None if not mit else (4 if mit.startswith("<") else int(re.match(r"\d+", mit)[0])),
            necrosis=None if not nec else (0 if nec in ("absente", "non") else 1 if nec.startswith("<") else 2),
            invasion=None if not inv else ("dermal" if inv in ("derme", "dermique") else "dermo_hypodermal"),
            ulceration=fold(r["Ulcération"]) == "oui",
            ki67=None if not r["Ki67"] else float(re.match(r"[\d,\.]+", r["Ki67"])[0].replace(",", ".")),
            resection=None if not ex else {"r0": "R0", "r1": "R1", "r2": "R2", "complete": "R0", "incomplete": "R1"}[ex],
            proposed=None, clinical=clinical, histological=histological,
        ))
    return out


def read_all(root: Path, date: str) -> dict[str, list[dict]]:
    return {
        "nice": nice(root / "nice" / date),
        "montpellier": montpellier(root / "montpellier" / date),
        "lyon": lyon(root / "lyon" / date),
        "nimes": nimes(root / "nimes" / date),
    }
