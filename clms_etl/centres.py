"""The centre registry: which centres exist and which reader reads each one."""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class Centre:
    name: str
    format: str
    label: str = ""
    laboratory: bool = False

    @property
    def reader(self):
        """The module ``clms_etl.readers.<format>`` (it exposes ``read(ctx)``)."""
        return importlib.import_module(f"clms_etl.readers.{self.format}")


def load_registry(drop_folder: Path | None = None) -> dict[str, Centre]:
    """Packaged centres, then those of ``<drop_folder>/centres.toml`` on top (same name wins)."""
    data = tomllib.loads(resources.files("clms_etl").joinpath("data/centres.toml").read_text("utf-8"))
    entries = dict(data.get("centres", {}))
    if drop_folder is not None and (drop_folder / "centres.toml").is_file():
        extra = tomllib.loads((drop_folder / "centres.toml").read_text("utf-8"))
        entries.update(extra.get("centres", {}))
    return {
        name: Centre(name, e["format"], e.get("label", ""), bool(e.get("laboratory", False)))
        for name, e in entries.items()
    }
