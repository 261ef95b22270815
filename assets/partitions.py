"""One static partition per centre of the registry, plus the laboratory."""

from __future__ import annotations

import dagster as dg

from clms_etl.centres import load_registry
from clms_etl.config import Settings

REGISTRY = load_registry(Settings.from_env().incoming)
centre_partitions = dg.StaticPartitionsDefinition(list(REGISTRY))
