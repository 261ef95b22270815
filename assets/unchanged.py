"""Nothing changed, nothing recomputed: the nightly refresh skips what its inputs did not move.

Dagster records with every materialisation its data version, its code version and the data
versions of its inputs (the ``dagster/code_version`` and ``dagster/input_data_version/*`` tags,
read back as :class:`dagster.DataProvenance`). An analysis whose code version and inputs' data
versions are those of its latest materialisation, run with the same settings, would compute the
same thing: it does not recompute, and emits its previous result again (same data version, same
metadata) with ``clms/recomputed: false`` and the reason in ``clms/why``, so the asset's page in
the UI says why the night did not touch it. A recomputed asset says why too (what moved). Its
downstream assets then see unchanged data versions and are skipped in turn.

The chain starts at the ``warehouse`` asset, whose data version is its current deliveries
(:func:`assets.warehouse.deliveries_version`): a night with no new delivery leaves it unchanged.
The blocking checks of a skipped asset repeat their previous evaluation in the same way (the
evaluation records the target's data version it was made on, ``clms/target_data_version``).

A hand-rolled cache would have to know the inputs; this reads Dagster's own lineage, so an
asset added downstream of the warehouse is skipped or recomputed by the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

RECOMPUTED = "clms/recomputed"
WHY = "clms/why"
SETTINGS = "clms/settings"  # what the asset ran with besides its inputs: resource and run config
TARGET_DATA_VERSION = "clms/target_data_version"  # of a check: the asset's data version it was made on
_OWN = (RECOMPUTED, WHY, SETTINGS, TARGET_DATA_VERSION)


def data_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The asset's current data version as Dagster records it (latest materialisation), or None."""
    record = instance.get_latest_data_version_record(key)
    if record is None:
        return None
    event = record.event_log_entry.asset_materialization or record.event_log_entry.asset_observation
    return (event.tags or {}).get("dagster/data_version") if event is not None else None


def nothing_loaded_since_refresh(instance: dg.DagsterInstance, refreshed: dg.AssetKey, loaded: dg.AssetKey) -> bool:
    """True when ``refreshed`` (the ``warehouse`` asset, which the refresh materialises first) was
    materialised after the latest materialisation of any partition of ``loaded`` (the centres' loads):
    tonight's refresh will find every data version as it left them, so its steps only repeat their
    previous results. Only the executor follows it (assets/automation.py); each asset still decides
    for itself (:func:`decide`), so a change made outside Dagster (a rollback) is still recomputed."""
    refresh = instance.fetch_materializations(refreshed, limit=1).records
    if not refresh:
        return False
    load = instance.fetch_materializations(loaded, limit=1).records
    return not load or load[0].storage_id < refresh[0].storage_id


