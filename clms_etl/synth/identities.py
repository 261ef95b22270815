"""Fake but real-looking direct identifiers: French names, hospital numbers, birth dates.

Faker's ``fr_FR`` provider supplies the names (library first); it is seeded from the
generator's own RNG so that a seed gives the same people. For scale runs Faker is asked once
for a pool of names, then the pool is sampled: one Faker call per patient would dominate the
run time of a million-patient delivery.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from faker import Faker

_ID_FORMATS = {
    # centre format -> (prefix, digits): shapes of each hospital's patient numbers
    "nice": ("", 8),
    "montpellier": ("34", 8),
    "lyon": ("69", 7),
    "nimes": ("D", 5),
}


class IdentityFactory:
    def __init__(self, rng: np.random.Generator, pool_size: int | None = None):
        self.rng = rng
        self.faker = Faker("fr_FR")
        self.faker.seed_instance(int(rng.integers(0, 2**31 - 1)))
        self._issued: set[str] = set()
        self._pool = None
        if pool_size:
            f = self.faker
            self._pool = {
                "male": [f.first_name_male() for _ in range(pool_size)],
                "female": [f.first_name_female() for _ in range(pool_size)],
                "last": [f.last_name() for _ in range(pool_size)],
            }

    def name(self, sex: str | None) -> tuple[str, str]:
        """(first name, last name)."""
        if self._pool:
            first = self._pool["female" if sex == "female" else "male"]
            return (first[int(self.rng.integers(len(first)))],
                    self._pool["last"][int(self.rng.integers(len(self._pool["last"])))])
        first = self.faker.first_name_female() if sex == "female" else self.faker.first_name_male()
        return first, self.faker.last_name()

    def local_id(self, centre_format: str, centre: str | None = None) -> str:
        """A unique hospital number in the shape ``centre_format`` uses."""
        prefix, digits = _ID_FORMATS[centre_format]
        while True:
            value = f"{prefix}{int(self.rng.integers(10 ** (digits - 1), 10**digits))}"
            key = f"{centre or centre_format}:{value}"
            if key not in self._issued:
                self._issued.add(key)
                return value

    def birth_date(self, diagnosis: dt.date, age_years: int) -> dt.date:
        """A birth date giving exactly ``age_years`` completed years on ``diagnosis``."""
        latest = _years_before(diagnosis, age_years)  # birthday on the diagnosis day
        earliest = _years_before(diagnosis, age_years + 1) + dt.timedelta(days=1)
        span = (latest - earliest).days
        return earliest + dt.timedelta(days=int(self.rng.integers(0, span + 1)))


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def age_at(birth: dt.date, day: dt.date) -> int:
    """Completed years (the age a clinician writes)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
