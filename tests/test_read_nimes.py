"""Reader of Nîmes' transcribed charts (``nimes_dossiers.txt``): the twin read back field by
field, every hand-typed variant of the contract, the free-text parsers on their own, and
hostile files."""

from __future__ import annotations

import datetime as dt
import string
import tempfile
from pathlib import Path
from typing import NamedTuple

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clms_etl.dates import impute
from clms_etl.data_queries import IDENTIFIER_MASK
from clms_etl.keys import pseudonym
from clms_etl import formats
from clms_etl.readers import engine, free_text
from clms_etl.readers.base import ImportFailure, ReadContext
from clms_etl.rules import ERROR, WARNING
from clms_etl.synth.generate import write_centre
from clms_etl.synth.identities import age_at
from clms_etl.synth.twin import build_twin

class _Nimes:
    """Nîmes' reader and free-text parsers as its declaration gives them: the engine reads the
    file (``clms_etl/data/formats/nimes.toml``), ``clms_etl.readers.free_text`` the free text."""

    DECLARATION = formats.load(formats.find("nimes"))
    FILE = DECLARATION.file.name

    def read(self, ctx):
        return engine.DeclaredReader(self.DECLARATION).read(ctx)

    def _decoder(field, both=False):
        def parse(self, text, *_):
            value, issues = free_text.decode(self.DECLARATION.column(field), text)
            return (value if both else value[0]), issues
        return parse

    parse_sex, parse_yes_no = _decoder("patient.sex"), _decoder("tumour.pain")
    parse_presentation, parse_grade = _decoder("tumour.presentation"), _decoder("tumour.fnclcc_grade")
    parse_differentiation = _decoder("tumour.differentiation_score")
    parse_necrosis, parse_invasion = _decoder("tumour.necrosis_score"), _decoder("tumour.invasion")
    parse_resection, parse_size = _decoder("surgery.resection_status"), _decoder("tumour.size_cm")
    parse_ki67, parse_site = _decoder("tumour.ki67_percent"), _decoder("tumour.site", both=True)
    parse_mitoses = _decoder("tumour.mitoses_per_10hpf", both=True)

    def parse_margins(self, text):
        (clinical, histological), issues = free_text.decode(self.DECLARATION.column("surgery.clinical_margin_cm"), text)
        return _Margins(clinical, histological, issues)

    def parse_date(self, text):
        return free_text.parse_date(text)

    def parse_note(self, text):
        return free_text.parse_note(self.DECLARATION.column("event.notes"), text)

    def parse_evolution(self, text):  # a cell's ";"-separated notes, each parsed
        notes = [] if text is None else [n.strip() for n in text.split(";") if n.strip()]
        return [_Note(n, *self.parse_note(n)) for n in notes]


class _Note(NamedTuple):
    text: str
    events: list
    issues: list


class _Margins(NamedTuple):
    clinical_cm: float | None
    histological_cm: float | None
    issues: list


nimes = _Nimes()
KEY = b"test-key-nimes"
DELIVERY = dt.date(2026, 11, 23)
HEADER = [
    "Dossier", "Patient", "Né(e) le", "Sexe", "Diagnostic", "Siège", "Taille", "Aspect", "Douleur",
    "Cicatrice", "Grade", "Différenciation", "Mitoses", "Nécrose", "Infiltration", "Ulcération",
    "Ki67", "Chirurgie", "Marges", "Exérèse", "Évolution", "Dernières nouvelles",
]
GOOD_ROW = {
    "Dossier": "D12345", "Patient": "DUPONT Jean", "Né(e) le": "12/03/1950", "Sexe": "Homme",
    "Diagnostic": "12/03/2014", "Siège": "jambe gauche", "Taille": "15 mm", "Aspect": "nodule",
    "Douleur": "oui", "Cicatrice": "non", "Grade": "G2", "Différenciation": "moyennement différencié",
    "Mitoses": "12/10 HPF", "Nécrose": "< 50 %", "Infiltration": "derme et hypoderme",
    "Ulcération": "non", "Ki67": "30 %", "Chirurgie": "20/03/2014",
    "Marges": "clinique 2 cm / histo 0,8 cm", "Exérèse": "R0",
    "Évolution": "récidive locale 06/2016; métastases osseuse et pulmonaire 2017; DCD 03/2018 (cLMS)",
    "Dernières nouvelles": "03/2018",
}


# --- helpers ------------------------------------------------------------------------------------


def _ctx(folder: Path) -> ReadContext:
    return ReadContext("nimes", folder, DELIVERY, KEY)


def _read(folder: Path):
    return nimes.read(_ctx(folder))


def _write(folder: Path, rows: list[dict], header: list[str] = HEADER, *, encoding: str = "mac_roman",
           eol: str = "\r", final_eol: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(r.get(h) or "") for h in header) for r in rows]
    text = eol.join(lines) + (eol if final_eol else "")
    path = folder / nimes.FILE
    path.write_bytes(text.encode(encoding))
    return path


def _row(**changes) -> dict:
    return {**GOOD_ROW, **changes}


def _queries(result, rule: str | None = None, severity: str | None = None) -> pl.DataFrame:
    q = result.queries_frame()
    if rule:
        q = q.filter(pl.col("rule") == rule)
    if severity:
        q = q.filter(pl.col("severity") == severity)
    return q


def _errors(result) -> pl.DataFrame:
    return _queries(result, severity=ERROR)


def _twin(tmp_path: Path, seed: int = 0):
    truth = build_twin(seed).for_centre("nimes")
    write_centre(tmp_path / f"out-{seed}", "nimes", "nimes", truth, seed, 0.0, DELIVERY)
    folder = tmp_path / f"out-{seed}" / "nimes" / DELIVERY.isoformat()
    return truth, folder


def _pid(local_id: str) -> str:
    return pseudonym(KEY, "nimes", local_id)


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) < 1e-9


# --- the twin, field by field ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=[0, 1, 2])
def twin(request, tmp_path_factory):
    truth, folder = _twin(tmp_path_factory.mktemp("twin"), request.param)
    return truth, folder, _read(folder)


def test_clean_twin_has_no_error_query(twin):
    _, _, result = twin
    assert _errors(result).is_empty(), _errors(result).to_dicts()


def test_rows_read_per_table_equal_truth_counts(twin):
    truth, _, result = twin
    for table in ("patient", "tumour", "surgery", "event"):
        assert result.frames[table].height == getattr(truth, table).height, table
    assert result.source_rows == {nimes.FILE: truth.patient.height}


