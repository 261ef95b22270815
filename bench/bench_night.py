"""Benchmark: the whole night as production runs it, end to end, on a scale drop.

    .venv/bin/python -m bench.bench_night --drop DIR [--backend duckdb|postgresql] [--again] [--next DIR2]
    .venv/bin/python -m bench.bench_night --sizes 100000,300000,1000000 --centres 40 [--backend ...]

The Dagster daemon with the queued run coordinator (``deploy/dagster.local.yaml`` on DuckDB,
``deploy/dagster.production.yaml`` on PostgreSQL, where Dagster's own storage is PostgreSQL too):
the drop-folder sensor queues one import per centre, the coordinator launches them together
(each run in its own process and its steps in that process, loads through the ``warehouse``
pool), then ``dagster job launch`` queues ``nightly_refresh`` (what the 02:00
schedule does). Printed: wall time of the imports and of the refresh, the peak RSS of every
process of the night (read from ``/proc/<pid>/status`` ``VmHWM`` while it runs: Linux only),
each step's duration summed over runs, the refresh's steps as a timeline and, on PostgreSQL running on
this machine, the server's CPU seconds during the imports and during the refresh; last, the machine's floor
(:func:`machine_floor`, three fixed jobs timed just before the night) and the night as a multiple of it. ``--again`` runs the same night a second time on the
same deliveries (the "nothing changed" night). ``--next DIR2`` then delivers DIR2's later deliveries
(``clms-etl synth`` with the same seed, a later ``--date`` and a few ``--defects``: the same patients,
slightly changed) and runs the night again: a replacing night, every centre's rows replaced, which is
what production runs every night after the first. ``--sizes`` writes a drop per size with
``clms-etl synth`` and prints time and memory per patient, so a super-linear step shows.

Targets (issue #14): the 1,000,000-patient night ≤ 5 min with every process ≤ 4 GiB; an
unchanged night ≤ 30 s. Figures go to ``bench/README.md`` with the command that printed them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def _proc_peak_kib(pid: int) -> tuple[int, str] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]), cmdline.strip()
    return None


def _proc_cpu_s(pid: int) -> tuple[float, int] | None:
    """User + system CPU seconds of ``pid`` so far and its parent's pid (``/proc/<pid>/stat``), or
    None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[1])


def server_cpu_s(postmaster: int | None) -> float | None:
    """CPU seconds of a local PostgreSQL server so far: its postmaster's own and its reaped
    children's (``cutime``/``cstime``: backends that ended, parallel workers), plus its live
    children's. None without a local postmaster (a remote server: its CPU is not this machine's)."""
    if postmaster is None:
        return None
    try:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    seconds = sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (child := _proc_cpu_s(int(entry.name))) is not None and child[1] == postmaster:
            seconds += child[0]
    return seconds


def postmaster_pid(url: str) -> int | None:
    """The pid of the server behind ``url`` when it runs on this machine (its backend's parent)."""
    import psycopg

    with psycopg.connect(url) as conn:  # read while the backend lives: it exits with the connection
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        found = _proc_cpu_s(backend)
        return found[1] if found else None


