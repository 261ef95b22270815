"""Where things live, read from the environment with the project's defaults.

| variable | default | what |
|---|---|---|
| ``CLMS_INCOMING`` | ``data/incoming`` | the drop folder (one sub-folder per centre) |
| ``CLMS_WAREHOUSE_URL`` | ``duckdb:///data/warehouse.duckdb`` | SQLAlchemy URL of the warehouse |
| ``CLMS_OUTPUTS`` | ``data/outputs`` | everything written for people |
| ``CLMS_HANDOFF`` | ``data/handoff`` | a validated delivery between its import and its load (emptied by the load) |
| ``CLMS_PSEUDONYM_KEY`` / ``CLMS_PSEUDONYM_KEY_FILE`` | none (``CLMS_DEMO=1``: the demo key, DuckDB only) | HMAC key (:mod:`clms_etl.keys`) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_INCOMING = Path("data/incoming")
DEFAULT_OUTPUTS = Path("data/outputs")
DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")
DEFAULT_HANDOFF = Path("data/handoff")


@dataclass(frozen=True)
class Settings:
    incoming: Path
    outputs: Path
    warehouse_url: str
    handoff: Path = DEFAULT_HANDOFF

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            incoming=Path(os.environ.get("CLMS_INCOMING", DEFAULT_INCOMING)),
            outputs=Path(os.environ.get("CLMS_OUTPUTS", DEFAULT_OUTPUTS)),
            warehouse_url=os.environ.get("CLMS_WAREHOUSE_URL", f"duckdb:///{DEFAULT_WAREHOUSE}"),
            handoff=Path(os.environ.get("CLMS_HANDOFF", DEFAULT_HANDOFF)),
        )
