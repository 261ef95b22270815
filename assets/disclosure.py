"""Disclosure control of the export assets: their run config (the k threshold) and what they report.

The threshold is set per run in the launchpad (``ops: <asset>: config: k_threshold: N``); lowering
it is a decision for the data protection officer, not for the pipeline.
"""

from __future__ import annotations

import dagster as dg

from clms_etl.disclosure import DEFAULT_K_THRESHOLD, DisclosureBlocked, KAnonymity


class CbioportalConfig(dg.Config):
    """The cBioPortal study is always shareable: below the threshold it is not written."""

    k_threshold: int = DEFAULT_K_THRESHOLD


class AnalysisExportConfig(dg.Config):
    """The statisticians' exports: in-house by default (full detail, k reported, never blocked);
    ``shareable: true`` generalises and suppresses the quasi-identifiers and blocks below the threshold."""

    k_threshold: int = DEFAULT_K_THRESHOLD
    shareable: bool = False


def disclosure_metadata(result: KAnonymity, shareable: bool = True) -> dict:
    """The smallest group, the threshold and what was suppressed (counts only, no patient)."""
    return {**result.metadata(), "k_anonymity/shareable": shareable and result.passes,
            "k_anonymity/summary": dg.MetadataValue.text(result.summary())}


def blocked(error: DisclosureBlocked) -> dg.Failure:
    """The run fails with the message (no traceback to read) and the figures behind it."""
    return dg.Failure(description=str(error), metadata=disclosure_metadata(error.result), allow_retries=False)