def _session_pids(sids: set[int]) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) in sids:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@dataclass
class MemoryWatch:
    """Peak RSS (``VmHWM``) and CPU seconds of every process of the sessions ``sids``, polled until
    stopped. CPU seconds are the steadier figure on a loaded machine (wall time follows the load); a
    process's last quarter second before it ends is missed."""

    sids: set[int]
    interval_s: float = 0.25
    peaks: dict[int, tuple[int, str]] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)
    cmdlines: dict[int, str] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for pid in _session_pids(self.sids):
                found = _proc_peak_kib(pid)
                if found and found[0] >= self.peaks.get(pid, (0, ""))[0]:
                    self.peaks[pid] = found
                if found:
                    self.cmdlines[pid] = found[1]
                cpu = _proc_cpu_s(pid)
                if cpu is not None:
                    self.cpu_s[pid] = max(cpu[0], self.cpu_s.get(pid, 0.0))
                    self.parents[pid] = cpu[1]
            self._stop.wait(self.interval_s)

    def stop(self) -> dict[int, tuple[int, str]]:
        self._stop.set()
        self._thread.join()
        return self.peaks

    def cpu_total_s(self) -> float:
        """CPU seconds of every process seen so far."""
        return sum(self.cpu_s.values())

    def kind(self, pid: int) -> str:
        """:func:`process_kind` of ``pid``, told apart by its parents where the command line cannot:
        a process forked by a forkserver has the forkserver's command line."""
        kind = process_kind(self.cmdlines.get(pid, ""))
        if kind != "forkserver":
            return kind
        parent = self.parents.get(pid)
        if process_kind(self.cmdlines.get(parent, "")) != "forkserver":
            return "forkserver"
        return "run worker" if self.kind(self.parents.get(parent, 0)) == "code server" else "step worker"

    def cpu_by_kind(self) -> dict[str, tuple[float, int]]:
        """CPU seconds and number of processes per kind (:meth:`kind`), so far."""
        kinds: dict[str, tuple[float, int]] = {}
        for pid, cpu in self.cpu_s.items():
            seconds, count = kinds.get(self.kind(pid), (0.0, 0))
            kinds[self.kind(pid)] = (seconds + cpu, count + 1)
        return kinds

    def peak_by_kind_mib(self) -> dict[str, float]:
        """The largest peak RSS per kind (:meth:`kind`), MiB."""
        peaks: dict[str, float] = {}
        for pid, (kib, _) in self.peaks.items():
            peaks[self.kind(pid)] = max(peaks.get(self.kind(pid), 0.0), kib / 1024)
        return peaks


def process_kind(cmdline: str) -> str:
    """A short name for a process of the night, from its command line ("forkserver": a forkserver or
    a process it forked, which :meth:`MemoryWatch.kind` tells apart)."""
    if "dagster-daemon" in cmdline:
        return "daemon"
    if "code-server" in cmdline or "api grpc" in cmdline:
        return "code server"
    if "forkserver" in cmdline:
        return "forkserver"
    if "execute_step" in cmdline:
        return "step worker"
    if "spawn_main" in cmdline:  # the code server starts each run's worker with multiprocessing's spawn
        return "run worker"
    if "execute_run" in cmdline or "api execute" in cmdline:
        return "run worker"
    if "job launch" in cmdline:
        return "dagster job launch"
    return cmdline.split(" ")[0].rsplit("/", 1)[-1] or "other"


