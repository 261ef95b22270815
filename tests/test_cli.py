"""The clms-etl command line: every sub-command documents itself, synth writes deliveries."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from clms_etl.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args", [[], ["synth"], ["warehouse"], ["warehouse", "create"],
                                  ["warehouse", "roles"], ["warehouse", "docs"],
                                  ["warehouse", "rekey"], ["warehouse", "adopt-key"]])
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