def test_patients_recovered_field_by_field(twin):
    truth, _, result = twin
    got = {r["patient_id"]: r for r in result.frames["patient"].iter_rows(named=True)}
    for p in truth.patient.iter_rows(named=True):
        r = got[_pid(p["local_id"])]
        assert r["centre"] == "nimes"
        assert r["sex"] == p["sex"]
        assert r["age_at_diagnosis_years"] == age_at(p["birth_date"], p["diagnosis_date"])
        assert r["diagnosis_date"] == impute(p["diagnosis_date"], r["diagnosis_date_precision"])
        assert r["vital_status"] == p["vital_status"]
        assert r["record_complete"] is True
        assert r["immunosuppression"] is None  # no such column in the Nîmes charts


def test_tumours_recovered_field_by_field(twin):
    truth, _, result = twin
    got = {r["patient_id"]: r for r in result.frames["tumour"].iter_rows(named=True)}
    fields = ("site", "presentation", "pain", "on_scar", "fnclcc_grade", "differentiation_score",
              "necrosis_score", "invasion", "histological_ulceration")
    for t in truth.tumour.iter_rows(named=True):
        r = got[_pid(t["patient_key"].split(":", 1)[1])]
        for f in fields:
            assert r[f] == t[f], (f, r[f], t[f])
        assert _close(r["size_cm"], t["size_cm"])
        assert _close(r["ki67_percent"], t["ki67_percent"])
        if t["site_detail"] is not None:
            assert r["site_detail"] == t["site_detail"]
        count = t["mitoses_per_10hpf"]
        if r["mitoses_is_upper_bound"]:
            assert r["mitoses_per_10hpf"] == 5 and count < 5  # "< 5": the bound, flagged
        else:
            assert r["mitoses_per_10hpf"] == count
            assert r["mitoses_is_upper_bound"] is (None if count is None else False)


def test_upper_bound_mitoses_are_flagged_with_a_warning(twin):
    _, _, result = twin
    flagged = result.frames["tumour"].filter(pl.col("mitoses_is_upper_bound"))
    warned = _queries(result, "mitoses_upper_bound", WARNING)
    assert sorted(flagged["source_row"]) == sorted(warned["row"])


def test_surgeries_recovered_field_by_field(twin):
    truth, _, result = twin
    got = {r["patient_id"]: r for r in result.frames["surgery"].iter_rows(named=True)}
    for s in truth.surgery.iter_rows(named=True):
        r = got[_pid(s["patient_key"].split(":", 1)[1])]
        assert (r["surgery_no"], r["surgery_kind"]) == (1, "primary_excision")
        assert r["surgery_date"] == impute(s["surgery_date"], r["surgery_date_precision"])
        assert _close(r["clinical_margin_cm"], s["clinical_margin_cm"])
        assert _close(r["histological_margin_cm"], s["histological_margin_cm"])
        assert r["resection_status"] == s["resection_status"]
        assert r["proposed_margin_cm"] is None  # Nîmes charts carry no tumour-board margin


def test_events_recovered_in_order_with_dates_within_precision(twin):
    truth, _, result = twin
    got: dict[str, list[dict]] = {}
    for r in result.frames["event"].sort("patient_id", "event_no").iter_rows(named=True):
        got.setdefault(r["patient_id"], []).append(r)
    want: dict[str, list[dict]] = {}
    for e in truth.event.sort("patient_key", "event_no").iter_rows(named=True):
        want.setdefault(_pid(e["patient_key"].split(":", 1)[1]), []).append(e)
    assert got.keys() == want.keys()
    for pid, events in want.items():
        mine = got[pid]
        assert [r["event_no"] for r in mine] == list(range(1, len(events) + 1))
        for r, e in zip(mine, events):
            assert (r["event_kind"], r["metastasis_site"], r["death_cause"]) == (
                e["event_kind"], e["metastasis_site"], e["death_cause"])
            assert r["event_date"] == impute(e["event_date"], r["event_date_precision"])


def test_provenance_points_at_the_source_line(twin):
    _, folder, result = twin
    lines = (folder / nimes.FILE).read_bytes().decode("mac_roman").split("\r")
    for table, frame in result.frames.items():
        assert frame["row_id"].n_unique() == frame.height, table
        assert set(frame["source_file"]) <= {nimes.FILE}
        assert frame["source_sheet"].null_count() == frame.height
    for r in result.frames["patient"].iter_rows(named=True):
        line = lines[r["source_row"] - 1].split("\t")
        assert _pid(line[0]) == r["patient_id"]


def test_no_identifier_in_frames_or_queries(twin):
    truth, _, result = twin
    secrets = set()
    for p in truth.patient.iter_rows(named=True):
        secrets |= {p["local_id"], p["last_name"], p["last_name"].upper(), p["first_name"],
                    p["birth_date"].strftime("%d/%m/%Y"), p["birth_date"].isoformat(),
                    p["birth_date"].strftime("%m/%Y")}  # a partial birth date, or its imputed day
    texts = []
    for frame in [*result.frames.values(), result.queries_frame()]:
        for column, dtype in frame.schema.items():
            if dtype == pl.String:
                texts += [v for v in frame[column].to_list() if v]
            elif dtype == pl.Date and column == "birth_date":
                raise AssertionError("birth date in a frame")
    blob = "\n".join(texts)
    leaked = [s for s in secrets if s and len(s) > 2 and s in blob]
    assert not leaked


# --- the contract's variants, one line each --------------------------------------------------------


