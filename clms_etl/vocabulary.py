"""Canonical code lists of the warehouse (``shared/domain/centre_exports.md``, "Shared vocabulary").

Every reader maps its centre's codes onto these values; an absent value is ``None`` (the
paper's "not specified"), never 0 and never a sentinel. The lists are declared in the contract
(``clms_etl/data/contract.toml``, ``[vocabularies]``); this module names them for the code that
imports them (the Great Expectations suites name them in the contract directly).
"""

from __future__ import annotations

from clms_etl.contract import VOCABULARIES

# The centres are not a code list: they come from the registry (clms_etl.centres.centre_names,
# clms_etl/data/centres.toml plus a drop folder's centres.toml), which may hold forty of them.
LABORATORY = "molecular"

SEX = VOCABULARIES["SEX"]
SITES = VOCABULARIES["SITES"]
PRESENTATIONS = VOCABULARIES["PRESENTATIONS"]
DIFFERENTIATION_SCORES = VOCABULARIES["DIFFERENTIATION_SCORES"]
NECROSIS_SCORES = VOCABULARIES["NECROSIS_SCORES"]
SURGERY_KINDS = VOCABULARIES["SURGERY_KINDS"]
EVENT_KINDS = VOCABULARIES["EVENT_KINDS"]
METASTASIS_SITES = VOCABULARIES["METASTASIS_SITES"]
DEATH_CAUSES = VOCABULARIES["DEATH_CAUSES"]
MITOSIS_CLASSES = VOCABULARIES["MITOSIS_CLASSES"]
SEGMENT_TYPES = VOCABULARIES["SEGMENT_TYPES"]

AUDIT_ACTIONS = VOCABULARIES["AUDIT_ACTIONS"]
