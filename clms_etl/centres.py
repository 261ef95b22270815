"""The centre registry: which centres exist and which reader reads each one.

A centre's format is declared data (``formats/<format>.toml`` in the drop folder, else in
``clms_etl/data/formats/``), read by the one engine (:mod:`clms_etl.readers.engine`) or, when it
names an ``adapter`` (REDCap), by that adapter on the engine; a format without a declaration is
read by its module ``clms_etl.readers.<format>``."""

from __future__ import annotations

import functools
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
    declaration: Path | None = None  # the format file, when the format is declared

    @property
    def reader(self):
        """What reads this centre's deliveries (it exposes ``read(ctx)``): the engine on the
        format's declaration, or the module ``clms_etl.readers.<format>``."""
        if self.declaration is not None:
            stat = self.declaration.stat()
            return _declared_reader(self.declaration, (stat.st_size, stat.st_mtime_ns))
        return importlib.import_module(f"clms_etl.readers.{self.format}")


@functools.lru_cache(maxsize=64)
def _declared_reader(path: Path, _stamp: tuple[int, int]):
    """The reader of a format file, once per file version (parsing it cost 25 ms a read)."""
    from clms_etl import formats
    from clms_etl.readers import engine

    adapter = tomllib.loads(path.read_text("utf-8")).get("adapter")
    if adapter:  # what is not tabular (REDCap's dictionary and instruments): an adapter on the engine
        return importlib.import_module(f"clms_etl.readers.{adapter}").Reader(path)
    return engine.DeclaredReader(formats.load(path))


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
    from clms_etl.formats import find

    return {
        name: Centre(name, e["format"], e.get("label", ""), bool(e.get("laboratory", False)),
                     find(e["format"], drop_folder))
        for name, e in entries.items()
    }
