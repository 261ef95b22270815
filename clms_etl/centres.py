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


def centre_names(drop_folder: Path | None = None) -> tuple[str, ...]:
    """The centres of the registry (the laboratory left out): the one list of centres there is."""
    return tuple(name for name, c in load_registry(drop_folder).items() if not c.laboratory)


def centre_formats() -> tuple[str, ...]:
    """The delivery formats the packaged centres use (one reader module each), in registry order."""
    return tuple(dict.fromkeys(c.format for c in load_registry().values() if not c.laboratory))


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