def test_every_contract_example_is_understood(tmp_path):
    rows = [
        _row(Dossier="D1"),
        _row(Dossier="D2", **{"Né(e) le": "3/1950", "Diagnostic": "mars 2014", "Sexe": "F", "Siège": "cuir chevelu",
                              "Taille": "1,5 cm", "Aspect": "ulcéré", "Grade": "1", "Différenciation": "bien",
                              "Mitoses": "12 mitoses / 10 champs", "Nécrose": "absente", "Infiltration": "derme",
                              "Ki67": "30", "Marges": "2 cm", "Exérèse": "complète",
                              "Évolution": "RL 06/2016; décès 03/2018 (autre cause)",
                              "Dernières nouvelles": "03/2018"}),
        _row(Dossier="D3", **{"Diagnostic": "2014", "Sexe": "Femme", "Siège": "épaule droite", "Taille": "2cm",
                              "Aspect": "végétant", "Grade": "grade II", "Différenciation": "peu",
                              "Mitoses": "< 5", "Nécrose": ">50%", "Infiltration": "dermo-hypodermique",
                              "Marges": "histo 5 mm", "Exérèse": "incomplète",
                              "Évolution": "métastase osseuse 2017; DCD 2018 (cause inconnue)",
                              "Dernières nouvelles": "2018"}),
        _row(Dossier="D4", **{"Sexe": "H", "Siège": "avant-bras", "Taille": "?", "Aspect": "plaque infiltrée",
                              "Grade": "III", "Différenciation": "peu différencié", "Mitoses": "12",
                              "Nécrose": "≥ 50 %", "Infiltration": "dermique", "Marges": "clinique 15 mm",
                              "Exérèse": "R1", "Évolution": "", "Dernières nouvelles": "12/03/2019"}),
        _row(Dossier="D5", **{"Siège": "flanc", "Aspect": "nodulaire", "Nécrose": "non",
                              "Exérèse": "R2", "Évolution": "", "Dernières nouvelles": ""}),
        _row(Dossier="D6", **{"Siège": "joue", "Nécrose": "<50%", "Évolution": "", "Dernières nouvelles": "2019"}),
        _row(Dossier="D7", **{"Siège": "cuisse", "Évolution": "", "Dernières nouvelles": "2019"}),
        _row(Dossier="D8", **{"Siège": "dos", "Évolution": "", "Dernières nouvelles": "2019"}),
    ]
    result = _read(_write(tmp_path, rows).parent)
    assert _errors(result).is_empty(), _errors(result).to_dicts()
    t = {r["source_row"]: r for r in result.frames["tumour"].iter_rows(named=True)}
    p = {r["source_row"]: r for r in result.frames["patient"].iter_rows(named=True)}
    s = {r["source_row"]: r for r in result.frames["surgery"].iter_rows(named=True)}
    assert [t[i]["site"] for i in range(2, 10)] == [
        "lower_limb", "head_neck", "upper_limb", "upper_limb", "trunk", "head_neck", "lower_limb", "trunk"]
    assert t[2]["site_detail"] == "jambe gauche"
    assert [t[i]["size_cm"] for i in (2, 3, 4, 5)] == [1.5, 1.5, 2.0, None]
    assert [t[i]["presentation"] for i in (2, 3, 4, 5, 6)] == [
        "nodular", "ulcerated", "vegetative", "infiltrated_patch", "nodular"]
    assert [t[i]["fnclcc_grade"] for i in (2, 3, 4, 5)] == [2, 1, 2, 3]
    assert [t[i]["differentiation_score"] for i in (2, 3, 4, 5)] == [2, 1, 3, 3]
    assert [(t[i]["mitoses_per_10hpf"], t[i]["mitoses_is_upper_bound"]) for i in (2, 3, 4, 5)] == [
        (12, False), (12, False), (5, True), (12, False)]
    assert [t[i]["necrosis_score"] for i in (2, 3, 4, 5, 6, 7)] == [1, 0, 2, 2, 0, 1]
    assert [t[i]["invasion"] for i in (2, 3, 4, 5)] == ["dermo_hypodermal", "dermal", "dermo_hypodermal", "dermal"]
    assert [t[i]["ki67_percent"] for i in (2, 3)] == [30.0, 30.0]
    assert (t[2]["pain"], t[2]["on_scar"], t[2]["histological_ulceration"]) == (True, False, False)
    assert [p[i]["sex"] for i in (2, 3, 4, 5)] == ["male", "female", "female", "male"]
    assert [(p[i]["diagnosis_date"], p[i]["diagnosis_date_precision"]) for i in (2, 3, 4)] == [
        (dt.date(2014, 3, 12), "day"), (dt.date(2014, 3, 15), "month"), (dt.date(2014, 7, 1), "year")]
    assert p[2]["age_at_diagnosis_years"] == 64
    assert [(s[i]["clinical_margin_cm"], s[i]["histological_margin_cm"]) for i in (2, 3, 4, 5)] == [
        (2.0, 0.8), (2.0, None), (None, 0.5), (1.5, None)]
    assert [s[i]["resection_status"] for i in (2, 3, 4, 5, 6)] == ["R0", "R0", "R1", "R1", "R2"]
    assert [p[i]["vital_status"] for i in (2, 3, 4, 5, 6)] == ["dead", "dead", "dead", "alive", None]

    events = result.frames["event"]
    first = events.filter(pl.col("source_row") == 2).sort("event_no")
    assert first.select("event_kind", "event_date", "metastasis_site", "death_cause").rows() == [
        ("local_recurrence", dt.date(2016, 6, 15), None, None),
        ("metastasis", dt.date(2017, 7, 1), "bone", None),
        ("metastasis", dt.date(2017, 7, 1), "lung", None),
        ("death", dt.date(2018, 3, 15), None, "clms"),
    ]
    assert events.filter(pl.col("source_row") == 3)["death_cause"].to_list()[-1] == "other"
    assert events.filter(pl.col("source_row") == 4)["death_cause"].to_list()[-1] == "unknown"
    # dead patients: no last_news row; alive: last news; no news at all: nothing
    assert events.filter(pl.col("source_row") <= 4)["event_kind"].to_list().count("last_news") == 0
    assert events.filter(pl.col("source_row") == 5)["event_kind"].to_list() == ["last_news"]
    assert events.filter(pl.col("source_row") == 6).is_empty()
    # partial dates are flagged
    assert not _queries(result, "partial_date_imputed", WARNING).is_empty()
    assert not _queries(result, "mitoses_upper_bound", WARNING).filter(pl.col("row") == 4).is_empty()


def test_crlf_and_lf_line_ends_read_like_cr(tmp_path):
    rows = [_row(Dossier="D1"), _row(Dossier="D2", Siège="nez")]
    frames = []
    for eol in ("\r", "\r\n", "\n"):
        result = _read(_write(tmp_path / repr(eol), rows, eol=eol).parent)
        assert _errors(result).is_empty()
        frames.append(result.frames)
    for table in frames[0]:
        assert frames[0][table].equals(frames[1][table]) and frames[0][table].equals(frames[2][table])


def test_event_ties_order_recurrence_metastasis_death(tmp_path):
    row = _row(**{"Évolution": "DCD 06/2017 (cLMS); métastases pulmonaire et osseuse 06/2017; RL 06/2017",
                  "Dernières nouvelles": "06/2017"})
    result = _read(_write(tmp_path, [row]).parent)
    ev = result.frames["event"].sort("event_no")
    assert ev.select("event_kind", "metastasis_site").rows() == [
        ("local_recurrence", None), ("metastasis", "lung"), ("metastasis", "bone"), ("death", None)]


# --- data queries on bad cells ---------------------------------------------------------------------


