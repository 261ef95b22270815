"""The instances of deploy/ (one machine, production, the Helm values of the Kubernetes deployment) say the
same where they must, and Dagster reads them as meant."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _yaml(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))


def test_queued_runs_are_launched_every_second_everywhere(tmp_path, monkeypatch):
    # Dagster's default, every 5 s, left an import's freed slot and the refresh queued as the imports end
    # waiting 2.5 s on average (bench/README.md, "Session 18")
    local, production = _yaml("dagster.local.yaml"), _yaml("dagster.production.yaml")
    helm = _yaml("k8s/values.yaml")["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    for instance in (local, production):
        assert instance["run_coordinator"]["config"]["dequeue_interval_seconds"] == 1
    assert helm["dequeueIntervalSeconds"] == 1
    # the Helm values render the production instance
    assert helm["maxConcurrentRuns"] == production["concurrency"]["runs"]["max_concurrent_runs"]
    assert helm["tagConcurrencyLimits"] == production["concurrency"]["runs"]["tag_concurrency_limits"]

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.local.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:  # Dagster takes the interval beside the concurrency block
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == \
            local["concurrency"]["runs"]["max_concurrent_runs"]
