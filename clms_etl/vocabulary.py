"""Canonical code lists of the warehouse (``shared/domain/centre_exports.md``, "Shared vocabulary").

Every reader maps its centre's codes onto these values; an absent value is ``None`` (the
paper's "not specified"), never 0 and never a sentinel. The lists are declared in the contract
(``clms_etl/data/contract.toml``, ``[vocabularies]``); this module names them for the code that
imports them and for the Great Expectations suites, which refer to them by name.
"""

from __future__ import annotations

from clms_etl.contract import VOCABULARIES

# The centres are not a code list: they come from the registry (clms_etl.centres.centre_names,
# clms_etl/data/centres.toml plus a drop folder's centres.toml), which may hold forty of them.
LABORATORY = "molecular"

SEX = VOCABULARIES["SEX"]
SITES = VOCABULARIES["SITES"]
PRESENTATIONS = VOCABULARIES["PRESENTATIONS"]
DIFFERENTIATION_SCORES = VOCABULARIES["DIFFERENTIATION_SCORES"]  # 1 well, 2 moderate, 3 poor
NECROSIS_SCORES = VOCABULARIES["NECROSIS_SCORES"]  # 0 none, 1 < 50 %, 2 >= 50 %
FNCLCC_GRADES = VOCABULARIES["FNCLCC_GRADES"]
INVASIONS = VOCABULARIES["INVASIONS"]
RESECTION_STATUSES = VOCABULARIES["RESECTION_STATUSES"]
SURGERY_KINDS = VOCABULARIES["SURGERY_KINDS"]
EVENT_KINDS = VOCABULARIES["EVENT_KINDS"]
METASTASIS_SITES = VOCABULARIES["METASTASIS_SITES"]
DEATH_CAUSES = VOCABULARIES["DEATH_CAUSES"]
# Not in the centres' shared table: the follow-up state at last contact. Montpellier's
# STATUT_VITAL=PDV is "lost_to_follow_up"; a patient with no news at all has None.
VITAL_STATUSES = VOCABULARIES["VITAL_STATUSES"]
# Mitotic-count classes as some charts record them next to (or instead of) the count.
MITOSIS_CLASSES = VOCABULARIES["MITOSIS_CLASSES"]
DATE_PRECISIONS = VOCABULARIES["DATE_PRECISIONS"]
GRADE_CHECKS = VOCABULARIES["GRADE_CHECKS"]
SAMPLE_STATUSES = VOCABULARIES["SAMPLE_STATUSES"]
ASSAY_STATES = VOCABULARIES["ASSAY_STATES"]  # failed: file unreadable, or case not contributory
SEGMENT_TYPES = VOCABULARIES["SEGMENT_TYPES"]
VARIANT_EXCLUSIONS = VOCABULARIES["VARIANT_EXCLUSIONS"]

# Actions recorded in the warehouse's audit_log (clms_etl.warehouse.load).
AUDIT_ACTIONS = VOCABULARIES["AUDIT_ACTIONS"]