def _settings_text(settings: Mapping[str, object]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _missing_files(metadata: Mapping[str, dg.MetadataValue]) -> list[str]:
    return [name for name, value in metadata.items()
            if isinstance(value, dg.PathMetadataValue) and not Path(value.path).exists()]


@dataclass
class Decision:
    """Whether an asset recomputes tonight, and why (its metadata says so in the UI)."""

    recompute: bool
    why: str
    settings: str
    previous: dg.AssetMaterialization | None = None
    previous_data_version: str | None = None
    previous_checks: list[dg.AssetCheckResult] = field(default_factory=list)

    @property
    def metadata(self) -> dict[str, object]:
        """To add to the metadata of a recomputed materialisation."""
        return {RECOMPUTED: self.recompute, WHY: self.why, SETTINGS: self.settings}

    def repeated(self) -> dg.MaterializeResult:
        """The previous materialisation again: same data version, same metadata, the reason."""
        assert self.previous is not None and self.previous_data_version is not None
        metadata = {k: v for k, v in self.previous.metadata.items() if k not in _OWN}
        return dg.MaterializeResult(metadata={**metadata, **self.metadata},
                                    data_version=dg.DataVersion(self.previous_data_version),
                                    check_results=self.previous_checks or None)


def decide(context: dg.AssetExecutionContext, **settings: object) -> Decision:
    """Recompute ``context``'s asset unless its code version, the data versions of its
    unpartitioned inputs and ``settings`` are those of its latest materialisation and the files
    that materialisation points to are still there. (A partitioned input — the centres' rows —
    is summarised by a setting instead: its latest partition says nothing about the others.)"""
    key, instance = context.asset_key, context.instance
    text = _settings_text(settings)
    record = instance.get_latest_data_version_record(key)
    provenance = context.get_asset_provenance(key)
    previous = record.event_log_entry.asset_materialization if record is not None else None
    if previous is None or provenance is None:
        return Decision(True, "first materialisation", text)
    moved = []
    code_version = context.assets_def.code_versions_by_key.get(key)
    if provenance.code_version != code_version:
        moved.append(f"code version {provenance.code_version} -> {code_version}")
    asset_graph = context.job_def.asset_layer.asset_graph
    for parent in sorted(context.assets_def.asset_deps[key], key=lambda k: k.to_user_string()):
        if asset_graph.get(parent).partitions_def is not None:
            continue
        before = provenance.input_data_versions.get(parent)
        now = data_version(instance, parent)
        if before is None or before.value != now:
            moved.append(f"{parent.to_user_string()} data version {_short(before.value if before else None)} -> "
                         f"{_short(now)}")
    if getattr(previous.metadata.get(SETTINGS), "value", None) != text:
        moved.append(f"settings {text}")
    if missing := _missing_files(previous.metadata):
        moved.append(f"files gone: {', '.join(missing)}")
    checks = {spec.key: previous_check(instance, spec.key, "") for spec in context.assets_def.check_specs}
    moved += [f"check {k.name} never evaluated" for k, c in checks.items() if c is None]
    if moved:
        return Decision(True, "recomputed: " + "; ".join(moved), text)
    inputs = ", ".join(f"{k.to_user_string()} {_short(v.value)}" for k, v in sorted(
        provenance.input_data_versions.items(), key=lambda kv: kv[0].to_user_string()))
    why = (f"not recomputed: code version {code_version} and inputs' data versions ({inputs}) unchanged since "
           f"run {record.run_id[:8]}; its result is repeated")
    return Decision(False, why, text, previous, data_version(instance, key),
                    [previous_check(instance, k, why) for k in checks])


def last_evaluation(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey):
    """The check's latest completed evaluation (record, evaluation), or None. (Its latest record may
    be the one this very run planned.)"""
    from dagster._core.storage.asset_check_execution_record import COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES

    for record in instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES):
        event = record.event.dagster_event if record.event is not None else None
        if event is not None and isinstance(event.event_specific_data, dg.AssetCheckEvaluation):
            return record, event.event_specific_data
    return None


def previous_check(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, why: str) -> dg.AssetCheckResult | None:
    """The check's latest evaluation again, saying why it was not re-run."""
    found = last_evaluation(instance, check_key)
    if found is None:
        return None
    record, evaluation = found
    metadata = {k: v for k, v in evaluation.metadata.items() if k not in _OWN}
    target = evaluation.metadata.get(TARGET_DATA_VERSION)
    return dg.AssetCheckResult(
        check_name=check_key.name, asset_key=check_key.asset_key, passed=evaluation.passed,
        severity=evaluation.severity, description=f"{why} (run {record.run_id[:8]}): {evaluation.description or ''}",
        metadata={**metadata, RECOMPUTED: False, WHY: why,
                  **({TARGET_DATA_VERSION: target} if target is not None else {})})


def check_unchanged(context: dg.AssetCheckExecutionContext, **settings: object) -> dg.AssetCheckResult | None:
    """A blocking check's previous evaluation, repeated, when its asset's data version and
    ``settings`` (its suite) are those it was made on; None: run it (then add
    :func:`check_metadata` to its result)."""
    (spec,) = context.check_specs
    instance = context.instance
    found = last_evaluation(instance, spec.key)
    if found is None:
        return None
    evaluation = found[1]
    now = data_version(instance, spec.asset_key)
    made_on = getattr(evaluation.metadata.get(TARGET_DATA_VERSION), "value", None)
    ran_with = getattr(evaluation.metadata.get(SETTINGS), "value", None)
    if now is None or made_on != now or ran_with != _settings_text(settings):
        return None
    why = (f"not re-run: {spec.asset_key.to_user_string()} data version {_short(now)} and the check's settings "
           "unchanged since its previous evaluation; its result is repeated")
    context.log.info(f"{spec.key.to_user_string()}: {why}")
    return previous_check(instance, spec.key, why)


def check_metadata(context: dg.AssetCheckExecutionContext, **settings: object) -> dict[str, object]:
    """What a check that ran records, so that the next night can tell whether to re-run it."""
    (spec,) = context.check_specs
    return {RECOMPUTED: True, TARGET_DATA_VERSION: data_version(context.instance, spec.asset_key) or "",
            SETTINGS: _settings_text(settings)}


def _short(version: str | None) -> str:
    return "none" if version is None else version[:12]