@pytest.mark.parametrize(("column", "value", "rule"), [
    ("Sexe", "X", "unknown_code"),
    ("Aspect", "kystique", "unknown_code"),
    ("Nécrose", "massive?", "unknown_code"),
    ("Exérèse", "R3", "unknown_code"),
    ("Grade", "IV", "unknown_code"),
    ("Grade", "G4", "unknown_code"),
    ("Différenciation", "très", "unknown_code"),
    ("Infiltration", "muscle", "unknown_code"),
    ("Douleur", "peut-être", "unknown_code"),
    ("Diagnostic", "32/13/2014", "unparseable_date"),
    ("Diagnostic", "?", "unparseable_date"),
    ("Chirurgie", "??/03/2012", "unparseable_date"),
    ("Dernières nouvelles", "inconnue", "unparseable_date"),
    ("Taille", "15", "missing_unit"),
    ("Taille", "grosse", "unparseable_number"),
    ("Mitoses", "beaucoup", "unparseable_number"),
    ("Ki67", "150 %", "number_out_of_range"),
    ("Mitoses", "2200000000", "number_out_of_range"),
    ("Taille", "9" * 400 + " mm", "number_out_of_range"),
    ("Marges", "large", "unparseable_margins"),
    ("Siège", "ailleurs", "unknown_code"),
    ("Siège", "cou et thorax", "ambiguous_site"),
    ("Évolution", "guéri 2017", "unparsed_evolution_note"),
    ("Évolution", "DCD 03/2018 (accident)", "unknown_code"),
])
def test_bad_cell_gives_an_error_query_naming_row_and_column(tmp_path, column, value, rule):
    rows = [_row(Dossier="D1"), _row(Dossier="D2", **{column: value})]
    result = _read(_write(tmp_path, rows).parent)
    errors = _errors(result)
    assert errors.select("row", "field", "rule").rows() == [(3, column, rule)], errors.to_dicts()
    hit = errors.row(0, named=True)
    assert hit["patient_id"] == _pid("D2") and hit["row_id"]
    # the row is still there (never dropped)
    assert result.frames["patient"].height == 2


def test_validation_queries_show_the_cells_as_typed_in_the_declared_encoding(tmp_path):
    """« Valeur reçue » of a validation query is the cell as the Mac Roman file holds it, under an
    accented header too (read back in another encoding, "Évolution" matched no column and the
    canonical value was shown; "février" came back as "fŽvrier")."""
    import validations.canonical  # noqa: F401  (declares what the validate step checks)
    from clms_etl.centre_import import read_and_validate
    from clms_etl.centres import load_registry
    from clms_etl.deliveries import latest_delivery

    cells = {"Chirurgie": "février 2012", "Évolution": "récidive locale 06/2010; DCD 03/2018 (cLMS)"}
    _write(tmp_path / "nimes" / DELIVERY.isoformat(), [_row(Dossier="D1"), _row(Dossier="D2", **cells)])
    imported = read_and_validate(load_registry(tmp_path)["nimes"], latest_delivery(tmp_path, "nimes"), KEY)
    checked = imported.queries.slice(imported.validated.from_reader).filter(pl.col("row") == 3)
    shown = dict(checked.select("field", "value").unique().iter_rows())
    assert shown == cells, checked.select("field", "rule", "value").to_dicts()


def test_unparsed_note_is_quoted_and_other_notes_still_read(tmp_path):
    row = _row(**{"Évolution": "RL 06/2016; chimio en cours; DCD 03/2018 (cLMS)"})
    result = _read(_write(tmp_path, [row]).parent)
    errors = _errors(result)
    assert errors["rule"].to_list() == ["unparsed_evolution_note"]
    assert "chimio en cours" in errors["message"][0] and errors["value"][0] == "chimio en cours"
    assert result.frames["event"]["event_kind"].to_list() == ["local_recurrence", "death"]


def test_unknown_metastasis_site_is_other_with_a_warning(tmp_path):
    row = _row(**{"Évolution": "métastase cérébrale 2017; DCD 03/2018 (cLMS)"})
    result = _read(_write(tmp_path, [row]).parent)
    assert _errors(result).is_empty()
    assert result.frames["event"]["metastasis_site"].to_list() == ["other", None]
    assert _queries(result, "metastasis_site_other", WARNING).height == 1


def test_stray_spaces_and_odd_case_are_read_with_a_warning(tmp_path):
    row = _row(Sexe="  HOMME ", Aspect=" NODULE", Infiltration=" DERME ET HYPODERME ", Exérèse=" r1")
    result = _read(_write(tmp_path, [row]).parent)
    assert _errors(result).is_empty()
    assert sorted(_queries(result, "value_normalised", WARNING)["field"]) == sorted(
        ["Sexe", "Aspect", "Infiltration", "Exérèse"])
    t = result.frames["tumour"].row(0, named=True)
    assert (t["presentation"], t["invasion"]) == ("nodular", "dermo_hypodermal")
    assert result.frames["surgery"]["resection_status"][0] == "R1"


def test_dead_patient_with_other_last_news_gets_a_warning(tmp_path):
    result = _read(_write(tmp_path, [_row(**{"Dernières nouvelles": "01/01/2019"})]).parent)
    assert _queries(result, "last_news_of_dead_patient", WARNING).height == 1
    assert "last_news" not in result.frames["event"]["event_kind"].to_list()


def test_undated_or_repeated_events_are_kept_for_validation(tmp_path):
    # event_date_missing and multiple_deaths are validation's rules on the canonical rows
    row = _row(**{"Évolution": "RL; DCD 03/2018 (cLMS); décès 04/2018 (autre cause)"})
    result = _read(_write(tmp_path, [row]).parent)
    events = result.frames["event"].sort("event_no")
    assert events.select("event_kind", "event_date").rows() == [
        ("death", dt.date(2018, 3, 15)), ("death", dt.date(2018, 4, 15)), ("local_recurrence", None)]
    assert _errors(result).is_empty()


def test_birth_date_problems_are_masked(tmp_path):
    result = _read(_write(tmp_path, [_row(**{"Né(e) le": "31/02/1950"})]).parent)
    q = _errors(result).row(0, named=True)
    assert (q["rule"], q["value"]) == ("unparseable_date", IDENTIFIER_MASK)
    assert "1950" not in q["message"]
    assert result.frames["patient"]["age_at_diagnosis_years"][0] is None


# --- structure: duplicates, ids, ragged lines ------------------------------------------------------


def test_identical_duplicate_rows_flag_only_the_copies(tmp_path):
    rows = [_row(Dossier="D1"), _row(Dossier="D2"), _row(Dossier="D1"), _row(Dossier="d1 ")]
    result = _read(_write(tmp_path, rows).parent)
    dup = _queries(result, "duplicate_patient", ERROR)
    # "d1 " is the same patient as "D1" (trimmed, upper case) but its content differs -> all three
    assert sorted(dup["row"]) == [2, 4, 5]
    assert set(dup["value"]) == {IDENTIFIER_MASK}
    assert result.frames["patient"].height == 4  # never dropped


def test_identical_copies_leave_the_first_row_alone(tmp_path):
    rows = [_row(Dossier="D1"), _row(Dossier="D2"), _row(Dossier="D1")]
    result = _read(_write(tmp_path, rows).parent)
    assert _queries(result, "duplicate_patient")["row"].to_list() == [4]


def test_missing_patient_id_is_an_error_and_the_row_is_kept(tmp_path):
    result = _read(_write(tmp_path, [_row(Dossier="D1"), _row(Dossier="  ")]).parent)
    q = _queries(result, "missing_patient_id", ERROR)
    assert q["row"].to_list() == [3]
    assert result.frames["patient"].height == 2
    assert result.frames["patient"]["patient_id"].null_count() == 1


