"""IO manager of ``centre_import``: the validated delivery waits as owner-only Parquet, then goes.

Dagster's default IO manager would pickle each centre's rows, queries and free text into
DAGSTER_HOME/storage/ and keep them there. This one writes them with
:func:`clms_etl.handoff.write_import` into ``<path>/<centre>/`` (folders 0700, files 0600); the
two blocking checks and ``centre_warehouse`` read them back, and ``centre_warehouse`` deletes
them once the centre's rows are in the warehouse.

A delivery that never loads (closed gate, refused, run given up) keeps its handoff until the
next import of that centre starts and deletes it: a failing check cannot delete it itself, since
the other blocking check may be reading it in a parallel step, and a load that failed on a
transient fault must still find it when the run is re-executed from the failure.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from clms_etl.handoff import HandoffMissing, discard, read_import, write_import
from clms_etl.centre_import import CentreImport


class CentreHandoff(dg.ConfigurableIOManager):
    """Where a centre's validated delivery waits between its import and its load."""

    path: str

    def folder(self, centre: str) -> Path:
        return Path(self.path) / centre

    def discard(self, centre: str) -> None:
        """Delete the centre's waiting import (loaded, or superseded by a new import)."""
        discard(self.folder(centre))

    def handle_output(self, context: dg.OutputContext, obj: CentreImport) -> None:
        write_import(self.folder(context.asset_partition_key), obj)

    def load_input(self, context: dg.InputContext) -> CentreImport:
        try:
            return read_import(self.folder(context.asset_partition_key))
        except HandoffMissing as missing:
            raise dg.Failure(str(missing), allow_retries=False) from missing
