"""Parsing one cell at a time, the same way in every reader, with a query for each problem.

A :class:`Cells` is bound to one source row and the canonical row it feeds. Each method
returns the canonical value (or None) and, when the cell cannot be understood, records an
error query naming file, row, column and the value as received; when the value had to be
tidied (stray spaces, odd case) it records a warning so the centre can fix its chart.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import polars as pl

from clms_etl import rules
from clms_etl.data_queries import IDENTIFIER_MASK
from clms_etl.dates import ParsedDate, parse_french_date
from clms_etl.readers.base import ReadContext, fold

MISSING = {"", "nr", "na", "nd", "n/a", "?", "non renseigne", "inconnu", "-"}
MAX_TEXT = 2000  # free text longer than this is cut (a chart note, not a document)
Issue = NamedTuple("Issue", [("rule", str), ("severity", str), ("message", str)])  # severity: the registry's


def _issue(rule: str, message: str) -> Issue:
    return Issue(rule, rules.severity(rule), message)


def is_missing(raw) -> bool:
    return raw is None or (isinstance(raw, str) and fold(raw) in MISSING)


@dataclass
class Cells:
    ctx: ReadContext
    file: str
    sheet: str | None
    row: int
    table: str
    row_id: str
    patient_id: str | None = None

    def error(self, column: str, raw, rule: str, message: str, identifier: bool = False) -> None:
        """A query under ``rule`` (its severity is the registry's) on this row's ``column``."""
        if len(message) > 500:  # a 50 MB cell quoted in a message would flood the query table
            message = message[:500] + "…"
        self.ctx.query(file=self.file, sheet=self.sheet, row=self.row, table=self.table, row_id=self.row_id,
                       patient_id=self.patient_id, field=column, rule=rule, message=message,
                       value=IDENTIFIER_MASK if identifier and raw is not None else _text(raw))

    def code(self, column: str, raw, mapping: dict[str, object], *, strict_case: bool = True):
        """Decode a coded value through ``mapping`` (keys compared folded).

        Stray spaces always raise a warning (a clean export never has them); a different case
        or missing accent does too when ``strict_case`` (exports of coded lists), not for
        hand-typed free text where case carries no meaning.
        """
        if is_missing(raw):
            return None
        text = _text(raw)
        folded = fold(text)
        table = {fold(k): v for k, v in mapping.items()}
        if folded not in table:
            allowed = ", ".join(sorted({str(k) for k in mapping}))
            self.error(column, raw, "unknown_code", f"Code « {text} » inconnu pour « {column} » (attendu: {allowed}).")
            return None
        stripped = text.strip()
        if text != stripped or (strict_case and stripped not in {str(k) for k in mapping}):
            self.error(column, raw, "value_normalised",
                       f"Valeur « {text} » lue comme « {table[folded]} » (espaces ou casse à corriger).")
        return table[folded]

    def number(self, column: str, raw, *, decimal_comma: bool = True, integer: bool = False, factor: float = 1.0):
        """A number; ``factor`` converts units (mm -> cm: 0.1)."""
        if is_missing(raw):
            return None
        text = _text(raw).strip().replace("\u00a0", "").replace(" ", "")
        try:
            value = float(text.replace(",", ".") if decimal_comma else text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            return self.error(column, raw, "unparseable_number", f"« {_text(raw)} » n'est pas un nombre ({column}).")
        value *= factor
        if integer:
            if abs(value - round(value)) > 1e-9:
                return self.error(column, raw, "not_an_integer", f"« {_text(raw)} » devrait être un entier ({column}).")
            return int(round(value))
        return round(value, 6)

    def text(self, column: str, raw) -> str | None:
        """Free text, trimmed; longer than :data:`MAX_TEXT` it is cut, with a warning."""
        text = raw.strip() if isinstance(raw, str) else _text(raw)
        # (missing-value tokens are short: the folding is spared to long texts)
        if not text or (len(text) <= 16 and is_missing(text)):
            return None
        if len(text) > MAX_TEXT:
            self.error(column, raw, "value_truncated", f"Texte de plus de {MAX_TEXT} caractères tronqué ({column}).")
            text = text[:MAX_TEXT]
        return text

    def date(self, column: str, raw, *, identifier: bool = False) -> ParsedDate | None:
        """A date (:func:`parse_date`), each issue a query on this cell."""
        if is_missing(raw):
            return None
        parsed, issues = parse_date(_text(raw), column, identifier=identifier)
        for issue in issues:
            self.error(column, raw, issue.rule, issue.message, identifier=identifier)
        return parsed


@functools.lru_cache(maxsize=65536)  # (the same month or year is typed again and again)
def parse_date(text: str | None, label: str = "date", *, identifier: bool = False):
    """``12/03/2014``, ``3/2014``, ``mars 2014``, ``2014`` (partial: imputed, a warning); else unparseable."""
    if text is None or not text.strip():
        return None, ()
    shown = IDENTIFIER_MASK if identifier else text
    try:
        parsed = parse_french_date(text)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None or not (1900 <= parsed.value.year <= 2100):
        return None, (_issue("unparseable_date", f"Date illisible « {shown} » ({label})."),)
    if parsed.imputed:
        day = "" if identifier else f" au {parsed.value:%d/%m/%Y}"
        return parsed, (_issue("partial_date_imputed", f"Date partielle « {shown} » imputée{day} ({label})."),)
    return parsed, ()


def _text(raw) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)  # (a date: ISO)
