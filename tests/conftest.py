"""Fixtures shared by the Dagster test modules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from clms_etl.synth.generate import generate

TWIN_DATE = dt.date(2026, 11, 23)


@pytest.fixture(scope="session")
def twin_drop(tmp_path_factory) -> Path:
    """The synthetic twin's drop folder (seed 0, delivered 2026-11-23): read-only, copy it to change it."""
    root = tmp_path_factory.mktemp("drop")
    generate(root, seed=0, delivery_date=TWIN_DATE)
    return root
