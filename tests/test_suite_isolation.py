"""The suite's own isolation: what one test leaves in the pytest process does not reach the next."""

from __future__ import annotations

import multiprocessing
import os

VARIABLE = "CLMS_TEST_ISOLATION_MARK"


def _environment_seen_by_a_forkserver_child() -> str | None:
    context = multiprocessing.get_context("forkserver")
    with context.Pool(1) as pool:
        return pool.apply(os.getenv, (VARIABLE,))


def test_a_forkserver_child_sees_the_environment_of_the_test_that_started_it(monkeypatch):
    monkeypatch.setenv(VARIABLE, "first test")
    assert _environment_seen_by_a_forkserver_child() == "first test"


def test_a_forkserver_child_of_the_next_test_sees_that_tests_environment(monkeypatch):
    # the multiprocess executor's step processes read CLMS_WAREHOUSE_URL this way
    monkeypatch.setenv(VARIABLE, "next test")
    assert _environment_seen_by_a_forkserver_child() == "next test"
