"""A background step lowers the priority of every thread of its process, not only of the calling one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# In a process of its own: a niceness cannot be raised back without privileges.
SCRIPT = """
import json, os, threading
from pathlib import Path
import polars as pl
from assets.priority import lower_priority

pl.DataFrame({"a": range(1_000_000)}).sort("a", descending=True)  # polars' thread pool started first
stop = threading.Event()
waiting = threading.Thread(target=stop.wait)
waiting.start()
before = os.nice(0)
niceness, lowered = lower_priority(7)
tasks = Path("/proc/self/task")
nices = {t.name: int((t / "stat").read_text().rsplit(")", 1)[1].split()[16]) for t in tasks.iterdir()}
stop.set()
waiting.join()
print(json.dumps({"before": before, "niceness": niceness, "lowered": lowered, "nices": nices}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="threads listed in /proc/self/task: Linux only")
def test_lowering_the_priority_lowers_the_threads_libraries_started_before():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "POLARS_MAX_THREADS": "2"})
    seen = json.loads(out.stdout.splitlines()[-1])
    assert len(seen["nices"]) >= 4, seen  # the main thread, the waiting one, polars' two workers
    assert seen["niceness"] == seen["before"] + 7
    assert set(seen["nices"].values()) == {seen["niceness"]}, seen
    assert seen["lowered"] == len(seen["nices"])
