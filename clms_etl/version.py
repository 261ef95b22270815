"""Which code ran: the package version, plus the git commit when the code runs from a git checkout
(``CLMS_GIT_COMMIT`` overrides it in deployments without ``.git``). Shown in the report's
provenance and written in the warehouse's ``audit_log``."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path


def code_version() -> str:
    """``<package version>`` plus ``+git <commit>`` (``-dirty`` with local changes) when known."""
    try:
        version = importlib.metadata.version("clms-etl")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    commit = os.environ.get("CLMS_GIT_COMMIT") or _git_commit(Path(__file__).resolve().parents[1])
    return f"{version} (git {commit})" if commit else version


def _git_commit(root: Path) -> str | None:
    # no git, not a checkout, or a hung git: the version alone is still a valid answer
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if commit and dirty else (commit or None)
