"""Canonical code lists of the warehouse (``docs/centre_formats.md``, "Shared vocabulary").

Every reader maps its centre's codes onto these values; an absent value is ``None`` (the
paper's "not specified"), never 0 and never a sentinel. The lists are declared in the contract
(``clms_etl/data/contract.toml``, ``[vocabularies]``); this module names them for the code that
imports them (the Great Expectations suites name them in the contract directly).
"""

from __future__ import annotations

import re

from clms_etl.contract import VOCABULARIES

# The centres are not a code list: they come from the registry (clms_etl.centres.centre_names,
# clms_etl/data/centres.toml plus a drop folder's centres.toml), which may hold forty of them.
LABORATORY = "molecular"

SEX = VOCABULARIES["SEX"]
SITES = VOCABULARIES["SITES"]
PRESENTATIONS = VOCABULARIES["PRESENTATIONS"]
DIFFERENTIATION_SCORES = VOCABULARIES["DIFFERENTIATION_SCORES"]
NECROSIS_SCORES = VOCABULARIES["NECROSIS_SCORES"]
SURGERY_KINDS = VOCABULARIES["SURGERY_KINDS"]
EVENT_KINDS = VOCABULARIES["EVENT_KINDS"]
METASTASIS_SITES = VOCABULARIES["METASTASIS_SITES"]
DEATH_CAUSES = VOCABULARIES["DEATH_CAUSES"]
MITOSIS_CLASSES = VOCABULARIES["MITOSIS_CLASSES"]
SEGMENT_TYPES = VOCABULARIES["SEGMENT_TYPES"]

AUDIT_ACTIONS = VOCABULARIES["AUDIT_ACTIONS"]

# What a person reads for each code: the report's tables, the exports' value labels (Stata, SAS),
# the cBioPortal study. One label per code of each code list, keyed by the code list's name.
CODE_LABELS: dict[str, dict] = {
    "sex": {"male": "Male", "female": "Female"},
    "site": {"head_neck": "Head and neck", "trunk": "Trunk", "upper_limb": "Upper limb", "lower_limb": "Lower limb"},
    "presentation": {"nodular": "Nodular", "ulcerated": "Ulcerated", "vegetative": "Vegetative",
                     "infiltrated_patch": "Infiltrated patch"},
    "differentiation_score": {1: "Well differentiated", 2: "Moderately differentiated", 3: "Poorly differentiated"},
    "necrosis_score": {0: "No necrosis", 1: "Necrosis < 50 %", 2: "Necrosis >= 50 %"},
    "fnclcc_grade": {1: "Grade I", 2: "Grade II", 3: "Grade III"},
    "invasion": {"dermal": "Dermal", "dermo_hypodermal": "Dermal and hypodermal"},
    "resection_status": {"R0": "R0 (complete)", "R1": "R1 (microscopic residue)", "R2": "R2 (macroscopic residue)"},
    "surgery_kind": {"primary_excision": "Primary excision", "re_excision": "Re-excision",
                     "relapse_surgery": "Surgery of a relapse", "metastasis_surgery": "Surgery of a metastasis"},
    "event_kind": {"local_recurrence": "Local recurrence", "metastasis": "Metastasis", "death": "Death",
                   "last_news": "Last news"},
    "metastasis_site": {"bone": "Bone", "skin": "Skin", "lung": "Lung", "liver": "Liver", "lymph_node": "Lymph node",
                        "colon": "Colon", "other": "Other"},
    "death_cause": {"clms": "Cutaneous leiomyosarcoma", "other": "Other cause", "unknown": "Unknown cause"},
    "vital_status": {"alive": "Alive", "dead": "Dead", "lost_to_follow_up": "Lost to follow-up"},
    "mitosis_class": {"0-9": "0-9 / 10 HPF", "10-19": "10-19 / 10 HPF", ">=20": ">= 20 / 10 HPF"},
}
# (the codes and their order are the contract's: clms_etl/data/contract.toml [vocabularies])
_CODE_LISTS = {name: VOCABULARIES[contract_name] for name, contract_name in (
    ("sex", "SEX"), ("site", "SITES"), ("presentation", "PRESENTATIONS"),
    ("differentiation_score", "DIFFERENTIATION_SCORES"), ("necrosis_score", "NECROSIS_SCORES"),
    ("fnclcc_grade", "FNCLCC_GRADES"), ("invasion", "INVASIONS"), ("resection_status", "RESECTION_STATUSES"),
    ("surgery_kind", "SURGERY_KINDS"), ("event_kind", "EVENT_KINDS"), ("metastasis_site", "METASTASIS_SITES"),
    ("death_cause", "DEATH_CAUSES"), ("vital_status", "VITAL_STATUSES"), ("mitosis_class", "MITOSIS_CLASSES"))}
# Columns of the warehouse, its views and result tables that hold the codes of a list (column -> list);
# a column named like its code list needs no entry.
_COLUMN_CODE_LISTS = {"final_resection_status": "resection_status"}


def code_lists() -> tuple[str, ...]:
    """The names of the code lists, in declaration order."""
    return tuple(_CODE_LISTS)


def codes(code_list: str) -> tuple:
    """The codes of ``code_list``, in their canonical order (the order of value labels)."""
    return _CODE_LISTS[code_list]


def code_labels(code_list: str) -> dict:
    """``{code: label}`` of ``code_list``, in the list's order."""
    return {c: CODE_LABELS[code_list][c] for c in _CODE_LISTS[code_list]}


def code_label(code_list: str, code) -> str:
    """The label of ``code`` in ``code_list``; a value outside the list is shown as it is."""
    return CODE_LABELS[code_list].get(code, "" if code is None else str(code))


def level_label(column: str, level) -> str:
    """How a level of the analysis variable ``column`` is read: its code list's label when the column is
    coded (site, sex, invasion), else the level as the analysis named it (thresholds, grade dichotomies)."""
    code_list = column_code_list(column)
    return ("" if level is None else str(level)) if code_list is None else code_label(code_list, level)


def labelled_text(column: str, text: str | None) -> str:
    """``text`` (a stored reason naming levels by their codes) with the codes of the column's code list
    replaced by their labels."""
    code_list = column_code_list(column)
    if code_list is None or not text:
        return text or ""
    labels = {str(code): label for code, label in code_labels(code_list).items()}
    return re.sub(r"(?<![\w-])(" + "|".join(map(re.escape, labels)) + r")(?![\w-])", lambda m: labels[m.group(1)], text)


def column_code_list(column: str) -> str | None:
    """The code list whose codes the warehouse column ``column`` holds, or None for a column that is not coded."""
    if column in _COLUMN_CODE_LISTS:
        return _COLUMN_CODE_LISTS[column]
    return column if column in _CODE_LISTS else None