def test_ragged_line_is_an_error_query(tmp_path):
    path = _write(tmp_path, [_row(Dossier="D1"), _row(Dossier="D2")])
    lines = path.read_bytes().split(b"\r")
    lines[2] = lines[2] + b"\textra"
    path.write_bytes(b"\r".join(lines))
    result = _read(tmp_path)
    assert _queries(result, "wrong_field_count", ERROR)["row"].to_list() == [3]
    assert result.frames["patient"].height == 2


def test_blank_line_between_records_is_skipped_with_a_warning(tmp_path):
    path = _write(tmp_path, [_row(Dossier="D1"), _row(Dossier="D2")])
    lines = path.read_bytes().split(b"\r")
    path.write_bytes(b"\r".join([lines[0], lines[1], b"", lines[2], b"", b""]))
    result = _read(tmp_path)
    assert _queries(result, "empty_row", WARNING)["row"].to_list() == [3]
    assert result.frames["patient"]["source_row"].to_list() == [2, 4]
    assert _errors(result).is_empty()


def test_structural_checks_flag_duplicates_missing_ids_and_ragged_lines(tmp_path):
    # (the checks of the former structural schema, now the engine's own)
    path = _write(tmp_path, [{"Dossier": "A"}, {"Dossier": "B"}, {"Dossier": "A"}, {"Sexe": "F"}])
    lines = path.read_bytes().split(b"\r")
    lines[4] = lines[4][:-1]  # row 5: one field short
    path.write_bytes(b"\r".join(lines))
    q = _read(tmp_path).queries_frame().filter(pl.col("severity") == ERROR)
    got = sorted(q.select("rule", "row").rows())
    assert got == [("duplicate_patient", 4), ("missing_patient_id", 5), ("wrong_field_count", 5)]


# --- hostile files -----------------------------------------------------------------------------------


def _fails(folder: Path, *words: str) -> ImportFailure:
    with pytest.raises(ImportFailure) as info:
        _read(folder)
    message = str(info.value)
    assert nimes.FILE in message
    for w in words:
        assert w in message, message
    return info.value


def test_missing_file_is_an_import_failure(tmp_path):
    _fails(tmp_path, "absent")


def test_empty_file_is_an_import_failure(tmp_path):
    (tmp_path / nimes.FILE).write_bytes(b"")
    _fails(tmp_path, "vide")


def test_header_only_is_an_import_failure(tmp_path):
    _write(tmp_path, [])
    _fails(tmp_path, "en-tête seul")


def test_truncated_file_is_an_import_failure(tmp_path):
    path = _write(tmp_path, [_row(Dossier=f"D{i}") for i in range(5)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    _fails(tmp_path, "tronqué")


def test_binary_garbage_is_an_import_failure(tmp_path):
    (tmp_path / nimes.FILE).write_bytes(bytes(range(256)) * 64)
    _fails(tmp_path, "binaire")


def test_duplicated_header_is_an_import_failure(tmp_path):
    _write(tmp_path, [_row()], header=HEADER + ["Grade"])
    failure = _fails(tmp_path, "Grade")
    assert failure.column == "Grade"


def test_missing_required_column_names_file_and_column(tmp_path):
    _write(tmp_path, [_row()], header=[h for h in HEADER if h != "Nécrose"])
    failure = _fails(tmp_path, "Nécrose")
    assert (failure.file, failure.column) == (nimes.FILE, "Nécrose")


def test_patient_name_column_is_optional(tmp_path):
    result = _read(_write(tmp_path, [_row()], header=[h for h in HEADER if h != "Patient"]).parent)
    assert _errors(result).is_empty()


def test_unknown_extra_column_is_a_warning(tmp_path):
    result = _read(_write(tmp_path, [_row(Remarque="RAS")], header=HEADER + ["Remarque"]).parent)
    q = _queries(result, "unknown_column", WARNING)
    assert q["field"].to_list() == ["Remarque"]
    assert _errors(result).is_empty()


def test_columns_are_matched_by_name_not_position(tmp_path):
    shuffled = HEADER[::-1]
    result = _read(_write(tmp_path, [_row()], header=shuffled).parent)
    assert _errors(result).is_empty()
    assert result.frames["tumour"]["site"][0] == "lower_limb"


def test_fifty_megabyte_single_line_is_an_import_failure(tmp_path):
    (tmp_path / nimes.FILE).write_bytes(b"x" * (50 * 1024 * 1024))
    _fails(tmp_path)


def test_fifty_megabyte_record_line_gives_queries(tmp_path):
    path = _write(tmp_path, [_row(Dossier="D1")])
    with open(path, "ab") as handle:
        handle.write(b"D2\t" + b"y" * (50 * 1024 * 1024) + b"\r")
    result = _read(tmp_path)
    assert result.frames["patient"].height == 2
    assert not _queries(result, "value_too_long", ERROR).is_empty()
    assert not _queries(result, "wrong_field_count", ERROR).is_empty()
    assert max(len(v or "") for v in result.queries_frame()["value"]) <= 201


def test_utf8_file_is_read_with_a_wrong_encoding_warning(tmp_path):
    rows = [_row(Dossier="D1", Siège="épaule droite", Nécrose="≥ 50 %")]
    result = _read(_write(tmp_path, rows, encoding="utf-8").parent)
    assert _queries(result, "wrong_encoding", WARNING).height == 1
    assert _errors(result).is_empty()
    assert result.frames["tumour"]["site_detail"][0] == "épaule droite"
    assert result.frames["tumour"]["necrosis_score"][0] == 2


def test_mac_roman_file_has_no_encoding_warning(tmp_path):
    result = _read(_write(tmp_path, [_row(Siège="épaule droite")]).parent)
    assert _queries(result, "wrong_encoding").is_empty()
    assert result.frames["tumour"]["site_detail"][0] == "épaule droite"


def test_missing_final_line_end_is_a_warning_not_a_failure(tmp_path):
    result = _read(_write(tmp_path, [_row()], final_eol=False).parent)
    assert _queries(result, "missing_final_line_end", WARNING).height == 1
    assert result.frames["patient"].height == 1


# --- pure parsers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "site"), [
    ("jambe gauche", "lower_limb"), ("cuisse", "lower_limb"), ("mollet droit", "lower_limb"),
    ("genou", "lower_limb"), ("pied", "lower_limb"), ("cheville G", "lower_limb"), ("hanche", "lower_limb"),
    ("fesse droite", "lower_limb"), ("membre inférieur", "lower_limb"), ("dos du pied", "lower_limb"),
    ("bras", "upper_limb"), ("avant-bras droit", "upper_limb"), ("avant bras", "upper_limb"),
    ("coude", "upper_limb"), ("poignet", "upper_limb"), ("main", "upper_limb"), ("doigt", "upper_limb"),
    ("épaule droite", "upper_limb"), ("Epaule gauche", "upper_limb"), ("dos de la main", "upper_limb"),
    ("cuir chevelu", "head_neck"), ("front", "head_neck"), ("tempe", "head_neck"), ("joue", "head_neck"),
    ("nez", "head_neck"), ("oreille", "head_neck"), ("menton", "head_neck"), ("lèvre", "head_neck"),
    ("cou", "head_neck"), ("nuque", "head_neck"), ("visage", "head_neck"), ("paupière", "head_neck"),
    ("tête", "head_neck"),
    ("dos", "trunk"), ("thorax", "trunk"), ("abdomen", "trunk"), ("flanc gauche", "trunk"),
    ("lombaire", "trunk"), ("sein", "trunk"), ("ventre", "trunk"), ("tronc", "trunk"),
    ("omoplate", "trunk"), ("pubis", "trunk"), ("région lombaire droite", "trunk"),
    ("cuisses", "lower_limb"), ("genoux", "lower_limb"),
])
def test_site_lexicon(text, site):
    (got, detail), issues = nimes.parse_site(text)
    assert (got, detail, issues) == (site, text, [])


