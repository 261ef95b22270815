"""A code server forks each run's worker from a process that imported the code location once
(assets/run_workers.py), instead of spawning a fresh interpreter per run.

The run is launched as the daemon launches it (``DefaultRunLauncher`` → the code server's
``StartRun``), through a real ``dagster api grpc`` process. While the run waits on the ``warehouse``
pool (the test holds its only slot), its worker is alive: its parent must be a forkserver that the
code server started, preloaded with the code location.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.automation import IMPORT_RUN_CONFIG
from assets.run_workers import is_code_server, warm_code_server
from tests.test_dagster_platform import BIN, OPENS_THE_WAREHOUSE, POOL, ROOT, clms_env, dagster_home, step_events, stop

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent_and_cmdline(pid: int) -> tuple[int, str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return int(stat.rsplit(")", 1)[1].split()[1]), cmdline


def _wait_for_port(server: subprocess.Popen, port: int, deadline_s: float = 240) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the code server ended: {server.communicate()[0][-3000:]}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    pytest.fail("the code server did not listen")


def test_a_code_server_forks_each_run_worker_from_a_forkserver_preloaded_with_the_code_location(twin_drop, tmp_path):
    home = dagster_home(tmp_path)
    # launched at once (no daemon): the default coordinator hands the run to the code server
    (home / "dagster.yaml").write_text((home / "dagster.yaml").read_text() + "run_coordinator:\n"
                                       "  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n")
    env = clms_env(tmp_path, twin_drop, home)
    port = _free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {port}\n"
                         "      location_name: clms_etl\n")
    server = subprocess.Popen([str(BIN / "dagster"), "api", "grpc", "-m", "assets.definitions", "-h", "127.0.0.1",
                               "-p", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    holder = ("test-holder", "hold")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(POOL)
        assert storage.claim_concurrency_slot(POOL, *holder, 0).is_claimed
        try:
            _wait_for_port(server, port)
            launch = subprocess.run(
                [str(BIN / "dagster"), "job", "launch", "-w", str(workspace), "-j", "import_centre",
                 "--tags", json.dumps({"dagster/partition": "lyon"}), "--config-json", json.dumps(IMPORT_RUN_CONFIG)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert launch.returncode == 0, launch.stderr[-3000:]
            (run,) = instance.get_runs()
            deadline = time.monotonic() + 240
            while not (waiting := [e for step in OPENS_THE_WAREHOUSE for e in step_events(instance, run.run_id, step)
                                   if f"blocked by limit for pool {POOL}" in (e.message or "")]):
                assert instance.get_run_by_id(run.run_id).status not in (dg.DagsterRunStatus.FAILURE,), "run failed"
                assert time.monotonic() < deadline, "the run never waited on the pool"
                time.sleep(0.3)
            worker = waiting[0].dagster_event.pid
            parent, parent_cmdline = _parent_and_cmdline(worker)
            assert "multiprocessing.forkserver" in parent_cmdline, parent_cmdline  # spawned: the server itself
            assert "assets.definitions" in parent_cmdline  # its preload
            assert _parent_and_cmdline(parent)[0] == server.pid  # the code server's own forkserver
            storage.free_concurrency_slot_for_step(*holder)
            while not instance.get_run_by_id(run.run_id).is_finished:
                assert time.monotonic() < deadline + 240, "the run did not finish"
                time.sleep(0.5)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
        finally:
            storage.free_concurrency_slot_for_step(*holder)
            stop(server)


def test_only_a_code_server_changes_how_it_starts_run_workers(monkeypatch):
    from dagster._grpc.server import DagsterApiServer

    for argv in (["dagster", "dev"], ["clms-etl", "run"], ["pytest"], ["dagster", "api", "execute_run"]):
        monkeypatch.setattr(sys, "argv", argv)
        assert not is_code_server()
        assert not warm_code_server("assets.definitions")
    assert not isinstance(DagsterApiServer.__dict__.get("_mp_ctx"), property)
    monkeypatch.setattr(sys, "argv", [sys.executable, "api", "grpc", "-m", "assets.definitions"])
    assert is_code_server()


_FORKED_STEP = """
import json, multiprocessing, sys
from assets.automation import IMPORT_STEP_MODULES, step_preload

def collected():
    import gc
    return gc.get_freeze_count(), len(gc.get_objects())

if __name__ == "__main__":
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(step_preload(*IMPORT_STEP_MODULES))
    with context.Pool(1) as pool:
        frozen, tracked = pool.apply(collected)
    print(json.dumps({"frozen": frozen, "tracked": tracked}))
"""


def test_a_forked_step_neither_collects_nor_copies_what_its_forkserver_imported(tmp_path):
    """The forkserver's imports (dagster, polars, pandera, the code location: hundreds of thousands of
    objects) are frozen before it forks (assets/deployment_preload.py): a step's garbage collections do not
    walk them, and so do not write to (copy) the memory pages the step shares with the forkserver."""
    script = tmp_path / "forked_step.py"
    script.write_text(_FORKED_STEP)
    done = subprocess.run([str(BIN / "python"), str(script)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**clms_env(tmp_path, tmp_path), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["frozen"] > 100_000, found
    assert found["tracked"] < found["frozen"] / 10, found
