"""The pseudonym key: the secret that turns a hospital number into a pseudonym.

Read at run time, never from configuration values, in this order, from

1. ``CLMS_PSEUDONYM_KEY`` — the key itself;
2. ``CLMS_PSEUDONYM_KEY_FILE`` — a file holding it (a Docker/Kubernetes secret, a vault
   agent's file...).

Surrounding whitespace (a file's final newline) is not part of the key. A key must be strong:
at least :data:`MIN_KEY_LENGTH` characters, not a repetition of a shorter string, and about
:data:`MIN_KEY_BITS` bits by its characters' entropy (16 identical characters are refused).

:data:`DEMO_KEY` is public — written in this file, so *not* a secret. It exists for the demo
only: with ``CLMS_DEMO=1`` (set by ``make demo`` / ``python -m assets.demo``, see
:data:`ENV_DEMO`) and an embedded DuckDB warehouse it is used when no key is configured.
Anywhere else it is refused, whatever its spelling (case, spaces, punctuation), and a missing
key is an error on every backend — no silent fallback.

The warehouse keeps a :func:`fingerprint` of the key it was built with (salted scrypt: checking
a guessed key against it costs far more than checking it against a pseudonym, so storing it
helps no brute force); a load with another key is refused (:mod:`clms_etl.warehouse.load`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import os
import secrets
import unicodedata
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import polars as pl

ENV_KEY = "CLMS_PSEUDONYM_KEY"
ENV_KEY_FILE = "CLMS_PSEUDONYM_KEY_FILE"
# The key a warehouse was built with, for `clms-etl warehouse rekey` (the new one is ENV_KEY).
ENV_OLD_KEY = "CLMS_OLD_PSEUDONYM_KEY"
ENV_OLD_KEY_FILE = "CLMS_OLD_PSEUDONYM_KEY_FILE"
# Explicit opt-in to the public demo key: the demo command sets it, nothing else should.
ENV_DEMO = "CLMS_DEMO"
MIN_KEY_LENGTH = 32
MIN_KEY_BITS = 96  # characters' Shannon entropy x length: secrets.token_hex(16) passes, "a" * 40 does not
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"

# Public demo key: anyone can recompute the demo's pseudonyms with it. Demo (CLMS_DEMO=1) only.
DEMO_KEY = b"clms-etl PUBLIC DEMO pseudonym key - not a secret - DuckDB demo only"

# Fingerprint: scrypt with a per-warehouse random salt (~50 ms and 16 MiB per guess).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class PseudonymKeyError(RuntimeError):
    """No usable pseudonym key for this warehouse."""


def backend_of(url: str | None) -> str:
    """``duckdb`` / ``postgresql`` / other dialect name of a SQLAlchemy URL (None: the default, duckdb)."""
    if not url:
        return "duckdb"
    scheme = str(url).split("://", 1)[0]
    return scheme.split("+", 1)[0].lower()


def demo_mode(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get(ENV_DEMO, "").strip().lower() in ("1", "true", "yes")


def is_demo_key(key: bytes | str) -> bool:
    """The demo key in any spelling: case, whitespace and punctuation are ignored."""
    return hmac.compare_digest(_spelling(key), _spelling(DEMO_KEY))


def _spelling(key: bytes | str) -> bytes:
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum()).encode()


def weakness(key: bytes) -> str | None:
    """Why ``key`` is too weak to pseudonymise with, or None."""
    text = key.decode("utf-8", "replace")
    if len(text) < MIN_KEY_LENGTH:
        return f"it has {len(text)} characters, at least {MIN_KEY_LENGTH} are needed"
    for period in range(1, len(text) // 2 + 1):
        if len(text) % period == 0 and text[:period] * (len(text) // period) == text:
            return f"it repeats {period} character(s) over and over"
    counts = Counter(text)
    bits = -len(text) * sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())
    if bits < MIN_KEY_BITS:
        return f"its characters carry about {bits:.0f} bits of entropy, at least {MIN_KEY_BITS} are needed"
    return None


def read_key(env: Mapping[str, str] | None = None, variable: str = ENV_KEY,
             file_variable: str = ENV_KEY_FILE) -> bytes | None:
    """The key from ``variable`` or the file named by ``file_variable``, or None when neither is set."""
    env = os.environ if env is None else env
    value = (env.get(variable) or "").strip()
    if not value and (env.get(file_variable) or "").strip():
        path = Path(env[file_variable].strip())
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PseudonymKeyError(f"{file_variable}={path}: cannot read the pseudonym key file "
                                    f"({exc.strerror or exc.__class__.__name__}).") from None
    return value.encode("utf-8") if value else None


def checked(key: bytes, url: str | None, env: Mapping[str, str] | None = None, source: str = ENV_KEY) -> bytes:
    """``key`` if it may pseudonymise deliveries bound for ``url``; else :class:`PseudonymKeyError`."""
    backend = backend_of(url)
    if is_demo_key(key):
        if backend == "duckdb" and demo_mode(env):
            return DEMO_KEY
        where = (f"a {backend} warehouse" if backend != "duckdb"
                 else f"a warehouse outside the demo (the demo sets {ENV_DEMO}=1)")
        raise PseudonymKeyError(f"{source}: the public DEMO key cannot be used for {where}: set a secret key "
                                f"({GENERATE_HINT}).")
    problem = weakness(key)
    if problem:
        raise PseudonymKeyError(f"{source}: the pseudonym key is too weak: {problem}; {GENERATE_HINT}.")
    return key


def pseudonym_key(url: str | None = None, env: Mapping[str, str] | None = None, variable: str = ENV_KEY,
                  file_variable: str = ENV_KEY_FILE) -> bytes:
    """The key to pseudonymise deliveries bound for the warehouse at ``url``, read now from ``env``
    (``variable`` / ``file_variable``: the old key of a re-key comes from another pair).

    No key, the demo key outside the demo, or a weak key: :class:`PseudonymKeyError` saying how
    to set one. In demo mode (``CLMS_DEMO=1``) on DuckDB, no key means :data:`DEMO_KEY`.
    """
    key = read_key(env, variable, file_variable)
    backend = backend_of(url)
    if key is None:
        if backend == "duckdb" and demo_mode(env) and variable == ENV_KEY:
            return DEMO_KEY
        raise PseudonymKeyError(
            f"Refusing to run against a {backend} warehouse without a pseudonym key: set {variable} "
            f"or point {file_variable} at a file holding the deployment's secret key (at least "
            f"{MIN_KEY_LENGTH} characters; {GENERATE_HINT}). The public demo key is only for the "
            f"demo ({ENV_DEMO}=1, DuckDB)."
        )
    return checked(key, url, env, variable)


# -- fingerprint ---------------------------------------------------------------------------------


def pseudonym(key: bytes, centre: str, local_id: str) -> str:
    """HMAC-SHA256 of ``centre:local_id`` (normalised), 80 bits in hex, prefixed ``P``.

    80 bits keep the risk of a collision negligible for tens of millions of patients while
    staying short enough to read out on the phone to a data manager.
    """
    message = f"{centre.strip().lower()}:{local_id.strip().upper()}".encode()
    return "P" + hmac.new(key, message, hashlib.sha256).hexdigest()[:20]


def hmac_sha256_each(key: bytes, messages, prefix: bytes = b"") -> list[bytes]:
    """``hmac.new(key, prefix + message, sha256).digest()`` of each of ``messages`` (bytes), about twice as
    fast for many short messages.

    HMAC-SHA256 written out (RFC 2104) with the two keyed SHA-256 states (the inner one with ``prefix``
    already hashed) computed once and copied per message: the per-message key set-up of ``hmac.new``
    dominates a 250,000-patient read (``hmac.digest`` per id, or DuckDB's ``sha256`` over the distinct ids,
    measured twice as slow). The first digest is checked against ``hmac`` itself.
    """
    secret = hashlib.sha256(key).digest() if len(key) > 64 else key
    secret = secret.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in secret))
    inner.update(prefix)
    inner, outer = inner.copy, hashlib.sha256(bytes(b ^ 0x5C for b in secret)).copy
    messages = iter(messages)
    first = next(messages, None)
    if first is None:
        return []
    out = []
    append = out.append
    for message in itertools.chain([first], messages):
        h = inner()
        h.update(message)
        o = outer()
        o.update(h.digest())
        append(o.digest())
    if out[0] != hmac.new(key, prefix + first, hashlib.sha256).digest():
        raise AssertionError("hmac_sha256_each differs from hmac")  # (cannot happen: RFC 2104)
    return out


def pseudonyms(key: bytes, centre: str, local_ids) -> dict[str, str]:
    """``{local id: pseudonym(key, centre, local id)}`` for many ids (a reader's patient keys), about twice
    as fast (:func:`hmac_sha256_each`, the centre's prefix hashed once); the first is checked against
    :func:`pseudonym`."""
    local_ids = list(local_ids)
    digests = hmac_sha256_each(key, (local_id.strip().upper().encode() for local_id in local_ids),
                               prefix=f"{centre.strip().lower()}:".encode())
    out = ["P" + d[:10].hex() for d in digests]  # = hexdigest()[:20], without hex-encoding the rest
    if out and out[0] != pseudonym(key, centre, local_ids[0]):
        out = [pseudonym(key, centre, local_id) for local_id in local_ids]
    return dict(zip(local_ids, out))


def pseudonym_column(key: bytes, centre: str, local_ids: pl.Series, known: dict[str, str] | None = None) -> pl.Series:
    """:func:`pseudonyms` of a column of ids (a null stays null): each distinct id hashed once —
    ``known`` (id -> pseudonym, completed here) spares the ids a reader's other sheets had — and
    put back by a join (``replace_strict`` with a dict of every id first builds two Series from
    Python: 16-23 ms for 25,000 ids, the mapping frame and its join 6-7 ms)."""
    known = {} if known is None else known
    distinct = local_ids.drop_nulls().unique()
    ids = distinct.to_list()
    known.update(pseudonyms(key, centre, [k for k in ids if k not in known]))
    mapping = pl.DataFrame({"k": distinct, "p": pl.Series([known[k] for k in ids], dtype=pl.String)})
    return local_ids.to_frame("k").join(mapping, on="k", how="left", maintain_order="left").get_column("p")


def fingerprint(key: bytes, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt hex>$<digest hex>``: stored in the warehouse, never the key.

    Keyed by the key itself and salted per warehouse, and slow: testing a guessed key against it
    costs a scrypt (~50 ms, 16 MiB), against a known pseudonym one HMAC, so it helps no brute force.
    """
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(key, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 2**20, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def matches(key: bytes, stored: str) -> bool:
    """Whether ``key`` is the key of the ``stored`` fingerprint."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    mine = hashlib.scrypt(key, salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), maxmem=64 * 2**20,
                          dklen=len(digest) // 2)
    return hmac.compare_digest(mine.hex(), digest)


def key_id(stored: str) -> str:
    """A short name of a stored fingerprint for audit rows and logs (from the slow digest, not the key)."""
    return stored.rsplit("$", 1)[-1][:16]
