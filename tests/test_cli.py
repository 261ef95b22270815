"""The clms-etl command line: every sub-command documents itself, synth writes deliveries."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from clms_etl.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args", [[], ["synth"], ["warehouse"], ["warehouse", "create"],
                                  ["warehouse", "roles"], ["warehouse", "docs"],
                                  ["warehouse", "rekey"], ["warehouse", "adopt-key"],
                                  ["export", "omop"]])
def test_every_command_has_help(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_synth_writes_the_twin_and_reports_defects(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--date", "2026-11-23", "--defects", "0.2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nice" / "2026-11-23" / "export_dermato_nice.xlsx").is_file()
    assert (tmp_path / "_truth" / "defects.csv").is_file()


def test_synth_rejects_a_defect_rate_out_of_range(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--defects", "1.5"])
    assert result.exit_code != 0
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args", [
    ["warehouse", "create", "--url", "postgresql+psycopg://clms:s3cret-pw@127.0.0.1:5432/clms"],
    ["export", "analysis", "/tmp/never", "--url", "postgresql+psycopg://clms:s3cret-pw@127.0.0.1:5432/clms"],
    ["export", "omop", "postgresql+psycopg://clms:s3cret-pw@127.0.0.1:5432/clms"],
    ["warehouse", "roles", "--url", "postgresql+psycopg://admin@127.0.0.1:5432/clms",
     "--loader-password", "s3cret-pw", "--analyst-password", "s3cret-pw"],
])
def test_a_password_on_the_command_line_is_refused_before_anything_runs(args):
    result = CliRunner().invoke(app, args, env={"CLMS_WAREHOUSE_URL": ""})
    said = re.sub(r"[│╭╮╰╯─\s]+", " ", result.output)  # rich's error box wraps the message
    assert result.exit_code == 2
    assert "no password on the command line" in said and "s3cret-pw" not in said


def test_a_password_from_the_environment_is_accepted_for_the_roles_command(monkeypatch):
    from clms_etl.cli import _no_secret_on_command_line  # noqa: F401 - the same callback, another source

    result = CliRunner().invoke(app, ["warehouse", "roles"],
                                env={"CLMS_WAREHOUSE_URL": "postgresql+psycopg://admin:pw@127.0.0.1:1/none",
                                     "CLMS_LOADER_PASSWORD": "a", "CLMS_ANALYST_PASSWORD": "b"})
    assert "no password on the command line" not in result.output  # it got as far as connecting
