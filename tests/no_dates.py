"""What an exported file must not hold: a calendar date, written in any form, of a patient's chart."""

from __future__ import annotations

import datetime as dt
import re

ISO_DATE = re.compile(r"(?<!\d)(19|20)\d\d-[01]\d-[0-3]\d(?!\d)")
FRENCH_DATE = re.compile(r"(?<!\d)[0-3]\d/[01]\d/(19|20)\d\d(?!\d)")


def warehouse_dates(wh) -> set[dt.date]:
    """Every calendar date of the patients' charts in the warehouse."""
    frames = [wh.read_sql("SELECT diagnosis_date AS d FROM patient"), wh.read_sql("SELECT surgery_date AS d FROM surgery"),
              wh.read_sql("SELECT event_date AS d FROM event")]
    return {d for f in frames for d in f["d"].drop_nulls().to_list()}


def written_forms(dates: set[dt.date]) -> set[str]:
    """The ways a date is written in text: ISO, French, compact."""
    return {d.isoformat() for d in dates} | {d.strftime("%d/%m/%Y") for d in dates} | {
        d.strftime("%Y%m%d") for d in dates}
