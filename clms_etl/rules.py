"""The rule registry: every data-query rule of clms-etl, declared once in ``data/rules.toml``.

A rule is what a data query is about (``unknown_code``, ``event_after_death``...). Its severity,
Kahn category, French label, messages and the data manager's "what to do" live in the
registry only: readers, the identifier screen and validation name the rule, never its
severity (:func:`severity`). The same defect has one rule whatever the centre.

Conventions: ``severity`` is :data:`ERROR` (the row is quarantined, or the file refused) or
:data:`WARNING` (the row is loaded and flagged); ``category`` is one of :data:`CATEGORIES`, the
data-quality categories of Kahn et al. (2016) that OHDSI's Data Quality Dashboard uses;
messages are ``str.format`` templates whose slots (``{value}``, ``{field}``, ``{label}``, a
canonical column...) the raiser fills.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl

ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)
CATEGORIES = ("conformance", "completeness", "plausibility")
REGISTRY_PATH = Path(__file__).parent / "data" / "rules.toml"


class UnknownRule(KeyError):
    """A rule id that is not in the registry: a bug of the raiser, never the centre's data."""


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    category: str
    label: str  # French, for the data manager
    message_fr: str
    message_en: str
    action: str  # French: what the data manager does about it


@cache
def registry() -> dict[str, Rule]:
    """Every rule by id, as declared in ``data/rules.toml`` (checked when first loaded)."""
    with REGISTRY_PATH.open("rb") as handle:
        declared = tomllib.load(handle)["rules"]
    rules = {}
    fields = set(Rule.__dataclass_fields__) - {"id"}
    for rule_id, entry in declared.items():
        if set(entry) != fields:
            raise ValueError(f"{REGISTRY_PATH.name}: rule {rule_id!r} declares {sorted(entry)}, expected {sorted(fields)}")
        rule = Rule(id=rule_id, **entry)
        if rule.severity not in SEVERITIES or rule.category not in CATEGORIES:
            raise ValueError(f"{REGISTRY_PATH.name}: rule {rule_id!r}: severity {rule.severity!r} "
                             f"or category {rule.category!r} unknown")
        rules[rule_id] = rule
    return rules


def rule(rule_id: str) -> Rule:
    """The registered rule ``rule_id``; :class:`UnknownRule` if it is not registered."""
    try:
        return registry()[rule_id]
    except KeyError:
        raise UnknownRule(f"rule {rule_id!r} is not in {REGISTRY_PATH.name}: declare it there") from None


def severity(rule_id: str) -> str:
    """The registry's severity of ``rule_id``."""
    return rule(rule_id).severity


def severity_expr(rule_ids: pl.Expr) -> pl.Expr:
    """The registry's severity of each rule id of ``rule_ids`` (an unregistered id: null)."""
    return rule_ids.replace_strict({r.id: r.severity for r in registry().values()}, default=None,
                                   return_dtype=pl.String)


def check_registered(rule_ids) -> None:
    """:class:`UnknownRule` naming the first id of ``rule_ids`` missing from the registry."""
    missing = sorted(set(rule_ids) - registry().keys() - {None})
    if missing:
        rule(missing[0])


def registry_markdown() -> str:
    """The registry as the Markdown page ``docs/rules.md`` (tests/test_rules.py keeps the page equal;
    ``CLMS_UPDATE_SNAPSHOTS=1`` rewrites it): one line per rule, French and English messages side by side."""
    lines = [
        "# Data-query rules",
        "",
        "Every rule a reader, the identifier screen or validation can raise, from",
        "`clms_etl/data/rules.toml` (generated: edit the registry, not this page). An **error**",
        "quarantines the row (or stops the file), a **warning** loads it with a flag. Categories",
        "are Kahn et al.'s, as in OHDSI's Data Quality Dashboard.",
        "",
        "| rule | severity | category | label (fr) | message (fr) | message (en) | what to do (fr) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(registry().values(), key=lambda r: (r.category, r.id)):
        cells = [f"`{r.id}`", r.severity, r.category, r.label, r.message_fr, r.message_en, r.action]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
