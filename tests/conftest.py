"""Fixtures shared by the test modules: the suite's pseudonym key, the twin's drop folder."""

from __future__ import annotations

import datetime as dt
from multiprocessing import forkserver
from pathlib import Path

import pytest

import clms_etl.analyses  # noqa: F401  (declares the result tables to the warehouse)
import validations.canonical  # noqa: F401  (declares what the validate step checks, as the Dagster layer does)
from clms_etl.keys import ENV_DEMO, ENV_KEY, ENV_KEY_FILE
from clms_etl.synth.generate import generate
from tests.warehouse.helpers import TEST_KEY

TWIN_DATE = dt.date(2026, 11, 23)


def pytest_collection_modifyitems(items):
    """The files holding end-to-end nights (a test marked ``slow``) first, each file's tests in their
    order: ``make test`` hands each file to one worker (``--dist loadfile``, so a module's fixture runs
    once), and the longest file handed out last left the other worker idle for minutes at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session", autouse=True)
def test_pseudonym_key():
    """The whole suite runs with the tests' own key, set explicitly and never the demo's: outside
    demo mode there is no fallback key (a test of the fallback removes it, a demo test sets CLMS_DEMO)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ENV_KEY_FILE, raising=False)
        mp.delenv(ENV_DEMO, raising=False)
        mp.setenv(ENV_KEY, TEST_KEY.decode())
        yield TEST_KEY


@pytest.fixture(scope="session", autouse=True)
def private_handoff(tmp_path_factory):
    """Each test process keeps the import handoff in its own temporary folder, never the
    repository's data/handoff: two test processes importing the same centre would otherwise
    discard each other's handoff (tests that run nights in subprocesses set their own)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLMS_HANDOFF", str(tmp_path_factory.mktemp("handoff")))
        yield


@pytest.fixture(autouse=True)
def forkserver_of_its_own():
    """A test that started Python's forkserver (the multiprocess executor in the pytest process) stops it
    when it ends. There is one forkserver per process and its children inherit the environment it was
    started with, not the caller's: the next test's steps read the first test's warehouse URL."""
    yield
    forkserver._forkserver._stop()  # (the private hook CPython's own tests use; a no-op when none runs)


@pytest.fixture(scope="session")
def twin_drop(tmp_path_factory) -> Path:
    """The synthetic twin's drop folder (seed 0, delivered 2026-11-23): read-only, copy it to change it."""
    root = tmp_path_factory.mktemp("drop")
    generate(root, seed=0, delivery_date=TWIN_DATE)
    return root