@pytest.mark.parametrize(("text", "rule"), [("ailleurs", "unknown_code"), ("cou et thorax", "ambiguous_site"),
                                            ("aisselle", "unknown_code")])
def test_site_not_understood_keeps_the_text(text, rule):
    (site, detail), issues = nimes.parse_site(text)
    assert site is None and detail == text and [i.rule for i in issues] == [rule]


@pytest.mark.parametrize(("text", "expected"), [
    ("clinique 2 cm / histo 0,8 cm", (2.0, 0.8)), ("2 cm", (2.0, None)), ("histo 5 mm", (None, 0.5)),
    ("clinique 15 mm", (1.5, None)), ("clinique 1 cm / histo 0 mm", (1.0, 0.0)), ("", (None, None)),
    (None, (None, None)), ("Clinique 2,5 cm / Histo 12 mm", (2.5, 1.2)), ("0", (0.0, None)),
])
def test_parse_margins(text, expected):
    clinical, histo, issues = nimes.parse_margins(text)
    assert (clinical, histo) == expected and issues == []


@pytest.mark.parametrize(("text", "rule"), [
    ("2 / 1", "missing_unit"), ("large", "unparseable_margins"), ("clinique 2 cm / clinique 3 cm", "ambiguous_margins"),
    ("2 cm / 0,8 cm", "margins_unlabelled"), ("1 cm / 2 cm / 3 cm", "unparseable_margins"),
])
def test_parse_margins_problems(text, rule):
    assert rule in [i.rule for i in nimes.parse_margins(text).issues]


@pytest.mark.parametrize(("text", "expected"), [
    ("12", (12, False)), ("12/10 HPF", (12, False)), ("12 mitoses / 10 champs", (12, False)),
    ("< 5", (5, True)), ("<5", (5, True)), ("0", (0, False)), ("1 mitose / 10 champs", (1, False)),
])
def test_parse_mitoses(text, expected):
    value, issues = nimes.parse_mitoses(text)
    assert value == expected
    assert [i.rule for i in issues] == (["mitoses_upper_bound"] if expected[1] else [])


@pytest.mark.parametrize(("text", "expected"), [("15 mm", 1.5), ("1,5 cm", 1.5), ("2cm", 2.0), ("?", None),
                                                ("", None), ("0,3 cm", 0.3), ("9 cm", 9.0)])
def test_parse_size(text, expected):
    assert nimes.parse_size(text) == (expected, [])


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("G2", 2), ("grade II", 2), ("III", 3), ("I", 1),
                                                ("grade 3", 3), ("g1", 1)])
def test_parse_grade(text, expected):
    assert nimes.parse_grade(text) == (expected, [])


@pytest.mark.parametrize(("text", "expected"), [
    ("bien", 1), ("moyennement", 2), ("peu", 3), ("bien différencié", 1), ("peu différencié", 3),
    ("moyennement différenciée", 2)])
def test_parse_differentiation(text, expected):
    assert nimes.parse_differentiation(text) == (expected, [])


@pytest.mark.parametrize(("text", "expected"), [
    ("absente", 0), ("non", 0), ("< 50 %", 1), ("<50%", 1), (">50%", 2), ("≥ 50 %", 2), (">= 50 %", 2)])
def test_parse_necrosis(text, expected):
    assert nimes.parse_necrosis(text) == (expected, [])


@pytest.mark.parametrize(("text", "expected"), [
    ("derme", "dermal"), ("dermique", "dermal"), ("derme et hypoderme", "dermo_hypodermal"),
    ("dermo-hypodermique", "dermo_hypodermal")])
def test_parse_invasion(text, expected):
    assert nimes.parse_invasion(text) == (expected, [])


@pytest.mark.parametrize(("text", "expected"), [("R0", "R0"), ("R1", "R1"), ("R2", "R2"), ("complète", "R0"),
                                                ("incomplète", "R1"), ("Complete", "R0")])
def test_parse_resection(text, expected):
    assert nimes.parse_resection(text) == (expected, [])


@pytest.mark.parametrize(("text", "expected"), [("30 %", 30.0), ("30", 30.0), ("30%", 30.0), ("2,5 %", 2.5)])
def test_parse_ki67(text, expected):
    assert nimes.parse_ki67(text) == (expected, [])


@pytest.mark.parametrize(("text", "value", "precision"), [
    ("12/03/2014", dt.date(2014, 3, 12), "day"), ("3/2014", dt.date(2014, 3, 15), "month"),
    ("mars 2014", dt.date(2014, 3, 15), "month"), ("2014", dt.date(2014, 7, 1), "year"),
    ("février 2016", dt.date(2016, 2, 15), "month"),
])
def test_parse_date(text, value, precision):
    parsed, issues = nimes.parse_date(text)
    assert (parsed.value, parsed.precision) == (value, precision)
    assert [i.rule for i in issues] == ([] if precision == "day" else ["partial_date_imputed"])


def _events(text):
    return [(e.kind, e.date and e.date.value, e.metastasis_site, e.death_cause)
            for note in nimes.parse_evolution(text) for e in note.events]


