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
import sys
import threading


def is_code_server() -> bool:
    """True in a Dagster gRPC code server process (``dagster api grpc`` / ``python -m dagster api grpc``)."""
    args = sys.argv[1:3]
    return args == ["api", "grpc"]


def warm_code_server(*preload: str) -> bool:
    """In a Dagster code server, start its run workers from a forkserver preloaded with
    ``preload`` (module names) instead of with ``spawn``; elsewhere do nothing. Returns whether it
    did. The forkserver starts now, in a thread, so that the first run does not wait for it."""
    if not is_code_server():
        return False
    from dagster._grpc.server import DagsterApiServer

    context = multiprocessing.get_context("forkserver")  # the process's one forkserver
    context.set_forkserver_preload(list(preload))
    # Dagster sets ``self._mp_ctx = multiprocessing.get_context("spawn")`` in the server's
    # __init__, which is running when it imports this code location: a data descriptor on the
    # class wins over that instance attribute, whenever it was set.
    DagsterApiServer._mp_ctx = property(lambda self: context, lambda self, value: None)
    threading.Thread(target=multiprocessing.forkserver.ensure_running, name="clms-forkserver",
                     daemon=True).start()
    return True
