"""Dates as centres write them: ``dd/mm/yyyy``, ISO, and the partial dates of paper charts.

A partial date is imputed to the middle of what it names (``3/2014`` -> 2014-03-15,
``2014`` -> 2014-07-01) and flagged, the usual convention for registry data.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

FRENCH_MONTHS = {
    "janvier": 1, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7,
    "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11, "decembre": 12,
    "janv": 1, "fev": 2, "fevr": 2, "avr": 4, "juil": 7, "sept": 9, "oct": 10, "nov": 11, "dec": 12,
}
FRENCH_MONTH_NAMES = [
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
    "octobre", "novembre", "décembre",
]


@dataclass(frozen=True)
class ParsedDate:
    value: dt.date
    precision: str  # "day" | "month" | "year"

    @property
    def imputed(self) -> bool:
        return self.precision != "day"


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower().strip()


_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_MY = re.compile(r"^(\d{1,2})[/.\-](\d{4})$")
_Y = re.compile(r"^(\d{4})$")
_MONTH_NAME_Y = re.compile(r"^([a-z]+)\.?\s+(\d{4})$")


def parse_french_date(text: str | None) -> ParsedDate | None:
    """Parse ``12/03/2014``, ``2014-03-12``, ``3/2014``, ``mars 2014`` or ``2014``.

    Returns None for an empty value; raises ValueError for anything else that is not a date.
    """
    if text is None:
        return None
    raw = _fold(str(text))
    if not raw:
        return None
    if m := _DMY.match(raw):
        d, mth, y = map(int, m.groups())
        return ParsedDate(dt.date(y, mth, d), "day")
    if m := _ISO.match(raw):
        y, mth, d = map(int, m.groups())
        return ParsedDate(dt.date(y, mth, d), "day")
    if m := _MY.match(raw):
        mth, y = map(int, m.groups())
        return ParsedDate(dt.date(y, mth, 15), "month")
    if m := _MONTH_NAME_Y.match(raw):
        name, y = m.groups()
        if name in FRENCH_MONTHS:
            return ParsedDate(dt.date(int(y), FRENCH_MONTHS[name], 15), "month")
    if m := _Y.match(raw):
        return ParsedDate(dt.date(int(raw), 7, 1), "year")
    raise ValueError(f"not a date: {text!r}")


def impute(day: dt.date, precision: str) -> dt.date:
    """The date a reader will impute when ``day`` is written at ``precision``."""
    if precision == "month":
        return day.replace(day=15)
    if precision == "year":
        return dt.date(day.year, 7, 1)
    return day


def format_partial(day: dt.date, precision: str, style: int = 0) -> str:
    """Write ``day`` at ``precision`` the way a hand-typed chart does (style picks a variant)."""
    if precision == "day":
        return day.strftime("%d/%m/%Y")
    if precision == "month":
        if style % 2:
            return f"{FRENCH_MONTH_NAMES[day.month - 1]} {day.year}"
        return f"{day.month}/{day.year}" if style % 3 == 0 else f"{day.month:02d}/{day.year}"
    return str(day.year)