def test_parse_evolution_contract_examples():
    assert _events("récidive locale 06/2016; métastase osseuse 2017; DCD 03/2018 (cLMS)") == [
        ("local_recurrence", dt.date(2016, 6, 15), None, None),
        ("metastasis", dt.date(2017, 7, 1), "bone", None),
        ("death", dt.date(2018, 3, 15), None, "clms"),
    ]
    assert _events("RL 06/2016") == [("local_recurrence", dt.date(2016, 6, 15), None, None)]
    assert _events("métastases osseuse et pulmonaire 2017") == [
        ("metastasis", dt.date(2017, 7, 1), "bone", None), ("metastasis", dt.date(2017, 7, 1), "lung", None)]
    assert _events("métastases cutanée, hépatique et ganglionnaire mars 2017; métastase colique 2018") == [
        ("metastasis", dt.date(2017, 3, 15), "skin", None), ("metastasis", dt.date(2017, 3, 15), "liver", None),
        ("metastasis", dt.date(2017, 3, 15), "lymph_node", None), ("metastasis", dt.date(2018, 7, 1), "colon", None)]
    assert _events("décès 03/2018 (autre cause)") == [("death", dt.date(2018, 3, 15), None, "other")]
    assert _events("DCD 12/03/2018 (cause inconnue)") == [("death", dt.date(2018, 3, 12), None, "unknown")]
    assert _events("DCD 2018") == [("death", dt.date(2018, 7, 1), None, None)]
    assert _events("") == [] and _events(None) == [] and _events(" ; ;") == []


def test_parse_evolution_never_ignores_a_note():
    notes = nimes.parse_evolution("RL 2016; n'importe quoi; métastase surrénalienne 2017")
    assert [n.text for n in notes] == ["RL 2016", "n'importe quoi", "métastase surrénalienne 2017"]
    assert notes[1].events == [] and [i.rule for i in notes[1].issues] == ["unparsed_evolution_note"]
    assert notes[2].events[0].metastasis_site == "other"
    assert "metastasis_site_other" in [i.rule for i in notes[2].issues]


# --- property-based: arbitrary text never raises -----------------------------------------------------

# Every character a Mac Roman file can hold except the tab and line ends (structure, tested above).
MAC_ROMAN_TEXT = st.text(
    alphabet=st.sampled_from(sorted(set(bytes(range(32, 256)).decode("mac_roman")) - {"\x7f"})
                             + list("0123456789/<>%,. " * 4)),
    max_size=40,
)
PARSERS = [nimes.parse_sex, nimes.parse_yes_no, nimes.parse_presentation, nimes.parse_grade,
           nimes.parse_differentiation, nimes.parse_necrosis, nimes.parse_invasion, nimes.parse_resection,
           nimes.parse_size, nimes.parse_mitoses, nimes.parse_ki67, nimes.parse_site, nimes.parse_date,
           nimes.parse_margins, nimes.parse_note, nimes.parse_evolution]


NUMBERISH = st.lists(st.sampled_from(list("0123456789,./<%≥ ") + ["mm", "cm", "HPF", "G", "II", "mars"]),
                     max_size=20).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=60), MAC_ROMAN_TEXT, NUMBERISH))
def test_parsers_never_raise_on_arbitrary_text(text):
    for parse in PARSERS:
        out = parse(text)
        issues = out[-1] if not isinstance(out, list) else [i for n in out for i in n.issues]
        for issue in issues:
            assert issue.severity in (ERROR, WARNING) and issue.rule and issue.message


CELL_COLUMNS = [h for h in HEADER if h not in ("Dossier", "Patient")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(st.sampled_from(CELL_COLUMNS), st.one_of(MAC_ROMAN_TEXT, NUMBERISH),
                              min_size=1, max_size=6))
def test_reader_never_raises_on_arbitrary_cells(tmp_path_factory, values):
    folder = tmp_path_factory.mktemp("prop")
    result = _read(_write(folder, [_row(Dossier="D1"), _row(Dossier="D2", **values)]).parent)
    assert result.frames["patient"].height == 2
    q = result.queries_frame()
    # a value the reader did not take is reported on the damaged row
    assert set(q.filter(pl.col("severity") == ERROR)["row"]) <= {3}
    for table, frame in result.frames.items():
        assert frame["row_id"].n_unique() == frame.height


def test_printable_junk_in_every_cell_never_raises(tmp_path):
    junk = {h: string.punctuation for h in CELL_COLUMNS}
    result = _read(_write(tmp_path, [_row(Dossier="D1", **junk)]).parent)
    assert result.frames["patient"].height == 1
    assert _errors(result).height >= 10


def test_utf16_file_is_read_with_a_wrong_encoding_warning(tmp_path):
    result = _read(_write(tmp_path, [_row(Siège="épaule droite")], encoding="utf-16").parent)
    assert _queries(result, "wrong_encoding", WARNING)["value"].to_list() == ["UTF-16"]
    assert _errors(result).is_empty()
    assert result.frames["tumour"]["site"][0] == "upper_limb"


def test_blank_last_news_means_no_news(tmp_path):
    result = _read(_write(tmp_path, [_row(**{"Évolution": "", "Dernières nouvelles": "   "})]).parent)
    assert result.frames["patient"]["vital_status"][0] is None
    assert result.frames["event"].is_empty()


def test_line_with_only_a_dossier_gives_empty_canonical_rows(tmp_path):
    result = _read(_write(tmp_path, [{"Dossier": "D9"}]).parent)
    assert _errors(result).is_empty()
    assert result.frames["patient"].height == result.frames["tumour"].height == 1
    assert result.frames["surgery"].is_empty() and result.frames["event"].is_empty()
    assert result.frames["patient"]["vital_status"][0] is None


# --- the columnar paths read exactly what the pure parsers read ---------------------------------------

DATE_TEXTS = [
    "12/03/2014", "1/3/2014", "01.03.2014", "1-3-2014", "31/02/2014", "29/02/2016", "29/02/2015", "00/03/2014",
    "12/00/2014", "12/13/2014", "31/12/1899", "01/01/1900", "31/12/2100", "01/01/2101", "123/03/2014",
    "12/03/14", "3/2014", "03/2014", "13/2014", "0/2014", "12-2014", "12.1899", "2014", "1899", "2101", "0000",
    "mars 2014", "mars. 2014", "Mars 2014", "février 2014", "fevrier 2014", "janv 2014", "juil. 2101",
    "foo 2014", "mars  2014", " 2014", "2014 ", "12/03/2014 ", "２０１４", "١٢/٠٣/٢٠١٤", "2014-03-12", "?",
    "", "   ", "12/03/2014\n", "2014\n", "août 1920", "Août 1920", "DÉC 1947", "décembre. 1947", "mai 2014",
    "maî 2014", "ǅuin 2014", "ｍａｒｓ 2014",
]


def _in_a_file(column: str, texts: list[str]) -> tuple[list[str], object]:
    """``texts`` (those a cell can hold) typed in ``column``, one record each from line 2, read."""
    texts = [t for t in texts if ";" not in t and all(ord(ch) >= 32 for ch in t)]  # (control characters: binary)
    with tempfile.TemporaryDirectory() as folder:
        rows = [*({"Dossier": f"D{i}", column: t} for i, t in enumerate(texts)), {"Dossier": "LAST"}]
        return texts, _read(_write(Path(folder), rows, encoding="utf-8").parent)


