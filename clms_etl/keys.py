"""The pseudonym key: the secret that turns a hospital number into a pseudonym.

Read, in this order, from

1. ``CLMS_PSEUDONYM_KEY`` — the key itself (at least 16 characters);
2. ``CLMS_PSEUDONYM_KEY_FILE`` — a file holding it (a Docker/Kubernetes secret, a vault
   agent's file...); surrounding whitespace and the final newline are ignored.

Without either, :data:`DEMO_KEY` — public, written in this file, so *not* a secret — is used,
and only when the warehouse is an embedded DuckDB file (the demo). A PostgreSQL warehouse is
production: :func:`pseudonym_key` refuses to run without a real key, and refuses the demo key
even if someone sets it explicitly.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

ENV_KEY = "CLMS_PSEUDONYM_KEY"
ENV_KEY_FILE = "CLMS_PSEUDONYM_KEY_FILE"
MIN_KEY_LENGTH = 16

# Public demo key: anyone can recompute the demo's pseudonyms with it. DuckDB demo only.
DEMO_KEY = b"clms-etl PUBLIC DEMO pseudonym key - not a secret - DuckDB demo only"


class PseudonymKeyError(RuntimeError):
    """No usable pseudonym key for this warehouse."""


def backend_of(url: str | None) -> str:
    """``duckdb`` / ``postgresql`` / other dialect name of a SQLAlchemy URL (None: the default, duckdb)."""
    if not url:
        return "duckdb"
    scheme = str(url).split("://", 1)[0]
    return scheme.split("+", 1)[0].lower()


def configured_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The key from the environment or the secrets file, or None when neither is set."""
    env = os.environ if env is None else env
    value = env.get(ENV_KEY)
    source = ENV_KEY
    if not value and env.get(ENV_KEY_FILE):
        path = Path(env[ENV_KEY_FILE])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PseudonymKeyError(f"{ENV_KEY_FILE}={path}: cannot read the pseudonym key file ({exc}).") from exc
        source = f"{ENV_KEY_FILE} ({path})"
    if not value:
        return None
    if len(value) < MIN_KEY_LENGTH:
        raise PseudonymKeyError(f"{source}: the pseudonym key must have at least {MIN_KEY_LENGTH} characters.")
    return value.encode("utf-8")


def pseudonym_key(url: str | None = None, env: Mapping[str, str] | None = None) -> bytes:
    """The key to pseudonymise deliveries bound for the warehouse at ``url``.

    PostgreSQL (production) without a configured key, or with the demo key, is refused with a
    :class:`PseudonymKeyError` saying how to set one. DuckDB without a key gets
    :data:`DEMO_KEY`, with a warning.
    """
    key = configured_key(env)
    backend = backend_of(url)
    if backend == "duckdb":
        if key is None:
            warnings.warn(
                f"No {ENV_KEY} / {ENV_KEY_FILE}: using the public DEMO pseudonym key (DuckDB demo only).",
                stacklevel=2,
            )
            return DEMO_KEY
        return key
    if key is None:
        raise PseudonymKeyError(
            f"Refusing to run against a {backend} warehouse without a pseudonym key: set {ENV_KEY} "
            f"or point {ENV_KEY_FILE} at a file holding the deployment's secret key (at least "
            f"{MIN_KEY_LENGTH} characters). The built-in demo key is only for the DuckDB demo."
        )
    if hmac.compare_digest(key, DEMO_KEY):
        raise PseudonymKeyError(f"The public DEMO key cannot be used for a {backend} warehouse: set a secret key.")
    return key


def is_demo_key(key: bytes) -> bool:
    return hmac.compare_digest(key, DEMO_KEY)


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible fingerprint to tell keys apart in logs (never the key itself)."""
    return hashlib.sha256(b"clms-etl key fingerprint:" + key).hexdigest()[:12]
