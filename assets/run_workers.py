"""Run workers forked from a warm process, not started cold.

Dagster's code server (``dagster api grpc``, under ``dagster code-server start`` or ``dg dev``)
starts the worker of every run it is asked to launch with multiprocessing's ``spawn``: a fresh
interpreter that imports dagster, polars, pandera and this code location again before the run's
first step. That is ≈ 3 CPU-seconds per run here, the same for a 100-patient centre as for a
25,000-patient one, so a 40-centre night paid it 41 times (bench/README.md, "Warm run workers").

:func:`warm_code_server` makes the code server start its run workers from a ``forkserver`` that
imported the code location and the steps' modules once: each worker is a fork of it. Everything
else is Dagster's own (the run's events, cancellation, the health checks of run monitoring): only
the start method changes. The forkserver is a child of the code server process, so it ends with it
and a reloaded code location gets a new one; it is started when the code server loads this code,
so a run executes the code the server serves (a spawned worker imported whatever was on disk at
its start). A process that is not a Dagster code server (the CLI, tests, the daemon) is unchanged.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import sys
import threading
from collections.abc import Mapping


def is_code_server() -> bool:
    """True in a Dagster gRPC code server process (``dagster api grpc`` / ``python -m dagster api grpc``)."""
    args = sys.argv[1:3]
    return args == ["api", "grpc"]


# what Dagster's SQL storages import when they open (their schema migrations' helpers)
DAGSTER_STORAGE_OPENING = "dagster._core.storage.migration.utils"
DEPLOYMENT_PRELOAD = "assets.deployment_preload"  # the module whose import runs :func:`preload_deployment`


def preload_deployment(environ: Mapping[str, str] = os.environ) -> None:
    """Import what a run worker imports to open this deployment's Dagster instance and warehouse,
    before its first step: the modules of the classes ``$DAGSTER_HOME/dagster.yaml`` names (storage,
    run coordinator and launcher, instance class...), and the SQLAlchemy dialect and driver of every
    URL of the deployment (a SQL storage's ``scheme``, ``CLMS_WAREHOUSE_URL``), by creating an engine
    for each (an engine connects on first use only: nothing is opened here).

    Left to each run worker they cost 0.4 CPU-seconds a run on PostgreSQL (dagster-postgres and
    Dagster's storage schemas, psycopg 2 and 3): 41 times a night. Read from the deployment's own
    files, so that a storage or launcher changed there is preloaded without a list to keep in step.
    Best effort: what cannot be imported here is reported by the run that needs it."""
    import importlib

    import sqlalchemy as sa
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import ConfigurableClassData

    modules, urls = [], []
    home = environ.get("DAGSTER_HOME")
    try:
        if home and os.path.isfile(os.path.join(home, "dagster.yaml")):
            for data in InstanceRef.from_dir(home)._asdict().values():
                if isinstance(data, ConfigurableClassData):
                    modules.append(data.module_name)
                    # a SQL storage's driver (dagster-postgres: ``scheme: postgresql+psycopg2``)
                    urls += [f"{scheme}://" for scheme in _values_of("scheme", data.config_dict)]
            modules.append(DAGSTER_STORAGE_OPENING)
    except Exception:  # noqa: BLE001  (the instance reports its own configuration errors)
        pass
    if url := environ.get("CLMS_WAREHOUSE_URL"):
        urls.append(url)
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001
            pass
    for url in urls:
        try:
            sa.create_engine(url).dispose()
        except Exception:  # noqa: BLE001
            pass


def _values_of(key: str, config) -> list[str]:
    """Every string value of ``key`` in a nested configuration."""
    if isinstance(config, dict):
        return [v for k, v in config.items() if k == key and isinstance(v, str)] + \
            [found for v in config.values() for found in _values_of(key, v)]
    if isinstance(config, list):
        return [found for v in config for found in _values_of(key, v)]
    return []


def warm_code_server(*preload: str) -> bool:
    """In a Dagster code server, start its run workers from a forkserver preloaded with
    ``preload`` (module names) and the deployment (:func:`preload_deployment`) instead of with ``spawn``; elsewhere do
    nothing. Returns whether it did. The forkserver starts now, in a thread, so that the first run
    does not wait for it."""
    if not is_code_server():
        return False
    from dagster._grpc.server import DagsterApiServer

    context = multiprocessing.get_context("forkserver")  # the process's one forkserver
    context.set_forkserver_preload([*preload, DEPLOYMENT_PRELOAD])
    # Dagster sets ``self._mp_ctx = multiprocessing.get_context("spawn")`` in the server's
    # __init__, which is running when it imports this code location: a data descriptor on the
    # class wins over that instance attribute, whenever it was set.
    DagsterApiServer._mp_ctx = property(lambda self: context, lambda self, value: None)
    threading.Thread(target=multiprocessing.forkserver.ensure_running, name="clms-forkserver",
                     daemon=True).start()
    return True
