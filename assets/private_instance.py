"""A Dagster instance whose files only their owner can read, whichever process writes them.

The code location sets the umask of the processes that load it (assets/definitions.py), but the
webserver and the daemon of ``dagster dev`` / ``dg dev`` never load it, and they write too: the
instance's SQLite files, the event log of every run they queue or launch, the daemon's logs.
Every one of those processes opens the instance from ``dagster.yaml``, and Dagster imports the
instance class it names before it opens any storage, so the instance config names this one
(deploy/dagster.local.yaml, assets/demo.py)::

    instance_class:
      module: assets.private_instance
      class: OwnerOnlyInstance
"""

from __future__ import annotations

import os

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from clms_etl.files import DIR_MODE, private_process

# Importing this module is the first thing a process opening the instance does: from here on,
# whatever it creates under DAGSTER_HOME (runs.db, event logs, compute logs) is owner-only.
private_process()


class OwnerOnlyInstance(dg.DagsterInstance):
    """Dagster's instance, unchanged but for the umask of the process that opens it."""

    def __init__(self, *args, **kwargs):
        private_process()  # again, should something have loosened it since the import
        super().__init__(*args, **kwargs)
        if self.is_persistent:  # DAGSTER_HOME itself, whoever created it
            os.chmod(self.root_directory, DIR_MODE)

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str):
        return InstanceRef.config_defaults(base_dir)