class DaemonNight:
    """One night under the Dagster daemon, in production's topology: the code location served by
    its own long-lived code server (``dagster code-server start``, a service of its own as in
    Kubernetes), the daemon and ``dagster job launch`` pointed at it by a ``grpc_server``
    workspace. (A code server the daemon spawns itself shuts down when its heartbeat is late on
    a loaded machine, and run monitoring then fails the runs it had launched.) ``env`` is the
    environment of every process of the night (``DAGSTER_HOME`` holding the instance's
    ``dagster.yaml``, the ``CLMS_*`` variables); logs go to ``log``."""

    def __init__(self, env: dict[str, str], log: Path, deadline_s: float = 3600):
        self.env, self.log, self.deadline_s = env, log, deadline_s
        self.workspace = log.with_name("workspace.yaml")
        self.processes: list[subprocess.Popen] = []

    def _start(self, args: list[str], out) -> subprocess.Popen:
        process = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def __enter__(self) -> DaemonNight:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.workspace.write_text(
            f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {port}\n"
            f"      location_name: clms_etl\n")
        with self.log.open("w") as out:
            self.code_server = self._start([str(BIN / "dagster"), "code-server", "start", "-m", "assets.definitions",
                                            "--location-name", "clms_etl", "-h", "127.0.0.1", "-p", str(port)], out)
            self._wait_for_port(port)
            self.daemon = self._start([str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)], out)
        return self

    def _wait_for_port(self, port: int) -> None:
        import socket

        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.code_server.poll() is not None:
                raise RuntimeError(f"the code server ended ({self.code_server.returncode}):\n{self.log_tail()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the code server did not listen on {port} in 600 s:\n{self.log_tail()}")

    def __exit__(self, *exc) -> None:
        import signal

        for process in reversed(self.processes):
            if process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            except ProcessLookupError:
                pass

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_for_runs(self, instance, job: str, count: int, since: float = 0.0) -> list:
        """The runs of ``job`` created after ``since`` (a timestamp), once ``count`` of them have
        finished; raises ``RuntimeError`` (with the daemon's log) when the daemon ends or the
        deadline passes."""
        import dagster as dg

        deadline = time.monotonic() + self.deadline_s
        while True:
            runs = [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(job_name=job))
                    if r.create_timestamp.timestamp() >= since]
            if len(runs) >= count and all(r.status.value in FINISHED for r in runs):
                return runs
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} ended ({process.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                states = {r.tags.get("dagster/partition", r.run_id[:8]): r.status.value for r in runs}
                raise RuntimeError(f"{job}: runs not finished after {self.deadline_s} s: {states}\n{self.log_tail()}")
            time.sleep(1)

    def launch_refresh(self) -> None:
        launch = subprocess.run([str(BIN / "dagster"), "job", "launch", "-w", str(self.workspace),
                                 "-j", "nightly_refresh"], cwd=ROOT, env=self.env, capture_output=True, text=True,
                                timeout=600)
        if launch.returncode != 0:
            raise RuntimeError(f"dagster job launch failed:\n{launch.stderr[-4000:]}")


def run_events(instance, run_id: str) -> dict[str, float]:
    """Run-level events of a run (``PIPELINE_ENQUEUED``, ``PIPELINE_START``...) -> timestamp."""
    return {e.dagster_event.event_type_value: e.timestamp for e in instance.all_logs(run_id)
            if e.dagster_event is not None and e.step_key is None}


def step_spans(instance, run_id: str) -> list[tuple[str, float, float]]:
    """(step key, start, end) of each step of a run that ended (success or failure), by start."""
    started: dict[str, float] = {}
    spans = []
    for e in instance.all_logs(run_id):
        if e.dagster_event is None or e.step_key is None:
            continue
        if e.dagster_event.event_type_value == "STEP_START":
            started[e.step_key] = e.timestamp
        elif e.dagster_event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and e.step_key in started:
            spans.append((e.step_key, started.pop(e.step_key), e.timestamp))
    return sorted(spans, key=lambda span: span[1])


RUN_MILESTONES = ("PIPELINE_ENQUEUED", "PIPELINE_DEQUEUED", "PIPELINE_STARTING", "PIPELINE_START")


def refresh_timeline(instance, run_id: str, since: float) -> list[tuple[str, float, float]]:
    """(step, start, end) of each step of the refresh run, seconds after ``since``, by start: what
    ran beside what, and so the refresh's critical path; before them, when the run was queued,
    dequeued, launched and started (the time between the imports and its first step)."""
    events = run_events(instance, run_id)
    milestones = [(f"(run {name.removeprefix('PIPELINE_').lower()})", events[name] - since, events[name] - since)
                  for name in RUN_MILESTONES if name in events]
    return milestones + [(key, begin - since, end - since) for key, begin, end in step_spans(instance, run_id)]


def step_durations(instance, runs) -> dict[str, float]:
    """Seconds per step key, summed over ``runs`` (start to success or failure)."""
    total: dict[str, float] = defaultdict(float)
    for run in runs:
        for key, begin, end in step_spans(instance, run.run_id):
            total[key.split("[")[0]] += end - begin
    return dict(total)


def failures(instance, runs) -> dict[str, str]:
    """Why each of ``runs`` failed: its steps' and the run's own failure messages, innermost cause
    included (the night's folder, its logs and its Dagster storage are removed when the benchmark
    ends). A run can fail outside any step: claiming a pool, in the executor."""
    out = {}
    for run in runs:
        errors = []
        for e in instance.all_logs(run.run_id):
            error = getattr(e.dagster_event.event_specific_data, "error", None) if e.dagster_event else None
            if error is None or e.dagster_event.event_type_value not in ("STEP_FAILURE", "PIPELINE_FAILURE"):
                continue
            while error.cause is not None:
                error = error.cause
            errors.append(f"{e.step_key or 'run'}: {error.message.strip()}")
        out[run.tags.get("dagster/partition", run.job_name)] = " | ".join(errors) or run.status.value
    return out


def step_intervals(instance, runs, step: str) -> list[tuple[float, float]]:
    """(start, end) of step ``step`` (its key before any ``[partition]``) in each of ``runs``."""
    return [(begin, end) for run in runs for key, begin, end in step_spans(instance, run.run_id)
            if key.split("[")[0] == step]


def pool_use(intervals: list[tuple[float, float]]) -> tuple[float, float, float]:
    """For the steps of a one-slot pool, (first start to last end, seconds a step held the slot,
    seconds between a step's end and the next one's start): the handover time a waiting step
    spent asleep between its polls of the pool (Dagster's back-off grows to 15 s)."""
    if not intervals:
        return 0.0, 0.0, 0.0
    ordered = sorted(intervals)
    held = sum(end - start for start, end in ordered)
    gaps = sum(max(0.0, nxt[0] - cur[1]) for cur, nxt in zip(ordered, ordered[1:]))
    return ordered[-1][1] - ordered[0][0], held, gaps


# -- the benchmark's own setup ------------------------------------------------------------------


def _environment(work: Path, drop: Path, backend: str, pg_admin: str) -> tuple[dict[str, str], list[str]]:
    """Environment of the night and the PostgreSQL databases it created (to drop afterwards)."""
    from clms_etl.keys import DEMO_KEY

    home = work / "dagster_home"
    home.mkdir(parents=True)
    env = dict(os.environ, CLMS_INCOMING=str(drop), CLMS_OUTPUTS=str(work / "outputs"),
               CLMS_HANDOFF=str(work / "handoff"), DAGSTER_HOME=str(home), PYTHONWARNINGS="ignore",
               DAGSTER_DISABLE_TELEMETRY="1", PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    env.pop("CLMS_PSEUDONYM_KEY_FILE", None)
    databases: list[str] = []
    if backend == "duckdb":
        shutil.copy(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
        env.update(CLMS_WAREHOUSE_URL=f"duckdb:///{work / 'warehouse.duckdb'}", CLMS_DEMO="1",
                   CLMS_PSEUDONYM_KEY=DEMO_KEY.decode() if isinstance(DEMO_KEY, bytes) else DEMO_KEY)
        return env, databases
    import psycopg

    shutil.copy(ROOT / "deploy" / "dagster.production.yaml", home / "dagster.yaml")
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        for _ in range(2):
            name = f"clms_bench_{uuid.uuid4().hex[:10]}"
            conn.execute(f'CREATE DATABASE "{name}"')
            databases.append(name)
    info = psycopg.conninfo.conninfo_to_dict(pg_admin)
    host, user = str(info.get("host", "127.0.0.1")), str(info.get("user", "postgres"))
    env.update(CLMS_DEPLOYMENT="production", DAGSTER_PG_HOST=host, DAGSTER_PG_USER=user,
               DAGSTER_PG_PASSWORD=str(info.get("password", "")), DAGSTER_PG_DB=databases[0],
               CLMS_WAREHOUSE_URL=f"postgresql+psycopg://{user}@{host}:{info.get('port', 5432)}/{databases[1]}",
               CLMS_PSEUDONYM_KEY=os.environ.get("CLMS_PSEUDONYM_KEY") or uuid.uuid4().hex + uuid.uuid4().hex)
    subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
    return env, databases


def _drop_databases(pg_admin: str, databases: list[str]) -> None:
    if databases:
        import psycopg

        with psycopg.connect(pg_admin, autocommit=True) as conn:
            for name in databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _patients(drop: Path) -> int:
    """Patients of the drop as its generator recorded them (``_truth``), else unknown (0)."""
    truth = drop / "_truth" / "patients.csv"
    if truth.exists():
        with truth.open() as f:
            return sum(1 for _ in f) - 1
    return 0


def _one_night(run: DaemonNight, instance, start: float, imports_expected: int, watch: MemoryWatch,
               postmaster: int | None = None, from_first_run: bool = False) -> dict:
    """``from_first_run``: the night's clock starts when its first import run was created, not at ``start``
    (deliveries dropped while the daemon runs wait for the sensor's next tick, up to a minute)."""
    import dagster as dg

    cpu_before, server_before = watch.cpu_total_s(), server_cpu_s(postmaster)
    imports = run.wait_for_runs(instance, "import_centre", imports_expected, since=start)
    if from_first_run and imports:
        start = min(r.create_timestamp.timestamp() for r in
                    instance.get_run_records(dg.RunsFilter(run_ids=[i.run_id for i in imports])))
    imported = time.time()
    time.sleep(2 * watch.interval_s)  # the import runs' last poll: their CPU, apart from the refresh's
    imports_cpu, server_imported = watch.cpu_total_s() - cpu_before, server_cpu_s(postmaster)
    run.launch_refresh()
    (refresh,) = run.wait_for_runs(instance, "nightly_refresh", 1, since=imported)
    done = time.time()
    time.sleep(2 * watch.interval_s)  # the watch's last poll of the processes still there
    server_done = server_cpu_s(postmaster)
    return {"imports_s": imported - start, "refresh_s": done - imported, "wall_s": done - start,
            "cpu_s": watch.cpu_total_s() - cpu_before, "imports_cpu_s": imports_cpu,
            # the PostgreSQL server's CPU (warehouse and Dagster's storage), imports and refresh
            "server_cpu_s": None if server_before is None else (server_imported - server_before,
                                                                 server_done - server_imported),
            "import_runs": len(imports), "refresh": refresh.status.value,
            "failed_imports": [r.tags.get("dagster/partition") for r in imports if r.status.value != "SUCCESS"],
            "failures": failures(instance, [r for r in [*imports, refresh] if r.status.value != "SUCCESS"]),
            "steps_s": step_durations(instance, [*imports, refresh]),
            "refresh_steps": refresh_timeline(instance, refresh.run_id, imported),
            "pool": pool_use([i for step in _pool_steps() for i in step_intervals(instance, imports, step)])}


def _pool_steps() -> list[str]:
    """The import job's steps in the `warehouse` pool (one DuckDB writer), from its definition."""
    from dagster._core.execution.api import create_execution_plan

    import assets.definitions

    plan = create_execution_plan(assets.definitions.defs.resolve_job_def("import_centre"))
    return [step.key for step in plan.get_all_steps_in_topo_order() if step.pool == "warehouse"]


def _sources(drop: Path) -> list[Path]:
    """The sources' folders of a drop folder (not ``_truth`` or hidden ones)."""
    return sorted(p for p in drop.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _deliver(later: Path, incoming: Path) -> int:
    """Copy ``later``'s delivery folders into the drop folder ``incoming``: the sources that delivered."""
    sources = _sources(later)
    for source in sources:
        for delivery in (p for p in source.iterdir() if p.is_dir()):
            shutil.copytree(delivery, incoming / source.name / delivery.name)
    return len(sources)


def night(drop: Path, backend: str, pg_admin: str, again: bool, later: Path | None = None) -> dict:
    import dagster as dg

    work = Path(tempfile.mkdtemp(prefix="clms-night-"))
    if later is not None:  # the drop folder receives the later deliveries: a copy, not the caller's folder
        drop = Path(shutil.copytree(drop, work / "incoming"))
    env, databases = _environment(work, drop, backend, pg_admin)
    centres = [p.name for p in _sources(drop)]
    figures: dict = {"backend": backend, "centres": len(centres)}
    try:
        saved = {k: os.environ.get(k) for k in env if k.startswith(("DAGSTER_", "CLMS_"))}
        os.environ.update({k: v for k, v in env.items() if k.startswith(("DAGSTER_", "CLMS_"))})
        # before the daemon starts: its sensor's first tick may queue the imports at once, and a run
        # created before `start` would never be counted (the wait then never ends)
        start = time.time()
        with DaemonNight(env, work / "daemon.log") as run, dg.DagsterInstance.get() as instance:
            watch = MemoryWatch({os.getsid(p.pid) for p in run.processes})
            postmaster = postmaster_pid(pg_admin) if backend == "postgresql" else None
            figures["night"] = _one_night(run, instance, start, len(centres), watch, postmaster)
            if again:
                time.sleep(65)  # the sensor's next tick (minimum_interval_seconds=60) finds nothing new
                figures["unchanged night"] = _one_night(run, instance, time.time(), 0, watch, postmaster)
            if later is not None:
                delivered = _deliver(later, drop)
                figures["replacing night"] = _one_night(run, instance, time.time(), delivered, watch, postmaster,
                                                        from_first_run=True)
            watch.stop()
            figures["cpu_by_kind"] = watch.cpu_by_kind()
            figures["peak_rss_mib"] = watch.peak_by_kind_mib()
        return figures
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _drop_databases(pg_admin, databases)
        shutil.rmtree(work, ignore_errors=True)


def machine_floor(backend: str, pg_admin: str, repeat: int = 3) -> dict[str, float]:
    """Seconds (best of ``repeat``, :func:`timeit.repeat`: garbage collection off while a job runs) of three fixed jobs, measured just before the night: the same night takes
    20-50 % longer on one instance of the machine kind than on another (bench/README.md, "Session 22"), so a
    night is compared across runs by its ratio to these. ``python``: HMAC-SHA256 of 500,000 ids (the
    pseudonyms' loop); ``polars``: a 3,000,000-row CSV parsed and grouped; ``postgresql`` (that backend only):
    3,000,000 rows grouped by the server."""
    import io
    import timeit

    import polars as pl

    from clms_etl.keys import hmac_sha256_each

    rows = pl.int_range(3_000_000, eager=True)
    data = pl.DataFrame({"k": rows % 100_003, "v": "P" + rows.cast(pl.String).str.zfill(20)}).write_csv().encode()
    jobs = {
        "python": lambda: hmac_sha256_each(b"floor-key" * 4, (f"{i:08d}".encode() for i in range(500_000))),
        "polars": lambda: pl.read_csv(io.BytesIO(data)).group_by("k").agg(pl.col("v").n_unique()),
    }
    if backend == "postgresql":
        import psycopg

        def server() -> None:
            with psycopg.connect(pg_admin) as conn:
                conn.execute("SELECT count(*) FROM (SELECT g % 100003, count(*) FROM generate_series(1, 3000000) g "
                             "GROUP BY 1) q").fetchone()
        jobs["postgresql"] = server
    return {name: min(timeit.repeat(job, number=1, repeat=repeat)) for name, job in jobs.items()}


def _print_floor(floor: dict[str, float], figures: dict) -> None:
    total = sum(floor.values())
    print("  machine floor    " + ", ".join(f"{k} {v:.2f} s" for k, v in floor.items())
          + f" (sum {total:.2f} s); night = {figures['night']['wall_s'] / total:.0f}x the floor")


def _print(figures: dict, patients: int) -> None:
    print(f"night on {figures['backend']}, {figures['centres']} deliveries"
          + (f", {patients:,} patients" if patients else ""))
    for label in ("night", "unchanged night", "replacing night"):
        if label not in figures:
            continue
        f = figures[label]
        print(f"  {label:<16} wall {f['wall_s']:7.1f} s, CPU {f['cpu_s']:7.1f} s of all its processes  (imports {f['imports_s']:.1f} s / "
              f"{f['imports_cpu_s']:.1f} CPU-s, refresh "
              f"{f['refresh_s']:.1f} s; {f['import_runs']} import runs, failed {f['failed_imports'] or 'none'}, "
              f"refresh {f['refresh']})")
        if f.get("server_cpu_s"):
            print(f"  {'':<16} PostgreSQL server CPU {f['server_cpu_s'][0]:.1f} s during the imports, "
                  f"{f['server_cpu_s'][1]:.1f} s during the refresh")
        if patients and label == "night":
            # CPU per patient is the figure that compares across sizes on a machine others load
            print(f"  {'':<16} {1e6 * f['wall_s'] / patients:.1f} µs wall, {1e6 * f['cpu_s'] / patients:.1f} CPU-µs "
                  f"per patient; largest process {1024 * max(figures['peak_rss_mib'].values()) / patients:.2f} "
                  "KiB per patient")
        for what, why in f.get("failures", {}).items():
            print(f"  {'':<16} FAILED {what}: {why[:2000]}")
        if f.get("pool") and f["pool"][0]:
            span, held, gaps = f["pool"]
            print(f"  {'':<16} warehouse pool: {span:.1f} s from the first load to the last, held {held:.1f} s, "
                  f"free between two loads {gaps:.1f} s")
        for step, seconds in sorted(f["steps_s"].items(), key=lambda kv: -kv[1])[:12]:
            print(f"      {step:<40} {seconds:8.1f} s")
        if label != "unchanged night" and f.get("refresh_steps"):
            print(f"  {'':<16} the refresh's steps, seconds after the imports ended (start – end):")
            for step, begin, end in f["refresh_steps"]:
                print(f"      {step:<40} {begin:6.1f} – {end:6.1f}")
    if "cpu_by_kind" in figures:
        print("  CPU seconds per process kind (all nights of this run; processes):")
        for kind, (seconds, count) in sorted(figures["cpu_by_kind"].items(), key=lambda kv: -kv[1][0]):
            print(f"      {kind:<40} {seconds:8.1f} s  ({count})")
    print("  peak RSS per process kind (MiB):")
    for kind, mib in sorted(figures["peak_rss_mib"].items(), key=lambda kv: -kv[1]):
        print(f"      {kind:<40} {mib:8.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", type=Path, help="a drop folder written by clms-etl synth")
    parser.add_argument("--backend", choices=("duckdb", "postgresql"), default="duckdb")
    parser.add_argument("--pg-admin", default=os.environ.get("CLMS_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--again", action="store_true", help="then the same night again (nothing changed)")
    parser.add_argument("--next", type=Path, dest="later", metavar="DIR2",
                        help="then deliver DIR2's later deliveries and run the night again (every centre replaced)")
    parser.add_argument("--sizes", help="comma-separated patient counts: write a drop for each and run it")
    parser.add_argument("--centres", type=int, default=40)
    args = parser.parse_args(argv)
    if args.sizes:
        for size in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory(prefix="clms-drop-") as folder:
                subprocess.run([str(BIN / "clms-etl"), "synth", "--out", folder, "--patients", str(size),
                                "--centres", str(args.centres)], check=True, capture_output=True)
                _night_on_its_floor(args, Path(folder), size)
        return
    if args.drop is None:
        parser.error("--drop DIR or --sizes N,...")
    _night_on_its_floor(args, args.drop, _patients(args.drop), args.later)


def _night_on_its_floor(args: argparse.Namespace, drop: Path, patients: int, later: Path | None = None) -> None:
    """The machine's floor, then the night on ``drop``; both printed, the night as a multiple of the floor."""
    floor = machine_floor(args.backend, args.pg_admin)
    figures = night(drop, args.backend, args.pg_admin, args.again, later)
    _print(figures, patients)
    _print_floor(floor, figures)


if __name__ == "__main__":
    main()