def _decode_both(texts: list[str], identifier: bool = False):
    """Per cell: (value, precision, rules) as the engine read it, and as parse_date reads it."""
    column = "Né(e) le" if identifier else "Diagnostic"
    texts, result = _in_a_file(column, [*texts, *texts])
    q = result.queries_frame().filter(pl.col("field") == column)
    patient = result.frames["patient"].sort("source_row")
    if identifier:
        # the birth date only gives the age (diagnosis left blank: none); its queries are masked
        assert set(q["value"]) <= {IDENTIFIER_MASK}
    got, want = [], []
    for i, text in enumerate(texts):
        rules = q.filter(pl.col("row") == i + 2)["rule"].to_list()
        parsed, issues = nimes.parse_date(text)
        spaces = ["value_normalised"] if text.strip() and text != text.strip() else []  # stray spaces: a warning
        want.append((parsed and (parsed.value, parsed.precision), [x.rule for x in issues] + spaces))
        if identifier:
            got.append((want[-1][0], rules))
        else:
            row = patient.row(i, named=True)
            value = row["diagnosis_date"] and (row["diagnosis_date"], row["diagnosis_date_precision"])
            got.append((value, rules))
    return got, want


@pytest.mark.parametrize("identifier", [False, True])
def test_dates_read_exactly_what_parse_date_reads(identifier):
    got, want = _decode_both(DATE_TEXTS, identifier=identifier)
    assert got == want


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.one_of(
    st.builds(lambda d, m, y, s: f"{d}{s}{m}{s}{y}", st.integers(0, 40), st.integers(0, 14),
              st.integers(1850, 2150), st.sampled_from("/.-")),
    st.builds(lambda m, y: f"{m}/{y}", st.integers(0, 14), st.integers(1850, 2150)),
    st.builds(lambda n, y: f"{n} {y}", st.sampled_from(["mars", "avr.", "dec", "x", "aout", "août"]),
              st.integers(1850, 2150)),
    st.integers(0, 9999).map(str), NUMBERISH, st.text(max_size=12),
), max_size=30))
def test_dates_match_parse_date_on_generated_values(texts):
    got, want = _decode_both(texts)
    assert got == want


NOTES = [
    "récidive locale 06/2016", "RL 06/2016", "RL2012", "RL - 2012", "récidive locale mars 2006", "RL avril. 2001",
    "récidive 2010", "récidive locale 31/02/2016", "récidive locale 1899", "rl 13/2016",
    "métastase osseuse 2017", "métastases osseuse et pulmonaire 2017", "métastase cérébrale 12/2017",
    "métastases 2015", "DCD 03/2018 (cLMS)", "décès 03/2018 (autre cause)", "DCD 2018 (cause bizarre)",
    "DCD 03/2018 ()", "décès mai 2011 (cLMS)", "RL 06/2016 (reprise chirurgicale)", "DCD 10/07/2010(cLMS)",
    "2014", "(cLMS)", "n'importe quoi 2014", "RL ? 2014", "RL 2014?", "RL ²2014", "Récidive Locale 2009",
    "RL 06/2016 (a (b))", "RL 6.2016", "RL 06/2016 x", "métastase ganglionnaire 10/2006",
]


def _assert_same_notes(notes: list[str]):
    """Each note alone in an Évolution cell: the event rows and queries the reader gives are
    parse_note's, in its order."""
    notes, result = _in_a_file("Évolution", notes)
    events = result.frames["event"].sort("source_row", "event_no")
    q = result.queries_frame().filter(pl.col("field") == "Évolution")
    for i, note in enumerate(notes):
        mine, problems = nimes.parse_note(note)
        got = events.filter(pl.col("source_row") == i + 2).select(
            "event_kind", "event_date", "event_date_precision", "metastasis_site", "death_cause", "treatment").rows()
        assert got == [(e.kind, e.date and e.date.value, e.date and e.date.precision, e.metastasis_site,
                         e.death_cause, e.treatment) for e in mine], note
        assert q.filter(pl.col("row") == i + 2).select("rule", "message").rows() == [
            (p.rule, p.message) for p in problems], note


def test_notes_read_in_a_file_exactly_as_parse_note_reads_them():
    _assert_same_notes(NOTES)


@settings(max_examples=150, deadline=None)
@given(notes=st.lists(st.one_of(
    st.builds(lambda words, sep, date, paren: f"{words}{sep}{date}{paren}",
              st.sampled_from(["RL", "récidive locale", "récidive", "métastase osseuse", "métastases foie et os",
                               "métastase du genou", "DCD", "décès", "mort", "RL mars", "décès décembre", "x", ""]),
              st.sampled_from(["", " ", "  ", " - ", " en "]),
              st.one_of(st.builds(lambda d, m, y: f"{d}/{m}/{y}", st.integers(0, 32), st.integers(0, 13),
                                  st.integers(1890, 2110)),
                        st.builds(lambda m, y: f"{m}/{y}", st.integers(0, 13), st.integers(1890, 2110)),
                        st.integers(1890, 2110).map(str)),
              st.sampled_from(["", " (cLMS)", "(autre cause)", " (inconnue)", " (reprise)", " ()", " (x"])),
    MAC_ROMAN_TEXT,
), min_size=1, max_size=20))
def test_notes_read_in_a_file_match_parse_note_on_generated_notes(notes):
    notes = [n.strip() for n in notes if n.strip()]
    if notes:
        _assert_same_notes(notes)


def test_notes_matched_all_at_once_are_read_as_parse_note_reads_each():
    """The usual notes recognised by one polars match over every note (the same pattern; what
    str.strip strips, control separators included) give parse_note's events and issues, note
    by note, including the notes the match sends to be read alone."""
    column = nimes.DECLARATION.column("event.notes")
    awkward = [*NOTES, "\x1cRL 2014\x1f", "RL 06/2016\x85", "\xa0RL 06/2016 (cLMS)\u3000", "DCD 2018 (cLMS)\x1e",
               "RL mars 2007", "RL  mars. 2007 (x)", "récidive 1/2/2003", "RL 2014 (a)(b)", "RL\n2014", "2014 (x)"]
    mapping, issues = free_text._notes(column, awkward)
    for note in awkward:
        events, problems = nimes.parse_note(note)
        got = mapping.filter(pl.col("_text") == note).sort("_k").select(
            "event_kind", "event_date", "event_date_precision", "metastasis_site", "death_cause", "treatment").rows()
        assert got == [(e.kind, e.date and e.date.value, e.date and e.date.precision, e.metastasis_site,
                        e.death_cause, e.treatment) for e in events], repr(note)
        assert issues.filter(pl.col("_text") == note).select("rule", "message").rows() == [
            (p.rule, p.message) for p in problems], repr(note)
