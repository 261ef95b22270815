"""Resources of the code location pointed at a test's own drop folder, outputs and warehouse."""

from __future__ import annotations

from pathlib import Path

from assets.handoff import CentreHandoff
from assets.resources import DropFolder, OutputsFolder, PseudonymKey, SurvivalSettings, WarehouseResource


def resources_for(drop: Path, tmp: Path) -> dict:
    return {
        "drop_folder": DropFolder(path=str(drop)),
        "outputs": OutputsFolder(path=str(tmp / "outputs")),
        "warehouse": WarehouseResource(url=f"duckdb:///{tmp / 'warehouse.duckdb'}"),
        "pseudonym_key": PseudonymKey(),
        "survival": SurvivalSettings(),
        "centre_handoff": CentreHandoff(path=str(tmp / "handoff")),
    }
